"""Multi-head self- and cross-attention over the flattened spatial positions of a feature map.

Both blocks are residual, `x + proj(attention(GN(x), ...))`, with the output projection
zero-initialised so a freshly built block is the identity (ADM). Attention runs through
`jax.nn.dot_product_attention` (logits and softmax in float32 for low-precision inputs), so the
accelerator's fused kernel is used where XLA has one.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.nn.norms import GroupNorm


def _num_heads(channels: int, head_dim: int) -> int:
    if head_dim <= 0 or channels % head_dim != 0:
        raise ValueError(f"head_dim={head_dim} must be positive and divide channels={channels}")
    return channels // head_dim


def _zero_linear(in_features: int, out_features: int, *, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=nnx.initializers.zeros_init(), dtype=dtype, rngs=rngs)


class SelfAttention(nnx.Module):
    """Residual multi-head self-attention over all T = prod(S) spatial positions.

    `x + W_o softmax(Q K^T / sqrt(head_dim)) V` with `[Q, K, V] = W_qkv GN(x)` per head.

    Args:
      channels: channels C; `head_dim` must divide it (C / head_dim heads).
      head_dim: channels per head.
      groups: GroupNorm groups before the Q/K/V projection.
      norm_eps: epsilon of that group norm.
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    Raises:
      ValueError: if `head_dim` does not divide `channels`.

    References:
      Vaswani et al., "Attention Is All You Need", NeurIPS 2017; Dhariwal & Nichol (ADM), 2021.
    """

    def __init__(
        self, channels: int, *, head_dim: int, groups: int, norm_eps: float = 1e-5, dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.num_heads = _num_heads(channels, head_dim)
        self.norm = GroupNorm(channels, groups=groups, eps=norm_eps, rngs=rngs)
        self.qkv = nnx.Linear(channels, 3 * channels, dtype=dtype, rngs=rngs)
        self.out = _zero_linear(channels, channels, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[B, *S, C]` to `[B, *S, C]`."""
        b, c = x.shape[0], x.shape[-1]
        tokens = self.norm(x).reshape(b, -1, c)  # [B, T, C]
        qkv = self.qkv(tokens).reshape(b, tokens.shape[1], 3, self.num_heads, -1)  # [B, T, 3, N, H]
        h = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])  # [B, T, N, H]
        return x + self.out(h.reshape(b, -1, c)).reshape(x.shape)


class CrossAttention(nnx.Module):
    """Residual multi-head cross-attention from spatial positions to a context sequence.

    `x + W_o softmax(Q K^T / sqrt(head_dim)) V` with `Q = W_q GN(x)` and `[K, V] = W_kv context`.

    Args:
      channels: channels C of the feature map; `head_dim` must divide it.
      context_dim: width E of the context tokens.
      head_dim: channels per head.
      groups: GroupNorm groups before the query projection.
      norm_eps: epsilon of that group norm.
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    Raises:
      ValueError: if `head_dim` does not divide `channels`.

    References:
      Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022.
    """

    def __init__(
        self,
        channels: int,
        context_dim: int,
        *,
        head_dim: int,
        groups: int,
        norm_eps: float = 1e-5,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.num_heads = _num_heads(channels, head_dim)
        self.norm = GroupNorm(channels, groups=groups, eps=norm_eps, rngs=rngs)
        self.q = nnx.Linear(channels, channels, dtype=dtype, rngs=rngs)
        self.kv = nnx.Linear(context_dim, 2 * channels, dtype=dtype, rngs=rngs)
        self.out = _zero_linear(channels, channels, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Maps `x` `[B, *S, C]` attending to `context` `[B, L, E]` to `[B, *S, C]`."""
        b, c = x.shape[0], x.shape[-1]
        q = self.q(self.norm(x).reshape(b, -1, c)).reshape(b, -1, self.num_heads, c // self.num_heads)  # [B, T, N, H]
        kv = self.kv(context).reshape(b, context.shape[1], 2, self.num_heads, -1)  # [B, L, 2, N, H]
        h = jax.nn.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1])  # [B, T, N, H]
        return x + self.out(h.reshape(b, -1, c)).reshape(x.shape)

