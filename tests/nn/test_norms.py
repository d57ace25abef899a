"""Tests for gensynth.nn.norms against a direct reshape-and-reduce GroupNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.nn import AdaGroupNorm, GroupNorm, group_norm

_group_norm = jax.jit(group_norm, static_argnames="groups")


def _reference_group_norm(x, groups, scale, bias, eps=1e-5):
    """Textbook GroupNorm in float64 NumPy: one reduction over (*S, C/G)."""
    x = np.asarray(x, np.float64)
    b, c = x.shape[0], x.shape[-1]
    xg = x.reshape(b, -1, groups, c // groups)  # [B, T, G, C/G]
    mean = xg.mean(axis=(1, 3), keepdims=True)
    var = xg.var(axis=(1, 3), keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (b,) + (1,) * (x.ndim - 2) + (c,)
    return y * np.broadcast_to(scale, (b, c)).reshape(shape) + np.broadcast_to(bias, (b, c)).reshape(shape)


@pytest.mark.parametrize("shape,groups", [((2, 5, 6, 8), 4), ((3, 2, 3, 4, 6), 3)])
def test_group_norm_matches_reference(shape, groups):
    rng = np.random.default_rng(0)
    x = rng.normal(loc=0.5, scale=2.0, size=shape).astype(np.float32)
    c = shape[-1]
    scale, bias = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    y = _group_norm(x, groups=groups, scale=scale, bias=bias)
    np.testing.assert_allclose(y, _reference_group_norm(x, groups, scale, bias), atol=1e-4, rtol=1e-4)


def test_group_norm_per_example_affine_and_bf16():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    scale, bias = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)
    ref = _reference_group_norm(x, 2, scale, bias)
    y32 = _group_norm(x, groups=2, scale=scale, bias=bias)
    np.testing.assert_allclose(y32, ref, atol=1e-4, rtol=1e-4)
    y16 = _group_norm(jnp.asarray(x, jnp.bfloat16), groups=2, scale=scale, bias=bias)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), ref, atol=5e-2, rtol=5e-2)


def test_group_norm_module_starts_as_plain_standardisation():
    norm = GroupNorm(6, groups=3, rngs=nnx.Rngs(0))
    x = np.random.default_rng(2).normal(3.0, 5.0, size=(2, 4, 4, 6)).astype(np.float32)
    y = nnx.jit(lambda m, x: m(x))(norm, x)
    np.testing.assert_allclose(y, _reference_group_norm(x, 3, 1.0, 0.0), atol=1e-4)


def test_group_norm_rejects_indivisible_groups():
    with pytest.raises(ValueError, match="groups"):
        GroupNorm(6, groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="groups"):
        group_norm(jnp.ones((1, 2, 2, 6)), groups=4, scale=jnp.ones(6), bias=jnp.zeros(6))


def test_ada_group_norm_is_scale_shift_of_group_norm():
    rng = np.random.default_rng(3)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: AdaGroupNorm(4, 5, groups=2, rngs=nnx.Rngs(0))))
    ada = nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), state))
    h = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    emb = rng.normal(size=(2, 5)).astype(np.float32)
    w, b = np.asarray(ada.proj.kernel[...]), np.asarray(ada.proj.bias[...])
    silu = emb / (1 + np.exp(-emb))
    scale, shift = np.split(silu @ w + b, 2, axis=-1)  # [B, C] each
    gn = _reference_group_norm(h, 2, np.asarray(ada.norm.scale[...]), np.asarray(ada.norm.bias[...]))
    expected = gn * (1 + scale[:, None, None, :]) + shift[:, None, None, :]
    y = nnx.jit(lambda m, h, e: m(h, e))(ada, h, emb)
    np.testing.assert_allclose(y, expected, atol=1e-3, rtol=1e-3)


def test_ada_group_norm_additive_adds_the_projection_before_the_norm():
    rng = np.random.default_rng(4)
    graphdef, state = nnx.split(
        nnx.eval_shape(lambda: AdaGroupNorm(4, 5, groups=2, eps=1e-6, mode="additive", rngs=nnx.Rngs(0)))
    )
    ada = nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), state))
    assert ada.proj.kernel.shape == (5, 4)  # one bias per channel, not a (scale, shift) pair
    h = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    emb = rng.normal(size=(2, 5)).astype(np.float32)
    silu = emb / (1 + np.exp(-emb))
    bias = silu @ np.asarray(ada.proj.kernel[...]) + np.asarray(ada.proj.bias[...])  # [B, C]
    gamma, beta = np.asarray(ada.norm.scale[...]), np.asarray(ada.norm.bias[...])
    expected = _reference_group_norm(h + bias[:, None, None, :], 2, gamma, beta, eps=1e-6)
    y = nnx.jit(lambda m, h, e: m(h, e))(ada, h, emb)
    np.testing.assert_allclose(y, expected, atol=1e-4, rtol=1e-4)


def test_ada_group_norm_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        AdaGroupNorm(4, 5, groups=2, mode="film", rngs=nnx.Rngs(0))
