"""Feature extraction for FID-style metrics: the extractor record, batched extraction, weight files.

A feature-space number (FID, KID, precision/recall) means something only together with the
network that made the features, so extractors travel as a `FeatureExtractor` record whose
``name`` reports print beside the number. Two extractors exist:
`gensynth.metrics.inception.InceptionV3` with the standard FID weights (numbers comparable with
published FIDs when the data are comparable) and `gensynth.metrics.feature_net.BuiltinFeatureNet`,
trained here on the built-in data (no download; numbers comparable only with each other).

Weights come from safetensors files (no pickle) through `assign_arrays`, which checks every key
and shape before it touches the module.
"""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A feature network and the name a report gives it.

    >>> extractor = FeatureExtractor("mean-intensity", lambda x: x.mean(axis=(1, 2)), 1, False)
    >>> extractor.apply_fn(jnp.ones((2, 4, 4, 1))).shape
    (2, 1)
    """

    name: str  # printed beside every number computed from these features, e.g. "fid-inception-v3"
    apply_fn: Callable[[jax.Array], jax.Array]  # images [B, *S, C] in [-1, 1] -> features [B, F]
    feature_dim: int  # F
    comparable_to_published: bool  # True only for the standard FID Inception weights


def feature_extractor_from_module(
    name: str, module: nnx.Module, *, feature_dim: int, comparable_to_published: bool = False
) -> FeatureExtractor:
    """Wraps an nnx module ``images -> features`` as a `FeatureExtractor` with a jitted ``apply_fn``.

    The module is split once; ``apply_fn`` is a pure jitted function of the images (the
    parameters are closed over), compiled once per input shape.

    Args:
      name: the extractor's name for reports.
      module: maps ``[B, *S, C]`` images to ``[B, F]`` features.
      feature_dim: F.
      comparable_to_published: whether numbers match published ones (standard FID weights only).

    Returns:
      The `FeatureExtractor`.

    >>> net = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    >>> feature_extractor_from_module("linear", net, feature_dim=2).apply_fn(jnp.ones((5, 3))).shape
    (5, 2)
    """
    graphdef, state = nnx.split(module)

    @jax.jit
    def apply_fn(state, images):
        return nnx.merge(graphdef, state)(images)

    return FeatureExtractor(name, lambda images: apply_fn(state, images), feature_dim, comparable_to_published)


def extract_features(
    apply_fn: Callable[[jax.Array], jax.Array], images: np.ndarray | jax.Array, batch_size: int
) -> np.ndarray:
    """Features of a whole image set, ``batch_size`` images per call.

    The last batch is padded to ``batch_size`` (by repeating its last image) so ``apply_fn``
    compiles for one shape only; the padding rows are dropped. Features are gathered on the host.

    Args:
      apply_fn: ``[B, *S, C] -> [B, F]``, e.g. `FeatureExtractor.apply_fn`.
      images: ``[N, *S, C]`` images (host or device array).
      batch_size: images per call, >= 1.

    Returns:
      float32 NumPy ``[N, F]``.

    >>> extract_features(lambda x: x.reshape(x.shape[0], -1), np.ones((5, 2, 2, 1)), 2).shape
    (5, 4)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if np.ndim(images) < 2 or len(images) == 0:
        raise ValueError(f"images: expected a non-empty array [N, *S, C], got shape {np.shape(images)}")
    parts = []
    for start in range(0, len(images), batch_size):
        batch = jnp.asarray(images[start : start + batch_size])
        count = batch.shape[0]
        if count < batch_size:
            batch = jnp.concatenate([batch, jnp.repeat(batch[-1:], batch_size - count, axis=0)])
        feats = apply_fn(batch)
        if feats.ndim != 2 or feats.shape[0] != batch_size:
            raise ValueError(f"apply_fn: expected features [B, F] with B = {batch_size}, got shape {feats.shape}")
        parts.append(np.asarray(feats[:count], np.float32))
    return np.concatenate(parts)


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads a safetensors file into NumPy arrays and its string metadata (no torch, no pickle).

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if the file is not a readable safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with safe_open(path, framework="numpy") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not iterable)
            return tensors, dict(handle.metadata() or {})
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err


def _identity_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape


def _identity_array(key: str, array: np.ndarray) -> np.ndarray:
    return array


def assign_arrays(
    module: nnx.Module,
    tensors: Mapping[str, np.ndarray],
    *,
    source: str,
    file_key: Callable[[str], str] = str,
    file_shape: Callable[[str, tuple[int, ...]], tuple[int, ...]] = _identity_shape,
    convert: Callable[[str, np.ndarray], np.ndarray] = _identity_array,
    ignored: Callable[[str], bool] = lambda key: False,
) -> nnx.Module:
    """A copy of ``module`` with every parameter and batch statistic taken from named arrays.

    The module's variables are named by their ``.``-joined paths (``"stages.0.conv.kernel"``);
    ``file_key`` maps such a name to the key in ``tensors``, ``file_shape`` gives the shape that
    key must have, ``convert`` turns the stored array into the variable's layout. All keys and
    shapes are checked before anything is built.

    Args:
      module: the template, usually abstract (from ``nnx.eval_shape``); left unchanged.
      tensors: file key -> array.
      source: the file or format, for error messages.
      file_key: variable name -> file key.
      file_shape: ``(file key, variable shape) -> expected stored shape``.
      convert: ``(file key, stored array) -> array in the variable's layout``.
      ignored: file keys that may be present but are not used (e.g. a classifier head).

    Returns:
      A new module with float32 arrays.

    Raises:
      ValueError: on missing or unexpected keys, or a stored array whose shape or dtype does not
        fit (naming the key).
    """
    graphdef, weights, rest = nnx.split(module, (nnx.Param, nnx.BatchStat), ...)
    flat = nnx.to_flat_state(weights)
    wanted = {file_key(".".join(str(p) for p in path)): (path, variable) for path, variable in flat}
    missing = sorted(set(wanted) - set(tensors))
    if missing:
        raise ValueError(f"{source}: missing {len(missing)} key(s): {missing[:8]}")
    unexpected = sorted(key for key in set(tensors) - set(wanted) if not ignored(key))
    if unexpected:
        raise ValueError(f"{source}: {len(unexpected)} unexpected key(s): {unexpected[:8]}")
    filled = []
    for key, (path, variable) in wanted.items():
        array = np.asarray(tensors[key])
        expected = tuple(file_shape(key, tuple(variable.get_value().shape)))
        if array.shape != expected:
            raise ValueError(f"{source}: key {key!r} has shape {array.shape}, expected {expected}")
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{source}: key {key!r} must hold floating-point values, got dtype {array.dtype}")
        filled.append((path, variable.replace(jnp.asarray(convert(key, array), jnp.float32))))
    return nnx.merge(graphdef, nnx.from_flat_state(filled), rest)
