"""Perceptual (feature-space) loss over a VGG-style conv stack, with a torchvision VGG16 loader.

`PerceptualLoss` compares two images through the activations at the end of each slice of a
`VGGFeatures` net, LPIPS-style: each layer's features are unit-normalised over channels, and the
squared differences are summed over channels, averaged over pixels and summed over layers
(LPIPS's "baseline" variant: uniform channel weights, no learned linear heads).

Two feature nets:

- `load_vgg16_features(path)`: ImageNet VGG16 weights the user supplies as a safetensors file with
  torchvision's key names (`features.0.weight` `[O, I, 3, 3]`, `features.0.bias`, ...; kernels are
  transposed OIHW -> HWIO). This is what LPIPS / LDM's perceptual loss builds on.
- `random_feature_net(seed)`: the default, needing no download: a small VGG-style net with fixed
  random weights. Random-feature perceptual losses do carry image structure (edges and textures
  at several scales), but they are weaker than LPIPS and their values are NOT comparable to
  published LPIPS numbers.

3D volumes `[B, D, H, W, C]`: the 2D loss is applied to one slice along each of the three axes
(axial, coronal, sagittal planes: a random slice per axis when a key is given, as DiffTumor does,
else the central slices) and the three are summed.

References:
  Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018
  (LPIPS); Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015 (VGG16);
  Johnson et al., "Perceptual Losses for Real-Time Style Transfer", ECCV 2016.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.nn import conv

VGG16_WIDTHS = (64, 128, 256, 512, 512)  # output width of each slice
VGG16_CONVS = (2, 2, 3, 3, 3)  # 3x3 convs per slice (LPIPS slices end at relu1_2 ... relu5_3)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_conv_indices(convs_per_slice: Sequence[int]) -> list[int]:
    """Index in torchvision's `vgg.features` of each conv (a conv and its ReLU take two entries,
    a max-pool between slices one).

    >>> torchvision_conv_indices(VGG16_CONVS)
    [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    """
    indices, i = [], 0
    for s, n in enumerate(convs_per_slice):
        i += 1 if s > 0 else 0
        for _ in range(n):
            indices.append(i)
            i += 2
    return indices


class VGGFeatures(nnx.Module):
    """VGG-style stack: per slice `n` x (3x3 conv -> ReLU), 2x2 max-pool before every slice but the first.

    Args:
      in_channels: input channels (3 for ImageNet weights).
      widths: output width of each slice.
      convs_per_slice: number of convs in each slice.
      rngs: `params` stream.
    """

    def __init__(self, in_channels: int = 3, *, widths: Sequence[int] = VGG16_WIDTHS,
                 convs_per_slice: Sequence[int] = VGG16_CONVS, rngs: nnx.Rngs):  # fmt: skip
        if len(widths) != len(convs_per_slice) or not widths or min(convs_per_slice) < 1:
            raise ValueError(f"widths and convs_per_slice must be non-empty, of one length, with >= 1 conv "
                             f"per slice; got {widths} and {convs_per_slice}")  # fmt: skip
        self.in_channels = in_channels
        self.convs_per_slice = tuple(convs_per_slice)
        layers, width = [], in_channels
        for w, n in zip(widths, convs_per_slice):
            for _ in range(n):
                layers.append(conv(width, w, spatial_dims=2, rngs=rngs))
                width = w
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """The ReLU output at the end of each slice for `x` `[B, H, W, in_channels]` (H, W divisible
        by 2**(slices - 1)): a list of `[B, H / 2**s, W / 2**s, widths[s]]`."""
        feats, h, i = [], x, 0
        for s, n in enumerate(self.convs_per_slice):
            if s > 0:
                h = nnx.max_pool(h, window_shape=(2, 2), strides=(2, 2))
            for layer in self.layers[i : i + n]:
                h = jax.nn.relu(layer(h))
            i += n
            feats.append(h)
        return feats


def random_feature_net(
    in_channels: int = 3, *, seed: int = 0, widths: Sequence[int] = (32, 64, 128),
    convs_per_slice: Sequence[int] = (2, 2, 2),
) -> VGGFeatures:  # fmt: skip
    """A `VGGFeatures` with fixed random weights (He-normal kernels from NumPy's generator seeded
    with `seed`, zero biases): the no-download default; see the module docstring for how it
    compares with LPIPS.

    >>> len(random_feature_net()(jnp.zeros((1, 16, 16, 3))))
    3
    """

    net = nnx.eval_shape(lambda: VGGFeatures(in_channels, widths=widths, convs_per_slice=convs_per_slice,
                                             rngs=nnx.Rngs(0)))  # fmt: skip
    rng = np.random.default_rng(seed)  # NumPy's generator: the same weights on every platform
    for layer in net.layers:
        shape = layer.kernel.shape  # [3, 3, C_in, C_out]
        layer.kernel.set_value(jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:3])), shape), jnp.float32))
        layer.bias.set_value(jnp.zeros(shape[-1:], jnp.float32))
    return net


def load_vgg16_features(path: str | os.PathLike, *, num_slices: int = 5) -> VGGFeatures:
    """Builds the first `num_slices` slices of VGG16's feature stack with weights from a safetensors
    file holding torchvision's `vgg16().features` state (keys `features.{i}.weight` OIHW and
    `features.{i}.bias`; other keys are ignored, so a whole `vgg16` state dict works too).

    Args:
      path: the .safetensors file (e.g. written with `safetensors.torch.save_file(
        {k: v for k, v in torchvision.models.vgg16(weights="DEFAULT").state_dict().items()
        if k.startswith("features.")}, path)`).
      num_slices: 1..5 slices (relu1_2 ... relu5_3); fewer need only the first layers' tensors.

    Returns:
      `VGGFeatures` with in_channels 3.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if the file is not safetensors, a needed tensor is missing, or a shape differs
        from VGG16's.
    """
    from safetensors import SafetensorError, safe_open

    if not 1 <= num_slices <= len(VGG16_WIDTHS):
        raise ValueError(f"num_slices must be in 1..{len(VGG16_WIDTHS)}, got {num_slices}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VGG16 weights file not found: {path}")
    widths, convs = VGG16_WIDTHS[:num_slices], VGG16_CONVS[:num_slices]
    net = nnx.eval_shape(lambda: VGGFeatures(3, widths=widths, convs_per_slice=convs, rngs=nnx.Rngs(0)))
    try:
        with safe_open(path, framework="numpy") as f:
            available = set(f.keys())
            for layer, index in zip(net.layers, torchvision_conv_indices(convs)):
                kernel_shape = layer.kernel.shape  # [3, 3, I, O]
                expected = {
                    f"features.{index}.weight": (kernel_shape[3], kernel_shape[2], 3, 3),
                    f"features.{index}.bias": (kernel_shape[3],),
                }
                tensors = {}
                for key, shape in expected.items():
                    if key not in available:
                        raise ValueError(f"{path}: missing tensor {key!r} (expected torchvision VGG16 "
                                         f"'features.*' keys, shape {shape})")  # fmt: skip
                    tensors[key] = np.asarray(f.get_tensor(key), np.float32)
                    if tensors[key].shape != shape:
                        raise ValueError(f"{path}: tensor {key!r} has shape {tensors[key].shape}, "
                                         f"expected {shape} for VGG16")  # fmt: skip
                weight, bias = tensors.values()
                layer.kernel.set_value(jnp.asarray(weight.transpose(2, 3, 1, 0)))  # OIHW -> HWIO
                layer.bias.set_value(jnp.asarray(bias))
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    return net


def _unit_normalize(f: jax.Array, eps: float = 1e-10) -> jax.Array:
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + eps)


class PerceptualLoss(nnx.Module):
    """LPIPS-style distance between images through a frozen `VGGFeatures` net.

    .. math::
      L(x, y) = \\sum_l w_l \\frac{1}{H_l W_l} \\sum_{h,w} \\| \\hat F_l(x)_{hw} - \\hat F_l(y)_{hw} \\|_2^2

    with F_l the activations at the end of slice l, hat meaning unit norm over channels, and
    w_l = `layer_weights` (1 each by default), averaged over the batch.

    Inputs are in [-1, 1]. With `imagenet_norm` they are mapped to [0, 1] and standardised with the
    ImageNet mean and std (as torchvision's VGG expects). A 3-channel input is used as RGB; any
    other channel count C is compared channel by channel (each replicated to 3) and averaged.
    The feature net is treated as frozen: keep its parameters out of the optimiser.

    Args:
      features: the feature net (`load_vgg16_features` or `random_feature_net`), in_channels 3.
      layer_weights: w_l per slice, or None for 1 each.
      imagenet_norm: standardise with ImageNet statistics (for pretrained VGG weights).
    """

    def __init__(self, features: VGGFeatures, *, layer_weights: Sequence[float] | None = None,
                 imagenet_norm: bool = True):  # fmt: skip
        if features.in_channels != 3:
            raise ValueError(f"features must take 3 input channels, got {features.in_channels}")
        num = len(features.convs_per_slice)
        if layer_weights is not None and len(layer_weights) != num:
            raise ValueError(f"layer_weights must have {num} entries (one per slice), got {len(layer_weights)}")
        self.features = features
        self.layer_weights = tuple(layer_weights) if layer_weights is not None else (1.0,) * num
        self.imagenet_norm = imagenet_norm

    def _distance_2d(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Per-example distance `[B]` of 2D images `[B, H, W, C]`."""
        b, h, w, c = x.shape
        if c != 3:  # each channel as a grey RGB image: [B * C, H, W, 3]
            x, y = (jnp.repeat(a.transpose(0, 3, 1, 2).reshape(b * c, h, w, 1), 3, axis=-1) for a in (x, y))
        if self.imagenet_norm:
            mean, std = jnp.array(IMAGENET_MEAN), jnp.array(IMAGENET_STD)
            x, y = ((0.5 * (a + 1.0) - mean) / std for a in (x, y))
        both = self.features(jnp.concatenate([x, y], axis=0).astype(jnp.float32))
        total = 0.0
        for weight, f in zip(self.layer_weights, both):
            fx, fy = jnp.split(f, 2, axis=0)
            diff = jnp.sum(jnp.square(_unit_normalize(fx) - _unit_normalize(fy)), axis=-1)  # [B', H_l, W_l]
            total = total + weight * jnp.mean(diff, axis=(1, 2))
        return total.reshape(b, -1).mean(-1) if c != 3 else total

    def __call__(self, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Mean perceptual distance (float32 scalar) between `x` and `y`, both `[B, H, W, C]` or
        `[B, D, H, W, C]` in [-1, 1] (2D sizes divisible by 2**(slices - 1)).

        `key` picks a random slice per axis for 3D inputs (one index per axis for the whole
        batch); without it the central slices are used. 2D inputs ignore it.
        """
        if x.shape != y.shape or x.ndim not in (4, 5):
            raise ValueError(f"x and y must have one shape [B, H, W, C] or [B, D, H, W, C], got {x.shape}, {y.shape}")
        if x.ndim == 4:
            return jnp.mean(self._distance_2d(x, y))
        keys = jax.random.split(key, 3) if key is not None else [None] * 3
        total = 0.0
        for axis, k in zip((1, 2, 3), keys):
            n = x.shape[axis]
            index = n // 2 if k is None else jax.random.randint(k, (), 0, n)
            total = total + jnp.mean(
                self._distance_2d(jnp.take(x, index, axis=axis), jnp.take(y, index, axis=axis))
            )
        return total
