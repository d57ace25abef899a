"""First-stage autoencoders for latent diffusion: KL-regularised (AutoencoderKL) and vector-quantised
(VQ-GAN), for 2D images and 3D volumes, channels-last.

Both share one convolutional encoder and decoder (LDM's `Encoder`/`Decoder`): a 3x3(x3) stem, per
level i (width `channels * channel_mult[i]`) `num_res_blocks` plain residual blocks and a stride-2
down-sampling between levels, a middle (res block, optional self-attention, res block), and a head
GN -> SiLU -> 3x3(x3) conv to the latent. The decoder mirrors it with `num_res_blocks + 1` blocks per
level and nearest-x2 + conv up-sampling. The down-sampling factor is f = 2**(len(channel_mult) - 1):
an `[B, *S, C]` input has a `[B, *S/f, latent_channels]` latent. LDM's extra 1x1 `quant_conv` /
`post_quant_conv` are folded into the encoder's and decoder's outer convolutions.

References:
  Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022;
  Esser et al., "Taming Transformers for High-Resolution Image Synthesis", CVPR 2021 (VQ-GAN);
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.models.vector_quantizer import VectorQuantizer
from gensynth.nn import Downsample, GroupNorm, SelfAttention, Upsample, conv

LOGVAR_RANGE = (-30.0, 20.0)  # the encoder's log-variance is clipped to this range (LDM)


class PlainResBlock(nnx.Module):
    """`skip(x) + conv3(SiLU(GN(conv3(SiLU(GN(x))))))`, no time embedding; `skip` is the identity
    or a 1x1(x1) conv when the width changes.

    Args:
      in_channels: C_in.
      out_channels: C_out.
      spatial_dims: 2 or 3.
      groups: GroupNorm groups; must divide C_in and C_out.
      norm_eps: epsilon of both group norms.
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, spatial_dims: int, groups: int, norm_eps: float = 1e-6,
        dtype=jnp.float32, rngs: nnx.Rngs,
    ):  # fmt: skip
        layer = {"spatial_dims": spatial_dims, "dtype": dtype, "rngs": rngs}
        self.norm1 = GroupNorm(in_channels, groups=groups, eps=norm_eps, rngs=rngs)
        self.conv1 = conv(in_channels, out_channels, **layer)
        self.norm2 = GroupNorm(out_channels, groups=groups, eps=norm_eps, rngs=rngs)
        self.conv2 = conv(out_channels, out_channels, **layer)
        self.skip = conv(in_channels, out_channels, kernel_size=1, **layer) if in_channels != out_channels else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[B, *S, C_in]` to `[B, *S, C_out]`."""
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = self.conv2(nnx.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class _Middle(nnx.Module):
    """Res block, optional single-head self-attention, res block, at the lowest resolution."""

    def __init__(self, width: int, *, attention: bool, block: dict, rngs: nnx.Rngs):
        self.res1 = PlainResBlock(width, width, rngs=rngs, **block)
        self.attn = (
            SelfAttention(width, head_dim=width, groups=block["groups"], norm_eps=block["norm_eps"],
                          dtype=block["dtype"], rngs=rngs)
            if attention else None
        )  # fmt: skip
        self.res2 = PlainResBlock(width, width, rngs=rngs, **block)

    def __call__(self, h: jax.Array) -> jax.Array:
        h = self.res1(h)
        if self.attn is not None:
            h = self.attn(h)
        return self.res2(h)


class Encoder(nnx.Module):
    """`[B, *S, C_in]` -> `[B, *S/f, out_channels]` (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, *, channels: int, channel_mult: Sequence[int],
                 num_res_blocks: int, attention: bool, block: dict, rngs: nnx.Rngs):  # fmt: skip
        d, dtype = block["spatial_dims"], block["dtype"]
        self.stem = conv(in_channels, channels, spatial_dims=d, dtype=dtype, rngs=rngs)
        blocks, downs, width = [], [], channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks.append(PlainResBlock(width, channels * mult, rngs=rngs, **block))
                width = channels * mult
            if level < len(channel_mult) - 1:
                downs.append(Downsample(width, spatial_dims=d, dtype=dtype, rngs=rngs))
        self.blocks, self.downs = nnx.List(blocks), nnx.List(downs)
        self.num_res_blocks = num_res_blocks
        self.middle = _Middle(width, attention=attention, block=block, rngs=rngs)
        self.out_norm = GroupNorm(width, groups=block["groups"], eps=block["norm_eps"], rngs=rngs)
        self.out_conv = conv(width, out_channels, spatial_dims=d, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.stem(x)
        for level in range(len(self.downs) + 1):
            for block in self.blocks[level * self.num_res_blocks : (level + 1) * self.num_res_blocks]:
                h = block(h)
            if level < len(self.downs):
                h = self.downs[level](h)
        h = self.middle(h)
        return self.out_conv(nnx.silu(self.out_norm(h)))


class Decoder(nnx.Module):
    """`[B, *S', latent]` -> `[B, *S' f, out_channels]`; `out_conv(head_input(z))` is the output."""

    def __init__(self, latent_channels: int, out_channels: int, *, channels: int, channel_mult: Sequence[int],
                 num_res_blocks: int, attention: bool, block: dict, rngs: nnx.Rngs):  # fmt: skip
        d, dtype = block["spatial_dims"], block["dtype"]
        width = channels * channel_mult[-1]
        self.stem = conv(latent_channels, width, spatial_dims=d, dtype=dtype, rngs=rngs)
        self.middle = _Middle(width, attention=attention, block=block, rngs=rngs)
        blocks, ups = [], []
        for level in reversed(range(len(channel_mult))):
            for _ in range(num_res_blocks + 1):
                blocks.append(PlainResBlock(width, channels * channel_mult[level], rngs=rngs, **block))
                width = channels * channel_mult[level]
            if level > 0:
                ups.append(Upsample(width, spatial_dims=d, dtype=dtype, rngs=rngs))
        self.blocks, self.ups = nnx.List(blocks), nnx.List(ups)
        self.per_level = num_res_blocks + 1
        self.out_norm = GroupNorm(width, groups=block["groups"], eps=block["norm_eps"], rngs=rngs)
        self.out_conv = conv(width, out_channels, spatial_dims=d, dtype=dtype, rngs=rngs)

    def head_input(self, z: jax.Array) -> jax.Array:
        """The activation `[B, *S' f, channels * channel_mult[0]]` fed to the last conv `out_conv`
        (the layer LDM's adaptive adversarial weight differentiates)."""
        h = self.middle(self.stem(z))
        for i in range(len(self.ups) + 1):
            for block in self.blocks[i * self.per_level : (i + 1) * self.per_level]:
                h = block(h)
            if i < len(self.ups):
                h = self.ups[i](h)
        return nnx.silu(self.out_norm(h))

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.out_conv(self.head_input(z))


class _Autoencoder(nnx.Module):
    """Shared constructor and input checks of `KLAutoencoder` and `VQAutoencoder`."""

    def __init__(
        self, in_channels: int, out_channels: int | None, encoder_channels: int, latent_channels: int, *,
        spatial_dims: int, channels: int, channel_mult: Sequence[int], num_res_blocks: int, attention: bool,
        groups: int, norm_eps: float, dtype, rngs: nnx.Rngs,
    ):  # fmt: skip
        _check_config(spatial_dims, channels, channel_mult, num_res_blocks, latent_channels, groups)
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        self.latent_channels = latent_channels
        self.spatial_dims = spatial_dims
        self.factor = 2 ** (len(channel_mult) - 1)
        self.dtype = dtype
        block = {"spatial_dims": spatial_dims, "groups": groups, "norm_eps": norm_eps, "dtype": dtype}
        sizes = {"channels": channels, "channel_mult": tuple(channel_mult), "num_res_blocks": num_res_blocks,
                 "attention": attention, "block": block, "rngs": rngs}  # fmt: skip
        self.encoder = Encoder(in_channels, encoder_channels, **sizes)
        self.decoder = Decoder(latent_channels, self.out_channels, **sizes)

    def _check_image(self, x: jax.Array) -> None:
        d = self.spatial_dims
        if x.ndim != d + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"x must have shape [B, *spatial({d}), {self.in_channels}] (channels-last), got {x.shape}"
            )
        if any(n % self.factor for n in x.shape[1:-1]):
            raise ValueError(f"x spatial sizes must be divisible by {self.factor} (2**(levels-1)), got {x.shape}")

    def _check_latent(self, z: jax.Array) -> None:
        d = self.spatial_dims
        if z.ndim != d + 2 or z.shape[-1] != self.latent_channels:
            raise ValueError(f"z must have shape [B, *spatial({d}), {self.latent_channels}], got {z.shape}")

    def decode(self, z: jax.Array) -> jax.Array:
        """Maps a latent `[B, *S/f, latent_channels]` to the output `[B, *S, C_out]` float32
        (images, or logits for label maps)."""
        self._check_latent(z)
        return self.decoder(z.astype(self.dtype)).astype(jnp.float32)


class KLAutoencoder(_Autoencoder):
    """KL-regularised autoencoder (LDM's AutoencoderKL): the encoder predicts a diagonal Gaussian
    posterior `N(mean, exp(logvar))` over a `[B, *S/f, latent_channels]` latent.

    Args:
      in_channels: channels C of the input.
      out_channels: channels of the decoder output (default `in_channels`; label-map VAEs output
        per-class logits).
      spatial_dims: 2 for `[B, H, W, C]`, 3 for `[B, D, H, W, C]`.
      channels: base width; level i has `channels * channel_mult[i]`.
      channel_mult: width multipliers, highest resolution first; f = 2**(len - 1).
      num_res_blocks: residual blocks per encoder level (decoder: one more).
      latent_channels: latent channels (LDM's z_channels).
      attention: single-head self-attention in the encoder's and decoder's middle.
      groups: GroupNorm groups; must divide every level width.
      norm_eps: GroupNorm epsilon (LDM: 1e-6).
      dtype: compute dtype (bfloat16 on accelerators); parameters and outputs are float32.
      rngs: `params` stream. The module keeps no random state; sampling takes a key.

    >>> ae = KLAutoencoder(1, channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=3,
    ...                    groups=4, rngs=nnx.Rngs(0))
    >>> [a.shape for a in ae(jax.random.key(0), jnp.zeros((2, 16, 16, 1)))]
    [(2, 16, 16, 1), (2, 8, 8, 3), (2, 8, 8, 3)]
    """

    def __init__(
        self, in_channels: int, out_channels: int | None = None, *, spatial_dims: int = 2, channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 2, latent_channels: int = 4,
        attention: bool = False, groups: int = 32, norm_eps: float = 1e-6, dtype=jnp.float32, rngs: nnx.Rngs,
    ):  # fmt: skip
        super().__init__(
            in_channels, out_channels, 2 * latent_channels, latent_channels, spatial_dims=spatial_dims,
            channels=channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks, attention=attention,
            groups=groups, norm_eps=norm_eps, dtype=dtype, rngs=rngs,
        )  # fmt: skip

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Maps `x` `[B, *S, C]` to the posterior `(mean, logvar)`, each float32 `[B, *S/f, latent]`;
        logvar is clipped to `LOGVAR_RANGE`."""
        self._check_image(x)
        moments = self.encoder(x.astype(self.dtype)).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def __call__(self, key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encodes, samples `z = mean + exp(logvar / 2) * eps` (eps ~ N(0, I) from `key`), decodes.

        Returns:
          `(recon [B, *S, C_out], mean, logvar)`, float32.
        """
        mean, logvar = self.encode(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, jnp.float32)
        return self.decode(z), mean, logvar


class VQAutoencoder(_Autoencoder):
    """Vector-quantised autoencoder (VQ-GAN): the encoder output `[B, *S/f, latent_channels]` is
    snapped to the nearest of `num_codes` learned codes, with a straight-through gradient.

    Args:
      in_channels, out_channels, spatial_dims, channels, channel_mult, num_res_blocks, attention,
      groups, norm_eps, dtype: as in `KLAutoencoder`.
      latent_channels: code dimension D.
      num_codes: codebook size K.
      ema_codebook: codebook updated by EMA (`gensynth.models.vector_quantizer`), else by gradient.
      rngs: `params` stream.

    >>> ae = VQAutoencoder(1, channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=3,
    ...                    num_codes=16, groups=4, rngs=nnx.Rngs(0))
    >>> ae.decode_indices(jnp.zeros((2, 8, 8), jnp.int32)).shape
    (2, 16, 16, 1)
    """

    def __init__(
        self, in_channels: int, out_channels: int | None = None, *, spatial_dims: int = 2, channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 2, latent_channels: int = 4,
        num_codes: int = 1024, ema_codebook: bool = True, attention: bool = False, groups: int = 32,
        norm_eps: float = 1e-6, dtype=jnp.float32, rngs: nnx.Rngs,
    ):  # fmt: skip
        super().__init__(
            in_channels, out_channels, latent_channels, latent_channels, spatial_dims=spatial_dims,
            channels=channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks, attention=attention,
            groups=groups, norm_eps=norm_eps, dtype=dtype, rngs=rngs,
        )  # fmt: skip
        self.quantizer = VectorQuantizer(num_codes, latent_channels, ema=ema_codebook, rngs=rngs)

    def encode(self, x: jax.Array) -> jax.Array:
        """Maps `x` `[B, *S, C]` to the unquantised latent `z_e` float32 `[B, *S/f, D]`."""
        self._check_image(x)
        return self.encoder(x.astype(self.dtype)).astype(jnp.float32)

    def quantize(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """`(z_q, indices [B, *S/f], terms)`; see `VectorQuantizer.__call__`."""
        self._check_latent(z_e)
        return self.quantizer(z_e)

    def decode_indices(self, indices: jax.Array) -> jax.Array:
        """Decodes code indices int `[B, *S/f]` to `[B, *S, C_out]` float32."""
        if indices.ndim != self.spatial_dims + 1 or not jnp.issubdtype(indices.dtype, jnp.integer):
            raise ValueError(f"indices must be integer [B, *spatial({self.spatial_dims})], got "
                             f"{indices.dtype} {indices.shape}")  # fmt: skip
        return self.decode(self.quantizer.lookup(indices))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
        """Encodes, quantises and decodes `x` `[B, *S, C]`.

        Returns:
          `(recon [B, *S, C_out], z_e [B, *S/f, D], indices [B, *S/f], terms)`; see `quantize`.
        """
        z_e = self.encode(x)
        z_q, indices, terms = self.quantize(z_e)
        return self.decode(z_q), z_e, indices, terms


def _check_config(spatial_dims, channels, channel_mult, num_res_blocks, latent_channels, groups) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if not channel_mult or any(m <= 0 for m in channel_mult):
        raise ValueError(f"channel_mult must be a non-empty sequence of positive ints, got {channel_mult}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    if latent_channels < 1:
        raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")
    widths = [channels * m for m in channel_mult]
    if channels < 1 or any(w % groups for w in widths):
        raise ValueError(f"groups={groups} must divide every level width {widths} (channels={channels})")
