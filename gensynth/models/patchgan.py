"""PatchGAN discriminator (pix2pix's NLayerDiscriminator) for 2D images and 3D volumes.

It classifies every overlapping patch of the input as real or fake: the output is a logit map
`[B, *S', 1]` whose pixels each see a `receptive_field(n_layers, kernel_size)`-wide window (70 px
for the standard `n_layers=3`, kernel 4). Layers: conv(k, stride 2) -> LeakyReLU(0.2); then
`n_layers - 1` x [conv(k, stride 2) -> norm -> LeakyReLU]; conv(k, stride 1) -> norm -> LeakyReLU;
conv(k, stride 1) to one channel. Widths double from `channels` up to `8 * channels`; padding is
1 on every side for kernel 4 (`(k - 1) // 2`), as in pix2pix. Convs followed by a norm have no bias.

Norms: instance norm (pix2pix's default for unpaired training), group norm, or none. The chapters'
BatchNorm (DiffTumor, brainSPADE 3D) is not offered: its batch statistics couple the examples and
add running state; instance/group norm are the per-example replacements. Optional spectral
normalisation (SNGAN) keeps one power-iteration vector `u` per conv as `nnx.BatchStat` state; a
train step that passes `update_stats=True` must carry that state out of the forward pass.

References:
  Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017;
  Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.nn import GroupNorm
from gensynth.nn.conv_grad import conv_general_dilated

NORMS = ("instance", "group", "none")
LEAKY_SLOPE = 0.2


def receptive_field(n_layers: int, kernel_size: int = 4) -> int:
    """Side (pixels) of the input window seen by one output pixel of `PatchGAN`.

    `r = 1`, then for each conv from the last to the first `r = (r - 1) * stride + kernel_size`;
    the strides are 2 for the first `n_layers` convs and 1 for the last two.

    >>> receptive_field(3), receptive_field(1), receptive_field(5)
    (70, 16, 286)
    """
    if n_layers < 1 or kernel_size < 1:
        raise ValueError(f"n_layers and kernel_size must be >= 1, got {n_layers}, {kernel_size}")
    r = 1
    for stride in [1, 1] + [2] * n_layers:  # from the last layer back
        r = (r - 1) * stride + kernel_size
    return r


class _Conv(nnx.Module):
    """Convolution with kernel `[k]*d + [C_in, C_out]`, optionally spectrally normalised."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int, kernel_size: int, stride: int,
                 use_bias: bool, spectral_norm: bool, dtype, rngs: nnx.Rngs):  # fmt: skip
        shape = (kernel_size,) * spatial_dims + (in_channels, out_channels)
        self.kernel = nnx.Param(0.02 * jax.random.normal(rngs.params(), shape, jnp.float32))  # pix2pix init
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32)) if use_bias else None
        self.u = (
            nnx.BatchStat(_normalize(jax.random.normal(rngs.params(), (out_channels,), jnp.float32)))
            if spectral_norm else None
        )  # fmt: skip
        self.stride, self.pad, self.spatial_dims, self.dtype = stride, (kernel_size - 1) // 2, spatial_dims, dtype

    def _normalized_kernel(self, update_stats: bool) -> jax.Array:
        """`W / sigma(W)`, sigma from one power iteration on `W` as a `[k^d C_in, C_out]` matrix."""
        w = self.kernel[...]
        w_mat = w.reshape(-1, w.shape[-1])  # [M, C_out]
        v = jax.lax.stop_gradient(_normalize(w_mat @ self.u[...]))  # [M]
        u = jax.lax.stop_gradient(_normalize(v @ w_mat))  # [C_out]
        if update_stats:
            self.u[...] = u
        return w / (v @ w_mat @ u)

    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        kernel = self.kernel[...] if self.u is None else self._normalized_kernel(update_stats)
        layout = ("NHWC", "HWIO", "NHWC") if self.spatial_dims == 2 else ("NDHWC", "DHWIO", "NDHWC")
        y = conv_general_dilated(
            x.astype(self.dtype), kernel.astype(self.dtype), (self.stride,) * self.spatial_dims,
            ((self.pad, self.pad),) * self.spatial_dims, dimension_numbers=layout,
        )  # fmt: skip
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


def _normalize(v: jax.Array, eps: float = 1e-12) -> jax.Array:
    return v / (jnp.linalg.norm(v) + eps)


class PatchGAN(nnx.Module):
    """PatchGAN discriminator (see the module docstring).

    Args:
      in_channels: channels C of the input (for a conditional D, the image and condition concatenated).
      spatial_dims: 2 for `[B, H, W, C]`, 3 for `[B, D, H, W, C]`.
      channels: width of the first conv (pix2pix ndf = 64).
      n_layers: stride-2 convs (3 in pix2pix: 70 px patches).
      kernel_size: kernel side of every conv (4 in pix2pix).
      norm: "instance", "group" or "none".
      groups: groups of the "group" norm; must divide every normalised width.
      spectral_norm: spectrally normalise every conv (SNGAN).
      dtype: compute dtype; parameters are float32, logits float32.
      rngs: `params` stream.

    Raises:
      ValueError: for a bad `spatial_dims`, `n_layers` or `norm`.

    >>> d = PatchGAN(1, channels=8, rngs=nnx.Rngs(0))
    >>> d(jnp.zeros((2, 64, 64, 1))).shape
    (2, 6, 6, 1)
    """

    def __init__(
        self, in_channels: int, *, spatial_dims: int = 2, channels: int = 64, n_layers: int = 3,
        kernel_size: int = 4, norm: str = "instance", groups: int = 32, spectral_norm: bool = False,
        dtype=jnp.float32, rngs: nnx.Rngs,
    ):  # fmt: skip
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.in_channels, self.spatial_dims, self.n_layers = in_channels, spatial_dims, n_layers
        layer = {"spatial_dims": spatial_dims, "kernel_size": kernel_size, "spectral_norm": spectral_norm,
                 "dtype": dtype, "rngs": rngs}  # fmt: skip
        widths = [in_channels] + [channels * min(2**i, 8) for i in range(n_layers + 1)] + [1]
        strides = [2] * n_layers + [1, 1]
        # Norms after every conv but the first and the last; a conv followed by a norm has no bias
        # (the norm removes it; its gradient would be rounding noise).
        normed = [norm != "none" and 0 < i < n_layers + 1 for i in range(n_layers + 2)]
        self.convs = nnx.List(
            [_Conv(widths[i], widths[i + 1], stride=strides[i], use_bias=not normed[i], **layer)
             for i in range(n_layers + 2)]
        )  # fmt: skip
        self.norms = nnx.List([_make_norm(norm, w, groups, rngs) for w in widths[2:-1]])

    def features(self, x: jax.Array, *, update_stats: bool = False) -> list[jax.Array]:
        """The activation after every LeakyReLU, then the logits `[B, *S', 1]` float32 last
        (`n_layers + 2` arrays; the inputs of `gensynth.gan.feature_matching_loss`).

        Args:
          x: `[B, *S, C]` with every spatial size >= `receptive_field` - 2 (so the output is non-empty).
          update_stats: store the spectral-norm power-iteration vectors (training of D).
        """
        d = self.spatial_dims
        if x.ndim != d + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must have shape [B, *spatial({d}), {self.in_channels}], got {x.shape}")
        feats, h = [], x
        for i, layer in enumerate(self.convs):
            h = layer(h, update_stats)
            if i == len(self.convs) - 1:
                break
            if i > 0 and self.norms[i - 1] is not None:
                h = self.norms[i - 1](h)
            h = jax.nn.leaky_relu(h, LEAKY_SLOPE)
            feats.append(h)
        return feats + [h.astype(jnp.float32)]

    def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
        """Patch logits `[B, *S', 1]` float32 for `x` `[B, *S, C]`."""
        return self.features(x, update_stats=update_stats)[-1]


def _make_norm(norm: str, width: int, groups: int, rngs: nnx.Rngs) -> GroupNorm | None:
    if norm == "none":
        return None
    return GroupNorm(width, groups=width if norm == "instance" else groups, rngs=rngs)
