"""The FID Inception-V3 (pytorch-fid's network) as an nnx module, and its weights from safetensors.

The network is torchvision's Inception-V3 trunk with pytorch-fid's changes for the TensorFlow FID
graph: average pools that do not count padding (`FIDInceptionA`, `FIDInceptionC`,
`FIDInceptionE_1`) and a max pool in the last block (`FIDInceptionE_2`). Features are the
2048-d global average of ``Mixed_7c`` ("pool3"). Attribute names follow the PyTorch state dict,
so ``Mixed_5b.branch1x1.conv.weight`` fills ``net.Mixed_5b.branch1x1.conv.kernel``.

gensynth ships no weights. Convert pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` once
where torch is installed, e.g.
``safetensors.torch.save_file(torch.load(p, weights_only=True), "pt_inception.safetensors")``,
and pass that file to `load_fid_inception`.

References:
  Szegedy et al. 2016, "Rethinking the Inception architecture for computer vision";
  Heusel et al. 2017 (FID); Seitzer, pytorch-fid (github.com/mseitzer/pytorch-fid), ``inception.py``.
"""

import functools
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.metrics.features import (
    FeatureExtractor,
    assign_arrays,
    feature_extractor_from_module,
    read_safetensors,
)

FID_FEATURE_DIM = 2048  # size of the pool3 features
FID_INPUT_SIZE = 299  # images are resized to 299 x 299

_BN_EPS = 1e-3  # torchvision's BasicConv2d
_BN_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_UNUSED = ("fc.", "AuxLogits.")  # classifier heads in the file; not part of the feature trunk


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


class _BasicConv(nnx.Module):
    """torchvision's BasicConv2d: conv without bias, batch norm (running statistics, eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, *, stride: int = 1, padding=0, rngs: nnx.Rngs):
        ph, pw = _pair(padding)
        self.conv = nnx.Conv(
            cin, cout, _pair(kernel), strides=stride, padding=((ph, ph), (pw, pw)), use_bias=False, rngs=rngs
        )
        self.bn = nnx.BatchNorm(cout, use_running_average=True, epsilon=_BN_EPS, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:  # stride 1, padding 1, padding not counted
    return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nnx.max_pool(x, (3, 3), strides=(2, 2))


class _InceptionA(nnx.Module):
    def __init__(self, cin: int, pool_features: int, *, rngs: nnx.Rngs):
        self.branch1x1 = _BasicConv(cin, 64, 1, rngs=rngs)
        self.branch5x5_1 = _BasicConv(cin, 48, 1, rngs=rngs)
        self.branch5x5_2 = _BasicConv(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = _BasicConv(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = _BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = _BasicConv(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = _BasicConv(cin, pool_features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_3x3(x))], axis=-1)


class _InceptionB(nnx.Module):
    def __init__(self, cin: int, *, rngs: nnx.Rngs):
        self.branch3x3 = _BasicConv(cin, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = _BasicConv(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = _BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = _BasicConv(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch3x3(x), b3, _max_pool_3x3_s2(x)], axis=-1)


class _InceptionC(nnx.Module):
    def __init__(self, cin: int, c7: int, *, rngs: nnx.Rngs):
        self.branch1x1 = _BasicConv(cin, 192, 1, rngs=rngs)
        self.branch7x7_1 = _BasicConv(cin, c7, 1, rngs=rngs)
        self.branch7x7_2 = _BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = _BasicConv(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = _BasicConv(cin, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = _BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = _BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = _BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = _BasicConv(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = _BasicConv(cin, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):  # fmt: skip
            d = layer(d)
        return jnp.concatenate([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_3x3(x))], axis=-1)


class _InceptionD(nnx.Module):
    def __init__(self, cin: int, *, rngs: nnx.Rngs):
        self.branch3x3_1 = _BasicConv(cin, 192, 1, rngs=rngs)
        self.branch3x3_2 = _BasicConv(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = _BasicConv(cin, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = _BasicConv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = _BasicConv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = _BasicConv(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class _InceptionE(nnx.Module):
    """pytorch-fid's FIDInceptionE_1 (``max_pool=False``) or FIDInceptionE_2 (``max_pool=True``)."""

    def __init__(self, cin: int, *, max_pool: bool, rngs: nnx.Rngs):
        self.max_pool = max_pool
        self.branch1x1 = _BasicConv(cin, 320, 1, rngs=rngs)
        self.branch3x3_1 = _BasicConv(cin, 384, 1, rngs=rngs)
        self.branch3x3_2a = _BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = _BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = _BasicConv(cin, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = _BasicConv(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = _BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = _BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = _BasicConv(cin, 192, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = jnp.concatenate([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], axis=-1)
        if self.max_pool:
            pooled = nnx.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        return jnp.concatenate([self.branch1x1(x), b3, d, self.branch_pool(pooled)], axis=-1)


class InceptionV3(nnx.Module):
    """The FID Inception-V3 feature network (pool3, 2048-d), channels-last.

    Random weights at construction (slow on CPU: about 300 initialisers); `load_fid_inception`
    builds it from a weights file without initialising.

    Args:
      rngs: `params` stream for the (random) initial weights.

    References:
      Szegedy et al. 2016; Seitzer, pytorch-fid, ``FIDInceptionA/C/E_1/E_2``.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = _BasicConv(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = _BasicConv(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = _BasicConv(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = _BasicConv(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = _BasicConv(80, 192, 3, rngs=rngs)
        self.Mixed_5b = _InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = _InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = _InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = _InceptionB(288, rngs=rngs)
        self.Mixed_6b = _InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = _InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = _InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = _InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = _InceptionD(768, rngs=rngs)
        self.Mixed_7b = _InceptionE(1280, max_pool=False, rngs=rngs)
        self.Mixed_7c = _InceptionE(2048, max_pool=True, rngs=rngs)

    def __call__(self, images: jax.Array, *, resize: bool = True) -> jax.Array:
        """Pool3 features of ``[B, H, W, C]`` images in [-1, 1], ``C`` 1 (grey, repeated) or 3 (RGB).

        [-1, 1] is what pytorch-fid feeds the network after mapping its [0, 1] input with
        ``2x - 1``. With ``resize`` the images are resized to 299 x 299 bilinearly without
        antialiasing (PyTorch's ``interpolate(..., "bilinear", align_corners=False)``); without
        it they must be at least 75 x 75. Returns ``[B, 2048]``.
        """
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images: expected [B, H, W, C] with C = 1 or 3, got shape {images.shape}")
        x = jnp.asarray(images, jnp.float32)
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if resize:
            size = (x.shape[0], FID_INPUT_SIZE, FID_INPUT_SIZE, 3)
            x = jax.image.resize(x, size, "bilinear", antialias=False)
        elif min(x.shape[1:3]) < 75:
            raise ValueError(f"images: without resize the side must be >= 75 px, got {x.shape[1:3]}")
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max_pool_3x3_s2(x)))
        x = _max_pool_3x3_s2(x)  # [B, 35, 35, 192] at 299 px
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):  # fmt: skip
            x = block(x)
        return jnp.mean(x, axis=(1, 2))  # [B, 2048]


def _torch_key(name: str) -> str:
    """``Mixed_5b.branch1x1.conv.kernel`` -> ``Mixed_5b.branch1x1.conv.weight``; bn names likewise."""
    prefix, leaf = name.rsplit(".", 1)
    return f"{prefix}.{'weight' if prefix.endswith('.conv') else _BN_NAMES[leaf]}"


def _torch_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[3], shape[2], shape[0], shape[1]) if key.endswith(".conv.weight") else shape  # HWIO -> OIHW


def _from_torch(key: str, array: np.ndarray) -> np.ndarray:
    return array.transpose(2, 3, 1, 0) if key.endswith(".conv.weight") else array  # OIHW -> HWIO


def _unused(key: str) -> bool:
    return key.startswith(_UNUSED) or key.endswith(".num_batches_tracked")


@functools.cache
def _abstract_inception() -> InceptionV3:
    """The network's structure without weights (tracing it takes seconds; done once per process)."""
    return nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))


def load_fid_inception(source: str | Path | Mapping[str, np.ndarray]) -> InceptionV3:
    """Builds the FID `InceptionV3` with weights from a safetensors file in PyTorch key layout.

    Keys are those of pytorch-fid's ``FIDInceptionV3`` / torchvision's ``Inception3`` state dict
    (``Conv2d_1a_3x3.conv.weight``, ``Conv2d_1a_3x3.bn.running_mean``,
    ``Mixed_5b.branch1x1.conv.weight``, ...): conv weights ``[O, I, kh, kw]`` become kernels
    ``[kh, kw, I, O]``; batch norms keep their running statistics and are applied in inference
    mode with eps 1e-3. ``fc.*``, ``AuxLogits.*`` and ``*.num_batches_tracked`` are ignored.

    Args:
      source: the ``.safetensors`` file (see the module docstring for converting pytorch-fid's
        ``.pth``), or a mapping key -> NumPy array.

    Returns:
      The network; ``net(images)`` gives ``[B, 2048]`` FID features.

    Raises:
      FileNotFoundError: if ``source`` is a path that does not exist.
      ValueError: on missing or unexpected keys, or a tensor whose shape does not fit (naming the key).

    >>> load_fid_inception("no-such-file.safetensors")
    Traceback (most recent call last):
    FileNotFoundError: no-such-file.safetensors: no such weights file
    """
    tensors = source if isinstance(source, Mapping) else read_safetensors(source)[0]
    return assign_arrays(
        _abstract_inception(),
        tensors,
        source="FID Inception state" if isinstance(source, Mapping) else str(source),
        file_key=_torch_key,
        file_shape=_torch_shape,
        convert=_from_torch,
        ignored=_unused,
    )


def fid_inception_extractor(path: str | Path) -> FeatureExtractor:
    """The FID Inception with weights from ``path`` as a `FeatureExtractor` (jitted, 2048-d).

    Named ``fid-inception-v3 (<file name>)`` and marked comparable with published FIDs: that holds
    only for pytorch-fid's ``pt_inception-2015-12-05`` weights, which the caller vouches for.
    """
    name = f"fid-inception-v3 ({Path(path).name})"
    return feature_extractor_from_module(
        name, load_fid_inception(path), feature_dim=FID_FEATURE_DIM, comparable_to_published=True
    )
