"""Private separable Gaussian smoothing on device, shared by the brain population and the lesions.

Each axis is filtered by multiplying with a dense `[n, n]` matrix of Gaussian weights whose rows
are renormalised to sum to 1 (normalised convolution: constants are preserved up to the border,
where the kernel is truncated rather than padded). For the small grids of the brain generators
(n <= 128 per axis) this is one einsum per axis, exact, jit- and vmap-friendly.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """Row-normalised Gaussian weights `[n, n]` (float32), truncated at 4 sigma; sigma 0 is the identity.

    Args:
        n: number of samples along the axis.
        sigma: standard deviation in samples, >= 0.
    """
    if sigma < 0:
        raise ValueError(f"sigma: expected >= 0 (samples), got {sigma}")
    if sigma == 0:
        return np.eye(n, dtype=np.float32)
    offset = np.arange(n)[:, None] - np.arange(n)[None, :]
    weights = np.exp(-0.5 * (offset / sigma) ** 2) * (np.abs(offset) <= 4.0 * sigma + 0.5)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def gaussian_filter(x: jax.Array, sigma: Sequence[float], axes: Sequence[int]) -> jax.Array:
    """Blurs `x` with a separable Gaussian of standard deviation `sigma[i]` samples along `axes[i]`."""
    x = jnp.asarray(x)
    for s, axis in zip(sigma, axes):
        if s > 0:
            axis = axis % x.ndim
            g = jnp.asarray(gaussian_matrix(x.shape[axis], float(s)))
            x = jnp.moveaxis(jnp.tensordot(g, x, axes=(1, axis)), 0, axis)
    return x


def smooth_noise(noise: jax.Array, sigma: Sequence[float], axes: Sequence[int]) -> jax.Array:
    """Gaussian-filters white noise N(0, 1) and rescales it to unit standard deviation away from the border."""
    # Std of filtered unit noise at an interior sample: sqrt(prod over axes of sum of squared weights).
    std = 1.0
    for s, axis in zip(sigma, axes):
        n = noise.shape[axis]
        std *= float(np.sqrt(np.sum(gaussian_matrix(n, float(s))[n // 2] ** 2)))
    return gaussian_filter(noise, sigma, axes) / std
