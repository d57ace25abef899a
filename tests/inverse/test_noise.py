"""Noise models: Gaussian (real and circular complex) and Poisson moments."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth import inverse as gi


def test_gaussian_noise_moments():
    y = jnp.full((200, 200), 2.0)
    n = np.asarray(gi.add_gaussian_noise(jax.random.key(0), y, 0.5)) - 2.0
    assert abs(n.mean()) < 0.01 and abs(n.std() - 0.5) < 0.01
    yc = jnp.zeros((200, 200), jnp.complex64)
    nc = np.asarray(gi.add_gaussian_noise(jax.random.key(1), yc, 0.5))
    assert nc.dtype == np.complex64
    assert abs(np.mean(np.abs(nc) ** 2) - 0.25) < 0.01  # E|n|^2 = sigma^2
    assert abs(nc.real.var() - nc.imag.var()) < 0.01  # circular


def test_poisson_counts_moments():
    y = jnp.full((200, 200), 0.3)
    c = np.asarray(gi.poisson_counts(jax.random.key(2), y, 100.0))
    assert np.all(c == np.round(c)) and c.min() >= 0
    assert abs(c.mean() - 30.0) < 0.2 and abs(c.var() - 30.0) < 1.5  # mean = var = scale y
