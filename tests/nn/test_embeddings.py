"""Tests for gensynth.nn.embeddings: hand-computed sinusoid values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.nn import TimestepEmbedding, sinusoidal_embedding


def test_zero_time_is_cos_one_sin_zero():
    e = sinusoidal_embedding(jnp.zeros(3, jnp.int32), 8)
    assert e.shape == (3, 8) and e.dtype == jnp.float32
    np.testing.assert_array_equal(e[:, :4], 1.0)
    np.testing.assert_array_equal(e[:, 4:], 0.0)


def test_known_values():
    # dim 4, max_period 1e4: frequencies 1e4**(-0/2) = 1 and 1e4**(-1/2) = 0.01.
    t = jnp.array([1.0, 250.0])
    expected = np.array([[np.cos(1.0), np.cos(0.01), np.sin(1.0), np.sin(0.01)],
                         [np.cos(250.0), np.cos(2.5), np.sin(250.0), np.sin(2.5)]])  # fmt: skip
    np.testing.assert_allclose(sinusoidal_embedding(t, 4), expected, atol=2e-5)
    # max_period 100, dim 4: frequencies 1 and 0.1.
    np.testing.assert_allclose(sinusoidal_embedding(jnp.array([3.0]), 4, max_period=100.0)[0, 1], np.cos(0.3), atol=1e-6)


def test_frequency_shift_spreads_the_exponents_over_h_minus_s():
    # dim 6 (h = 3), freq_shift 1: frequencies 1e4**(-i / 2) = 1, 0.01, 1e-4 (DDPM's embedding).
    t = jnp.array([2.0, 500.0])
    args = np.array([2.0, 500.0])[:, None] * np.array([1.0, 1e-2, 1e-4])
    expected = np.concatenate([np.cos(args), np.sin(args)], axis=-1)
    np.testing.assert_allclose(sinusoidal_embedding(t, 6, freq_shift=1.0), expected, atol=2e-5)


@pytest.mark.parametrize("shift", [-1.0, 3.0])
def test_rejects_frequency_shift_outside_half_width(shift):
    with pytest.raises(ValueError, match="freq_shift"):
        sinusoidal_embedding(jnp.zeros(1), 6, freq_shift=shift)


@pytest.mark.parametrize("dim", [0, 5])
def test_rejects_odd_or_zero_width(dim):
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(jnp.zeros(1), dim)


def test_timestep_embedding_is_mlp_of_sinusoid():
    rngs = nnx.Rngs(jax.random.key(0, impl="rbg"))  # rbg: init compiles far faster than threefry on CPU
    embed = nnx.jit(lambda r: TimestepEmbedding(8, 32, dtype=jnp.bfloat16, rngs=r))(rngs)
    t = np.array([0, 10, 999])
    e = nnx.jit(lambda m, t: m(t))(embed, t)
    assert e.shape == (3, 32) and e.dtype == jnp.bfloat16
    assert embed.fc1.kernel[...].dtype == jnp.float32
    h = np.asarray(sinusoidal_embedding(t, 8)) @ np.asarray(embed.fc1.kernel[...]) + np.asarray(embed.fc1.bias[...])
    h = h / (1 + np.exp(-h))
    expected = h @ np.asarray(embed.fc2.kernel[...]) + np.asarray(embed.fc2.bias[...])
    np.testing.assert_allclose(np.asarray(e, np.float32), expected, atol=5e-2, rtol=5e-2)
