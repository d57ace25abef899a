"""A small built-in feature network for FID-style metrics, trained self-supervised on built-in data.

`BuiltinFeatureNet` is a 2D or 3D CNN (about 0.21M parameters in 2D, 0.62M in 3D at the default
widths) whose globally pooled last activation is the feature vector. `train_builtin_extractor`
trains it without labels on two pretext tasks at once, each a classification of what was done
to the image:

- rotation: 0, 90, 180 or 270 degrees in the (H, W) plane (Gidaris et al. 2018); solving it
  needs the anatomy's layout and orientation;
- corruption: none, additive Gaussian noise (std 0.2 on [-1, 1] images) or a 2x loss of
  resolution (down- then up-sampled); solving it needs texture and sharpness, the properties
  in which generated images most often differ from real ones.

Limits: the features are not Inception features and the network is trained here, on little data,
so its FID/KID values are comparable only with values from the same weights file (same
architecture, data and seed), never with published FIDs. Report the extractor's name with every
number (`builtin_feature_extractor`).

References:
  Gidaris, Singh & Komodakis 2018, "Unsupervised representation learning by predicting image
  rotations"; Heusel et al. 2017 (FID).
"""

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gensynth.metrics.features import (
    FeatureExtractor,
    assign_arrays,
    feature_extractor_from_module,
    read_safetensors,
)
from gensynth.nn import GroupNorm, conv
from gensynth.runs import atomic_write_bytes

CORRUPTIONS = ("none", "noise", "low_resolution")  # the corruption classes, in label order
NOISE_STD = 0.2  # std of the "noise" corruption, in [-1, 1] image units
_FORMAT = "gensynth.BuiltinFeatureNet/1"  # safetensors metadata tag of saved weights


class _Stage(nnx.Module):
    """Pre-activation pair: GroupNorm, SiLU, stride-2 conv; GroupNorm, SiLU, conv."""

    def __init__(self, cin: int, cout: int, *, spatial_dims: int, groups: int, rngs: nnx.Rngs):
        self.norm1 = GroupNorm(cin, groups=groups, rngs=rngs)
        self.down = conv(cin, cout, spatial_dims=spatial_dims, stride=2, rngs=rngs)
        self.norm2 = GroupNorm(cout, groups=groups, rngs=rngs)
        self.conv = conv(cout, cout, spatial_dims=spatial_dims, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.down(jax.nn.silu(self.norm1(x)))
        return self.conv(jax.nn.silu(self.norm2(x)))


class BuiltinFeatureNet(nnx.Module):
    """Small 2D/3D CNN feature extractor with rotation and corruption heads (see module docstring).

    A stem conv, ``len(channels) - 1`` stages that each halve every spatial size, GroupNorm + SiLU,
    and a global mean over space give features ``[B, channels[-1]]``. Use it at the resolution
    it was trained at.

    Args:
      in_channels: image channels C.
      spatial_dims: 2 for ``[B, H, W, C]`` images, 3 for ``[B, D, H, W, C]`` volumes.
      channels: stem width, then one width per stage; the feature size F is ``channels[-1]``.
      groups: GroupNorm groups; must divide every width.
      rngs: ``params`` stream.

    >>> net = BuiltinFeatureNet(1, spatial_dims=2, rngs=nnx.Rngs(0))
    >>> net(jnp.zeros((2, 32, 32, 1))).shape
    (2, 96)
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        spatial_dims: int = 2,
        channels: Sequence[int] = (16, 32, 64, 96),
        groups: int = 8,
        rngs: nnx.Rngs,
    ):
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or any(c % groups for c in channels):
            raise ValueError(f"channels: expected two or more widths divisible by groups={groups}, got {channels}")
        self.in_channels, self.spatial_dims, self.channels, self.groups = in_channels, spatial_dims, channels, groups
        self.stem = conv(in_channels, channels[0], spatial_dims=spatial_dims, rngs=rngs)
        self.stages = nnx.List(
            [_Stage(a, b, spatial_dims=spatial_dims, groups=groups, rngs=rngs) for a, b in itertools.pairwise(channels)]
        )
        self.norm = GroupNorm(channels[-1], groups=groups, rngs=rngs)
        self.rotation_head = nnx.Linear(channels[-1], 4, rngs=rngs)
        self.corruption_head = nnx.Linear(channels[-1], len(CORRUPTIONS), rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``[B, *S, C]`` images in [-1, 1] to features ``[B, F]``."""
        if images.ndim != self.spatial_dims + 2 or images.shape[-1] != self.in_channels:
            raise ValueError(
                f"images: expected [B, *S, {self.in_channels}] with {self.spatial_dims} spatial axes, "
                f"got shape {images.shape}"
            )
        x = self.stem(images)
        for stage in self.stages:
            x = stage(x)
        x = jax.nn.silu(self.norm(x))
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))  # [B, F]

    def logits(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pretext-task logits ``([B, 4] rotation, [B, 3] corruption)`` of ``[B, *S, C]`` images."""
        features = self(images)
        return self.rotation_head(features), self.corruption_head(features)


def _pretext_batch(key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Corrupts and rotates each image of ``[B, *S, C]`` at random; returns ``(images, rotation, corruption)``."""
    key_rot, key_kind, key_noise = jax.random.split(key, 3)
    b = x.shape[0]
    rotation = jax.random.randint(key_rot, (b,), 0, 4)
    kind = jax.random.randint(key_kind, (b,), 0, len(CORRUPTIONS))
    noisy = x + NOISE_STD * jax.random.normal(key_noise, x.shape)
    half = (b,) + tuple(max(n // 2, 1) for n in x.shape[1:-1]) + x.shape[-1:]
    low = jax.image.resize(jax.image.resize(x, half, "linear"), x.shape, "linear")
    x = jnp.stack([x, noisy, low], axis=1)[jnp.arange(b), kind]  # [B, *S, C], order of CORRUPTIONS
    x = jnp.stack([jnp.rot90(x, k, axes=(-3, -2)) for k in range(4)], axis=1)[jnp.arange(b), rotation]
    return x, rotation, kind


def train_builtin_extractor(
    key: jax.Array,
    images: np.ndarray | jax.Array,
    *,
    steps: int = 2000,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    channels: Sequence[int] = (16, 32, 64, 96),
) -> tuple[BuiltinFeatureNet, dict[str, jax.Array]]:
    """Trains a `BuiltinFeatureNet` on unlabelled images with the rotation + corruption pretext tasks.

    Each step draws ``batch_size`` images with replacement, corrupts and rotates each at random
    and minimises the sum of the two cross-entropies with Adam. All steps run in one compiled
    ``lax.scan``; step ``i`` uses ``fold_in(key, i)``.

    Args:
      key: PRNG key for initialisation, batches and pretext transforms.
      images: ``[N, H, W, C]`` or ``[N, D, H, W, C]`` in [-1, 1], square in (H, W) (for the
        rotations), every spatial size >= 8; e.g. ``gensynth.data.builtin_dataset("mni152", 64)``.
      steps: optimiser steps.
      batch_size: images per step.
      learning_rate: Adam step size.
      channels: widths, as in `BuiltinFeatureNet`.

    Returns:
      ``(net, metrics)``: the trained network and float32 ``[steps]`` arrays ``loss``,
      ``rotation_accuracy`` and ``corruption_accuracy`` (chance: 0.25 and 1/3).

    >>> x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)
    >>> net, metrics = train_builtin_extractor(jax.random.key(0), x, steps=2, batch_size=2, channels=(8, 8))
    >>> metrics["loss"].shape
    (2,)
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim not in (4, 5) or images.shape[0] < 1:
        raise ValueError(f"images: expected [N, H, W, C] or [N, D, H, W, C], got shape {images.shape}")
    if images.shape[-3] != images.shape[-2] or min(images.shape[1:-1]) < 8:
        raise ValueError(f"images: (H, W) must be square and every spatial size >= 8, got shape {images.shape}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps, batch_size: expected >= 1, got {steps}, {batch_size}")
    key_init, key_train = jax.random.split(key)
    net = BuiltinFeatureNet(
        images.shape[-1], spatial_dims=images.ndim - 2, channels=channels, rngs=nnx.Rngs(params=key_init)
    )
    graphdef, params = nnx.split(net)
    optimizer = optax.adam(learning_rate)

    def loss_fn(params, batch, step_key):
        x, rotation, kind = _pretext_batch(step_key, batch)
        rot_logits, kind_logits = nnx.merge(graphdef, params).logits(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(rot_logits, rotation).mean()
        loss = loss + optax.softmax_cross_entropy_with_integer_labels(kind_logits, kind).mean()
        return loss, {
            "loss": loss,
            "rotation_accuracy": jnp.mean(jnp.argmax(rot_logits, -1) == rotation),
            "corruption_accuracy": jnp.mean(jnp.argmax(kind_logits, -1) == kind),
        }

    @jax.jit
    def run(params, images, key):
        def step(carry, i):
            params, opt_state = carry
            key_batch, key_pretext = jax.random.split(jax.random.fold_in(key, i))
            batch = images[jax.random.randint(key_batch, (batch_size,), 0, images.shape[0])]
            grads, metrics = jax.grad(loss_fn, has_aux=True)(params, batch, key_pretext)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        (params, _), metrics = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))
        return params, metrics

    params, metrics = run(params, images, key_train)
    return nnx.merge(graphdef, params), metrics


def builtin_feature_extractor(net: BuiltinFeatureNet, *, tag: str) -> FeatureExtractor:
    """`net` as a `FeatureExtractor` named ``gensynth-builtin-cnn-<2|3>d (<tag>)``, not comparable
    with published numbers; ``tag`` should say which weights (file name, or data, size and seed)."""
    return feature_extractor_from_module(
        f"gensynth-builtin-cnn-{net.spatial_dims}d ({tag})", net, feature_dim=net.channels[-1]
    )


def save_builtin_extractor(path: str | Path, net: BuiltinFeatureNet) -> None:
    """Writes `net`'s weights and sizes to a safetensors file, atomically.

    Keys are the parameters' ``.``-joined paths (``stages.0.down.kernel``); the sizes go into
    the file's metadata, so `load_builtin_extractor` needs nothing else.
    """
    from safetensors.numpy import save

    flat = nnx.to_flat_state(nnx.state(net, nnx.Param))
    tensors = {".".join(str(p) for p in path): np.asarray(v.get_value()) for path, v in flat}
    config = {"in_channels": net.in_channels, "spatial_dims": net.spatial_dims, "channels": list(net.channels),
              "groups": net.groups}  # fmt: skip
    atomic_write_bytes(path, save(tensors, metadata={"format": _FORMAT, "config": json.dumps(config)}))


def load_builtin_extractor(path: str | Path) -> BuiltinFeatureNet:
    """Reads a `BuiltinFeatureNet` written by `save_builtin_extractor`.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if the file is not such a file, or a key is missing, unexpected or of the wrong
        shape (naming the key).
    """
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != _FORMAT or "config" not in metadata:
        raise ValueError(f"{path}: not a BuiltinFeatureNet weights file (metadata format {metadata.get('format')!r})")
    config = json.loads(metadata["config"])
    abstract = nnx.eval_shape(lambda: BuiltinFeatureNet(**config, rngs=nnx.Rngs(0)))
    return assign_arrays(abstract, tensors, source=str(path))
