"""Centred orthonormal FFT (spec ch. 7, Sect. 10.2 item 2)."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.inverse import fft2c, ifft2c


def _complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), jnp.complex64)


def test_round_trip_and_norm():
    x = _complex((3, 16, 12))
    k, back = jax.jit(lambda v: (fft2c(v), ifft2c(fft2c(v))))(x)
    np.testing.assert_allclose(back, x, atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(k), jnp.linalg.norm(x), rtol=1e-5)


def test_centred_against_numpy():
    x = np.asarray(_complex((8, 8), seed=1))
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))
    np.testing.assert_allclose(fft2c(x), expected, atol=1e-5)
    # DC of a constant image sits at the centre with value sqrt(H W) * value.
    k = fft2c(jnp.ones((8, 8)))
    assert abs(k[4, 4] - 8.0) < 1e-5 and float(jnp.sum(jnp.abs(k))) - 8.0 < 1e-4


def test_ifft_is_adjoint():
    x, k = _complex((8, 6), 2), _complex((8, 6), 3)
    np.testing.assert_allclose(jnp.vdot(fft2c(x), k), jnp.vdot(x, ifft2c(k)), rtol=1e-5)
