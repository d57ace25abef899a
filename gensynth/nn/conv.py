"""Convolutions for 2D and 3D images: plain, strided down-sampling and nearest-x2 up-sampling.

All layers are channels-last: `[B, H, W, C]` when `spatial_dims=2`, `[B, D, H, W, C]` when
`spatial_dims=3`. Padding is symmetric (`kernel_size // 2` on each side), as in PyTorch, so a
3x3 conv with stride 2 samples the same input positions as the ADM/MONAI reference networks.
Every convolution goes through :func:`gensynth.nn.conv_grad.conv_general_dilated`, whose input
gradient stays fast inside compiled loops on CPU (DPS, MCG, fused train steps).
"""

import itertools
import string

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.nn.conv_grad import conv_general_dilated

# Per-axis fold of a 3-tap kernel into the two 2-tap kernels that nearest-x2 up-sampling followed
# by the 3-tap conv amounts to: _PHASE_FOLD[phase, tap, k]. Output pixel 2i+0 sees (x[i-1], x[i],
# x[i]) through taps (k0, k1, k2), output pixel 2i+1 sees (x[i], x[i], x[i+1]).
_PHASE_FOLD = jnp.array(
    [
        [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
        [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    ]
)


def _check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def conv(
    in_features: int,
    out_features: int,
    *,
    spatial_dims: int,
    kernel_size: int = 3,
    stride: int = 1,
    zero_init: bool = False,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """Builds a 2D or 3D convolution with symmetric ("same") padding.

    Args:
      in_features: input channels C_in.
      out_features: output channels C_out.
      spatial_dims: 2 for `[B, H, W, C]` images, 3 for `[B, D, H, W, C]` volumes.
      kernel_size: odd kernel width k along every spatial axis.
      stride: stride along every spatial axis; 2 halves each spatial size (even sizes).
      zero_init: start with zero kernel and bias (ADM's last conv of each residual branch).
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream for initialisation.

    Returns:
      An `nnx.Conv` mapping `[B, *S, C_in]` to `[B, *S / stride, C_out]`.

    Raises:
      ValueError: if `spatial_dims` is not 2 or 3 or `kernel_size` is even.

    >>> layer = conv(1, 4, spatial_dims=3, stride=2, rngs=nnx.Rngs(0))
    >>> layer(jnp.zeros((1, 8, 8, 8, 1))).shape
    (1, 4, 4, 4, 4)
    """
    _check_spatial_dims(spatial_dims)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    pad = kernel_size // 2
    init = {"kernel_init": nnx.initializers.zeros_init()} if zero_init else {}
    return nnx.Conv(
        in_features,
        out_features,
        kernel_size=(kernel_size,) * spatial_dims,
        strides=stride,
        padding=((pad, pad),) * spatial_dims,
        dtype=dtype,
        rngs=rngs,
        conv_general_dilated=conv_general_dilated,
        **init,
    )


class Downsample(nnx.Module):
    """Halves every spatial size with a 3x3(x3) convolution of stride 2 (padding 1).

    Args:
      channels: channels C, kept.
      spatial_dims: 2 or 3.
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    References:
      Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021 (ADM).
    """

    def __init__(self, channels: int, *, spatial_dims: int, dtype=jnp.float32, rngs: nnx.Rngs):
        self.conv = conv(channels, channels, spatial_dims=spatial_dims, stride=2, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[B, *S, C]` (even sizes S) to `[B, *S/2, C]`."""
        return self.conv(x)


class Upsample(nnx.Module):
    """Doubles every spatial size: nearest-neighbour x2, then a 3x3(x3) convolution (padding 1).

    The same result is computed on the low-resolution map: along each axis the two output phases
    (even, odd pixels) are 2-tap convolutions whose taps are sums of the 3-tap kernel, so the layer
    runs one 2x2(x2) convolution with 2**spatial_dims * C outputs on the one-pixel-padded input
    and interleaves the phases. The parameter is the ordinary 3x3(x3) kernel (`self.conv`), so
    `self.conv(resize_nearest(x))` is the same function; that is about 2.25x (2D) / 3.4x (3D)
    fewer FLOPs than convolving the up-sampled map.

    Args:
      channels: channels C, kept.
      spatial_dims: 2 or 3.
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    References:
      Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021 (ADM).
    """

    def __init__(self, channels: int, *, spatial_dims: int, dtype=jnp.float32, rngs: nnx.Rngs):
        self.spatial_dims = spatial_dims
        self.conv = conv(channels, channels, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs)

    def _phase_kernel(self) -> jax.Array:
        """Folds the `[3]*d + [C_in, C_out]` kernel into `[2]*d + [C_in, 2**d * C_out]`."""
        d = self.spatial_dims
        phases, taps, ks = string.ascii_lowercase[:d], string.ascii_uppercase[:d], "pqr"[:d]
        operands = ",".join(p + t + k for p, t, k in zip(phases, taps, ks))
        spec = f"{operands},{ks}io->{taps}i{phases}o"
        kernel = self.conv.kernel[...]
        folded = jnp.einsum(spec, *([_PHASE_FOLD] * d), kernel)  # [2]*d taps, C_in, [2]*d phases, C_out
        return folded.reshape((2,) * d + (kernel.shape[-2], -1))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[B, *S, C]` to `[B, *2S, C]`."""
        d = self.spatial_dims
        sizes = x.shape[1:-1]
        dtype = self.conv.dtype or x.dtype
        kernel = self._phase_kernel().astype(dtype)
        xp = jnp.pad(x.astype(dtype), ((0, 0),) + ((1, 1),) * d + ((0, 0),))
        layout = ("NHWC", "HWIO", "NHWC") if d == 2 else ("NDHWC", "DHWIO", "NDHWC")
        z = conv_general_dilated(
            xp, kernel, (1,) * d, "VALID", dimension_numbers=layout
        )  # [B, *(S + 1), 2**d * C]
        z = z.reshape(z.shape[:-1] + (2,) * d + (-1,))  # [B, *(S + 1), *[2]*d, C]
        # Output pixel 2i + a along an axis is phase a read at low-res index i + a.
        parts = [
            z[(slice(None),) + tuple(slice(a, a + n) for a, n in zip(phase, sizes)) + phase]
            for phase in itertools.product((0, 1), repeat=d)
        ]  # 2**d arrays [B, *S, C]
        y = jnp.stack(parts, axis=0).reshape((2,) * d + parts[0].shape)  # [*[2]*d, B, *S, C]
        perm = (d,) + tuple(i for a in range(d) for i in (d + 1 + a, a)) + (2 * d + 1,)
        y = y.transpose(perm)  # [B, S_0, 2, S_1, 2, ..., C]
        y = y.reshape((x.shape[0],) + tuple(2 * n for n in sizes) + (y.shape[-1],))
        return y + self.conv.bias[...].astype(dtype)
