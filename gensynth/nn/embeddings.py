"""Sinusoidal embedding of the diffusion time and the MLP that turns it into the network's
conditioning vector."""

import math

import jax
import jax.numpy as jnp
from flax import nnx


def sinusoidal_embedding(t: jax.Array, dim: int, *, max_period: float = 10000.0, freq_shift: float = 0.0) -> jax.Array:
    """Transformer-style sinusoidal features of a scalar time per example.

    .. math::
      e(t) = [\\cos(t \\omega_0), ..., \\cos(t \\omega_{h-1}),
              \\sin(t \\omega_0), ..., \\sin(t \\omega_{h-1})],
      \\quad \\omega_i = \\text{max\\_period}^{-i / (h - s)},\\ h = \\text{dim} / 2

    with s = `freq_shift`.

    Args:
      t: `[B]` times, integer steps (0..T-1) or continuous values; any real dtype.
      dim: even embedding width.
      max_period: sets the lowest angular frequency, about 1 / max_period (in units of 1 / t).
      freq_shift: s above, in [0, h); 0 in ADM and MONAI, 1 in the original DDPM code (diffusers'
        `freq_shift`, e.g. in the google/ddpm-* models).

    Returns:
      `[B, dim]` float32; cosines first, then sines (ADM order).

    Raises:
      ValueError: if `dim` is not a positive even number.

    References:
      Vaswani et al., "Attention Is All You Need", NeurIPS 2017; Ho et al., DDPM, NeurIPS 2020.

    >>> sinusoidal_embedding(jnp.zeros(2), 4)
    Array([[1., 1., 0., 0.],
           [1., 1., 0., 0.]], dtype=float32)
    """
    if dim <= 0 or dim % 2 != 0:
        raise ValueError(f"dim must be a positive even number, got {dim}")
    half = dim // 2
    if not 0.0 <= freq_shift < half:
        raise ValueError(f"freq_shift must be in [0, dim / 2 = {half}), got {freq_shift}")
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))  # [h]
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]  # [B, h]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedding(nnx.Module):
    """Sinusoidal features of t followed by `Linear -> SiLU -> Linear`.

    Args:
      dim: sinusoidal width (ADM: the base channel count).
      embed_dim: output width E (ADM: 4 x the base channel count).
      max_period: see `sinusoidal_embedding`.
      freq_shift: see `sinusoidal_embedding`.
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    References:
      Ho et al., DDPM, NeurIPS 2020; Dhariwal & Nichol (ADM), NeurIPS 2021.
    """

    def __init__(
        self,
        dim: int,
        embed_dim: int,
        *,
        max_period: float = 10000.0,
        freq_shift: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dim = dim
        self.max_period = max_period
        self.freq_shift = freq_shift
        self.fc1 = nnx.Linear(dim, embed_dim, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(embed_dim, embed_dim, dtype=dtype, rngs=rngs)

    def __call__(self, t: jax.Array) -> jax.Array:
        """Maps times `[B]` to embeddings `[B, E]` in the compute dtype."""
        emb = sinusoidal_embedding(t, self.dim, max_period=self.max_period, freq_shift=self.freq_shift)  # [B, dim]
        return self.fc2(nnx.silu(self.fc1(emb)))
