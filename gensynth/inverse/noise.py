"""Measurement noise models: additive Gaussian (real or circular complex) and Poisson counts.

References:
    Spec ch. 7, Sect. 3 (Eq. 7.1) and 5.2.2 (DPS with Poisson noise).
"""

import jax
import jax.numpy as jnp


def add_gaussian_noise(key: jax.Array, y: jax.Array, sigma: float | jax.Array) -> jax.Array:
    """``y + sigma n``: real ``n ~ N(0, 1)``, or circular complex with ``E|n|^2 = 1`` (each of the
    real and imaginary parts has variance 1/2) when ``y`` is complex.

    Args:
        key: typed PRNG key.
        y: measurement, any shape, float32 or complex64.
        sigma: noise std (scalar, or broadcastable to ``y``), in the units of ``y``.

    Returns:
        noisy measurement, shape and dtype of ``y``.

    Example:
        >>> add_gaussian_noise(jax.random.key(0), jnp.zeros(3), 0.0)
        Array([0., 0., 0.], dtype=float32)
    """
    if jnp.iscomplexobj(y):
        kr, ki = jax.random.split(key)
        n = (jax.random.normal(kr, y.shape) + 1j * jax.random.normal(ki, y.shape)) / jnp.sqrt(2.0)
    else:
        n = jax.random.normal(key, y.shape)
    return (y + sigma * n).astype(y.dtype)


def poisson_counts(key: jax.Array, y: jax.Array, scale: float | jax.Array) -> jax.Array:
    """Poisson counts ``c ~ Poisson(scale * y)`` (PET-like data); ``c / scale`` estimates ``y``.

    Args:
        key: typed PRNG key.
        y: non-negative expected intensities, any shape, float32.
        scale: photons (counts) per unit of ``y``; larger means less noise (SNR ~ sqrt(scale y)).

    Returns:
        float32 counts (integer-valued), shape of ``y``.

    Example:
        >>> poisson_counts(jax.random.key(0), jnp.zeros(2), 10.0)
        Array([0., 0.], dtype=float32)
    """
    rate = scale * jnp.maximum(y, 0.0)
    return jax.random.poisson(key, rate).astype(jnp.float32)
