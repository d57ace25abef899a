"""Tests for gensynth.nn.resblock: skip path at init, dropout driven only by a call-time key."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.nn import ResBlock


def _rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))  # rbg: init compiles far faster than threefry on CPU


def test_block_starts_as_its_skip_path():
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 4)).astype(np.float32)
    emb = np.ones((2, 8), np.float32)
    same, wider = nnx.jit(
        lambda r: (ResBlock(4, 4, 8, spatial_dims=2, groups=2, rngs=r), ResBlock(4, 6, 8, spatial_dims=2, groups=2, rngs=r))
    )(_rngs())
    np.testing.assert_array_equal(same.out_conv.kernel[...], 0.0)
    y_same, y_wider, skip = nnx.jit(lambda a, b, x, e: (a(x, e), b(x, e), b.skip(x)))(same, wider, x, emb)
    np.testing.assert_allclose(y_same, x, atol=1e-6)
    np.testing.assert_allclose(y_wider, skip, atol=1e-6)


def test_dropout_only_with_key_and_no_rng_state():
    block = nnx.jit(lambda r: ResBlock(4, 4, 8, spatial_dims=3, groups=2, dropout=0.5, rngs=r))(_rngs())
    _, state = nnx.split(block)
    assert all(isinstance(v, nnx.Param) for v in jax.tree.leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable)))
    block.out_conv.kernel[...] = jnp.full(block.out_conv.kernel.shape, 0.1)  # let dropout reach the output
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 4, 4)).astype(np.float32)
    emb = np.ones((1, 8), np.float32)
    run = nnx.jit(lambda m, x, e, k: m(x, e, dropout_key=k))
    plain = nnx.jit(lambda m, x, e: m(x, e))(block, x, emb)
    k0, k1 = jax.random.key(0), jax.random.key(1)
    np.testing.assert_array_equal(run(block, x, emb, k0), run(block, x, emb, k0))
    assert not np.allclose(run(block, x, emb, k0), plain)
    assert not np.allclose(run(block, x, emb, k0), run(block, x, emb, k1))
