"""Tests for gensynth.nn.attention against written-out softmax(Q K^T / sqrt(d)) V."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.nn import CrossAttention, SelfAttention

_apply = nnx.jit(lambda m, *args: m(*args))


def _random_module(make, seed):
    """Builds `make()` abstractly and fills every parameter from NumPy (no init compile)."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype), state))


def _linear(x, layer):
    return x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)


def _group_norm(x, norm, groups):
    b, c = x.shape[0], x.shape[-1]
    xg = x.reshape(b, -1, groups, c // groups)
    y = ((xg - xg.mean((1, 3), keepdims=True)) / np.sqrt(xg.var((1, 3), keepdims=True) + 1e-5)).reshape(x.shape)
    return y * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])


def _attend(q, k, v, heads):
    """[B, T, C], [B, L, C], [B, L, C] -> [B, T, C] with per-head softmax attention, in float64."""
    b, t, c = q.shape
    d = c // heads
    q, k, v = (a.reshape(a.shape[0], a.shape[1], heads, d).transpose(0, 2, 1, 3) for a in (q, k, v))
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)  # [B, N, T, L]
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return (w @ v).transpose(0, 2, 1, 3).reshape(b, t, c)


@pytest.mark.parametrize("spatial", [(4, 6), (2, 3, 4)])
def test_self_attention_matches_reference(spatial):
    block = _random_module(lambda: SelfAttention(16, head_dim=4, groups=4, rngs=nnx.Rngs(0)), 0)
    x = np.random.default_rng(1).normal(size=(2,) + spatial + (16,))
    tokens = _group_norm(x, block.norm, 4).reshape(2, -1, 16)
    q, k, v = np.split(_linear(tokens, block.qkv), 3, axis=-1)
    expected = x + _linear(_attend(q, k, v, heads=4), block.out).reshape(x.shape)
    np.testing.assert_allclose(_apply(block, x.astype(np.float32)), expected, atol=1e-3, rtol=1e-4)


def test_cross_attention_matches_reference():
    block = _random_module(lambda: CrossAttention(8, 6, head_dim=2, groups=2, rngs=nnx.Rngs(0)), 2)
    rng = np.random.default_rng(3)
    x, context = rng.normal(size=(2, 3, 5, 8)), rng.normal(size=(2, 7, 6))
    q = _linear(_group_norm(x, block.norm, 2).reshape(2, -1, 8), block.q)
    k, v = np.split(_linear(context, block.kv), 2, axis=-1)
    expected = x + _linear(_attend(q, k, v, heads=4), block.out).reshape(x.shape)
    y = _apply(block, x.astype(np.float32), context.astype(np.float32))
    np.testing.assert_allclose(y, expected, atol=1e-3, rtol=1e-4)


def test_output_projection_starts_at_zero():
    rngs = nnx.Rngs(jax.random.key(0, impl="rbg"))  # rbg: init compiles far faster than threefry on CPU
    block, cross = nnx.jit(
        lambda r: (SelfAttention(8, head_dim=4, groups=2, rngs=r), CrossAttention(8, 3, head_dim=4, groups=2, rngs=r))
    )(rngs)
    for layer in (block.out, cross.out):
        np.testing.assert_array_equal(layer.kernel[...], 0.0)  # so a new block is the identity map


def test_rejects_head_dim_not_dividing_channels():
    with pytest.raises(ValueError, match="head_dim"):
        SelfAttention(12, head_dim=5, groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="head_dim"):
        CrossAttention(12, 4, head_dim=0, groups=4, rngs=nnx.Rngs(0))
