"""The time-conditioned residual block of ADM / improved DDPM."""

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.nn.conv import conv
from gensynth.nn.norms import AdaGroupNorm, GroupNorm
from gensynth.nn.spade import SpadeGroupNorm


class ResBlock(nnx.Module):
    """Residual block with scale-shift (AdaGN) or additive time conditioning.

    `h = conv3(SiLU(GN(x)))`, `h = conv3_0(dropout(SiLU(AdaGN(h, emb))))`, returns `skip(x) + h`,
    where conv3_0 is zero-initialised (so the block starts as `skip`) and `skip` is the identity,
    or a 1x1(x1) conv when the width changes. With `time_conditioning="additive"` the AdaGN step is
    `GN(h + Linear(SiLU(emb)))` instead (see `AdaGroupNorm`).

    With `label_channels` set (SDM's "SDMResBlock", the middle and decoder blocks of NASDM), both
    norms are `SpadeGroupNorm`s on a label map given at call time: `SPADE_GN(x, y)` first, then
    `SPADE_GN(h, y) * (1 + scale) + shift` (or the additive form) for the time embedding.

    Args:
      in_channels: input channels C_in.
      out_channels: output channels C_out.
      emb_dim: width E of the conditioning embedding.
      spatial_dims: 2 or 3.
      groups: GroupNorm groups; must divide C_in and C_out.
      norm_eps: epsilon of both group norms.
      time_conditioning: "scale_shift" or "additive", the `mode` of `AdaGroupNorm`.
      dropout: dropout rate before the last conv, in [0, 1).
      label_channels: channels K of a SPADE label map, or None for plain group norms.
      spade_hidden: width of the SPADE layers' shared conv (used only with `label_channels`).
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
        label_channels: int | None = None,
        spade_hidden: int = 128,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.label_channels = label_channels
        spade = {"spatial_dims": spatial_dims, "groups": groups, "hidden": spade_hidden, "eps": norm_eps,
                 "dtype": dtype, "rngs": rngs}  # fmt: skip
        self.in_norm = (
            GroupNorm(in_channels, groups=groups, eps=norm_eps, rngs=rngs)
            if label_channels is None
            else SpadeGroupNorm(in_channels, label_channels, **spade)
        )
        self.in_conv = conv(in_channels, out_channels, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs)
        self.out_norm = (
            AdaGroupNorm(
                out_channels, emb_dim, groups=groups, eps=norm_eps, mode=time_conditioning, dtype=dtype, rngs=rngs
            )
            if label_channels is None
            else SpadeGroupNorm(out_channels, label_channels, emb_dim=emb_dim, mode=time_conditioning, **spade)
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

    def __call__(
        self,
        x: jax.Array,
        emb: jax.Array,
        *,
        label_map: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """Maps `x` `[B, *S, C_in]` and `emb` `[B, E]` to `[B, *S, C_out]`.

        `label_map` `[B, *S', K]` (any spatial size, resized nearest) is required iff the block was
        built with `label_channels`. Dropout is applied only when `dropout_key` (a typed PRNG key)
        is given.
        """
        if (label_map is None) != (self.label_channels is None):
            raise ValueError("label_map is required iff the block was built with label_channels")
        if label_map is None:
            h = self.in_conv(nnx.silu(self.in_norm(x)))
            h = nnx.silu(self.out_norm(h, emb))
        else:
            h = self.in_conv(nnx.silu(self.in_norm(x, label_map)))
            h = nnx.silu(self.out_norm(h, label_map, emb))
        h = self.dropout(h, deterministic=dropout_key is None, rngs=dropout_key)
        h = self.out_conv(h)
        return (x if self.skip is None else self.skip(x)) + h
