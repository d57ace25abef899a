"""Tests for gensynth.diffusion.likelihood (spec ch. 2, Sect. 6 items 5-6)."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import discretized_gaussian_log_likelihood, normal_kl


def test_normal_kl_zero_iff_equal_and_matches_monte_carlo():
    assert float(normal_kl(0.3, -1.0, 0.3, -1.0)) == 0.0
    assert float(normal_kl(0.3, -1.0, 0.31, -1.0)) > 0.0
    assert float(normal_kl(0.3, -1.0, 0.3, -0.9)) > 0.0
    m1, l1, m2, l2 = 0.2, np.log(0.5), -0.4, np.log(1.7)
    x = m1 + np.sqrt(0.5) * np.asarray(jax.random.normal(jax.random.key(0), (1_000_000,)), np.float64)
    log_p = -0.5 * (x - m1) ** 2 / 0.5 - 0.5 * l1
    log_q = -0.5 * (x - m2) ** 2 / 1.7 - 0.5 * l2
    np.testing.assert_allclose(float(normal_kl(m1, l1, m2, l2)), np.mean(log_p - log_q), rtol=1e-2)


def test_discretized_decoder_is_normalised():
    bins = jnp.arange(256) / 127.5 - 1.0  # the 8-bit grid in [-1, 1]
    for mean, log_scale in ((0.0, np.log(0.1)), (0.93, np.log(0.02)), (-1.2, np.log(0.5)), (0.3, np.log(1e-3))):
        log_p = discretized_gaussian_log_likelihood(bins, mean, log_scale)
        assert jnp.all(jnp.isfinite(log_p) & (log_p <= 0))  # every bin in (0, 1] (in log space)
        np.testing.assert_allclose(jnp.sum(jnp.exp(log_p)), 1.0, atol=1e-5)


def test_discretized_decoder_narrow_gaussian_puts_mass_on_its_bin():
    x = jnp.array([-1.0, 128 / 127.5 - 1.0, 1.0])
    log_p = discretized_gaussian_log_likelihood(x, x, jnp.log(1e-4))
    np.testing.assert_allclose(jnp.exp(log_p), [1.0, 1.0, 1.0], atol=1e-6)
