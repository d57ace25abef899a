"""Tests for gensynth.data.tumour_texture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from gensynth.data.tumour_texture import (
    TextureConfig,
    _normalise_texture,
    bernoulli_texture,
    gaussian_filter,
    random_texture,
)


@pytest.mark.parametrize("shape, sigma", [((20, 30), 1.7), ((6, 10, 12), 5.0), ((40,), 0.8)])
def test_gaussian_filter_matches_scipy_reflect(shape, sigma):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(gaussian_filter(x, sigma), ndi.gaussian_filter(x, sigma, mode="reflect"), atol=1e-5)


def test_gaussian_filter_traced_sigma_and_zero_sigma():
    x = np.random.default_rng(1).normal(size=(16, 16)).astype(np.float32)
    blur = jax.jit(lambda x, s: gaussian_filter(x, s, radius=8))
    np.testing.assert_array_equal(blur(x, 0.0), x)  # sigma 0: exact identity
    np.testing.assert_allclose(blur(x, 1.5), ndi.gaussian_filter(x, 1.5, mode="reflect", truncate=8 / 1.5), atol=1e-5)


def test_normalise_texture_by_hand():
    # mean(B | B > 0.12) = (0.2 + 0.4) / 2 = 0.3, beta = 0.5 / 0.3; 0.1 is below the threshold.
    field = jnp.array([0.1, 0.2, 0.4, 0.0])
    np.testing.assert_allclose(_normalise_texture(field, 0.5), [1 / 6, 1 / 3, 2 / 3, 0.0], rtol=1e-6)
    # beta = 0.5 / mean(0.13, 0.13, 0.13, 2.0) = 0.5 / 0.5975; the large value clips to 1.
    field = jnp.array([0.13, 0.13, 0.13, 2.0])
    np.testing.assert_allclose(_normalise_texture(field, 0.5), [0.13 * 0.5 / 0.5975] * 3 + [1.0], rtol=1e-6)


def test_bernoulli_texture_range_and_level():
    texture = np.asarray(bernoulli_texture(jax.random.key(0), (64, 64), 6.0, 4.0))
    assert texture.shape == (64, 64) and texture.min() >= 0.0 and texture.max() <= 1.0
    assert 0.35 < texture.mean() < 0.65  # u0 ~ U(0.5, 0.55) is the mean over the non-faint part


def test_larger_sigma_a_moves_power_to_low_frequencies():
    def powers(sigma_a):
        low, high = [], []
        for seed in range(3):
            t = np.asarray(bernoulli_texture(jax.random.key(seed), (64, 64), sigma_a, 4.0, radius_a=60, radius_b=16))
            low.append(ndi.gaussian_filter(t, 6.0).var())
            high.append((t - ndi.gaussian_filter(t, 1.0)).var())
        return np.mean(low), np.mean(high)

    (low_3, high_3), (low_15, high_15) = powers(3.0), powers(15.0)
    assert low_15 > 2.0 * low_3 and high_15 < high_3


def test_random_texture_is_deterministic_and_varies():
    texture_fn = jax.jit(random_texture, static_argnums=(1, 2))
    a = texture_fn(jax.random.key(3), (24, 24, 24), TextureConfig())
    np.testing.assert_array_equal(a, texture_fn(jax.random.key(3), (24, 24, 24), TextureConfig()))
    b = texture_fn(jax.random.key(4), (24, 24, 24), TextureConfig())
    assert a.shape == (24, 24, 24) and not np.array_equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
