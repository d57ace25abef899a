"""The time-conditioned residual block of ADM / improved DDPM."""

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.nn.conv import conv
from gensynth.nn.norms import AdaGroupNorm, GroupNorm


class ResBlock(nnx.Module):
    """Residual block with scale-shift (AdaGN) or additive time conditioning.

    `h = conv3(SiLU(GN(x)))`, `h = conv3_0(dropout(SiLU(AdaGN(h, emb))))`, returns `skip(x) + h`,
    where conv3_0 is zero-initialised (so the block starts as `skip`) and `skip` is the identity,
    or a 1x1(x1) conv when the width changes. With `time_conditioning="additive"` the AdaGN step is
    `GN(h + Linear(SiLU(emb)))` instead (see `AdaGroupNorm`).

    Args:
      in_channels: input channels C_in.
      out_channels: output channels C_out.
      emb_dim: width E of the conditioning embedding.
      spatial_dims: 2 or 3.
      groups: GroupNorm groups; must divide C_in and C_out.
      norm_eps: epsilon of both group norms.
      time_conditioning: "scale_shift" or "additive", the `mode` of `AdaGroupNorm`.
      dropout: dropout rate before the last conv, in [0, 1).
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream. The block keeps no random state; dropout keys come at call time.

    References:
      Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021;
      Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        *,
        spatial_dims: int,
        groups: int,
        norm_eps: float = 1e-5,
        time_conditioning: str = "scale_shift",
        dropout: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_norm = GroupNorm(in_channels, groups=groups, eps=norm_eps, rngs=rngs)
        self.in_conv = conv(in_channels, out_channels, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs)
        self.out_norm = AdaGroupNorm(
            out_channels, emb_dim, groups=groups, eps=norm_eps, mode=time_conditioning, dtype=dtype, rngs=rngs
        )
        self.dropout = nnx.Dropout(dropout)
        self.out_conv = conv(
            out_channels, out_channels, spatial_dims=spatial_dims, zero_init=True, dtype=dtype, rngs=rngs
        )
        self.skip = (
            conv(in_channels, out_channels, spatial_dims=spatial_dims, kernel_size=1, dtype=dtype, rngs=rngs)
            if in_channels != out_channels
            else None
        )

    def __call__(self, x: jax.Array, emb: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """Maps `x` `[B, *S, C_in]` and `emb` `[B, E]` to `[B, *S, C_out]`.

        Dropout is applied only when `dropout_key` (a typed PRNG key) is given.
        """
        h = self.in_conv(nnx.silu(self.in_norm(x)))
        h = nnx.silu(self.out_norm(h, emb))
        h = self.dropout(h, deterministic=dropout_key is None, rngs=dropout_key)
        h = self.out_conv(h)
        return (x if self.skip is None else self.skip(x)) + h
