"""Haar DWT/IDWT: against a loop-by-loop oracle of the defining sum, perfect reconstruction,
orthonormality (energy, adjoint = inverse, gradient), constants, multi-level closed forms, errors."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.nn.wavelets import (
    BANDS_2D,
    BANDS_3D,
    haar_dwt2,
    haar_dwt3,
    haar_idwt2,
    haar_idwt3,
)

W = {"L": np.array([1.0, 1.0]) / math.sqrt(2.0), "H": np.array([1.0, -1.0]) / math.sqrt(2.0)}
DWT = {2: haar_dwt2, 3: haar_dwt3}
IDWT = {2: haar_idwt2, 3: haar_idwt3}
SHAPES = {2: (2, 8, 4, 3), 3: (2, 8, 4, 12, 2)}  # even, non-square / non-cubic


def _random(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _oracle(x: np.ndarray, bands) -> np.ndarray:
    """The defining sum of spec ch. 13, Sect. 2.6.1, written out block by block (float64)."""
    n = x.ndim - 2
    out = np.zeros(x.shape[:1] + tuple(s // 2 for s in x.shape[1:-1]) + (len(bands) * x.shape[-1],))
    for band_index, band in enumerate(bands):
        for offsets in itertools.product((0, 1), repeat=n):
            weight = np.prod([W[letter][a] for letter, a in zip(band, offsets)])
            block = x[(slice(None), *(slice(a, None, 2) for a in offsets))]  # x[:, 2I+a, 2J+b, (2K+c)]
            out[..., band_index * x.shape[-1] : (band_index + 1) * x.shape[-1]] += weight * block
    return out


@pytest.mark.parametrize("n, bands", [(2, BANDS_2D), (3, BANDS_3D)])
def test_dwt_matches_the_defining_sum_band_by_band(n, bands):
    x = _random(SHAPES[n])
    np.testing.assert_allclose(np.asarray(DWT[n](x)), _oracle(np.asarray(x, np.float64), bands), atol=1e-5)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("levels", [1, 2])
def test_perfect_reconstruction_and_energy(n, levels):
    x = _random(SHAPES[n])
    y = DWT[n](x, levels)
    assert y.shape[-1] == x.shape[-1] * (2**n) ** levels
    assert y.shape[1:-1] == tuple(s // 2**levels for s in x.shape[1:-1])
    np.testing.assert_allclose(np.asarray(IDWT[n](y, levels)), np.asarray(x), atol=1e-6)
    np.testing.assert_allclose(float(jnp.linalg.norm(y)), float(jnp.linalg.norm(x)), rtol=1e-6)


@pytest.mark.parametrize("n", [2, 3])
def test_adjoint_is_the_inverse(n):
    x = _random(SHAPES[n], seed=1)
    y = DWT[n](_random(SHAPES[n], seed=2))  # any coefficient array of the right shape
    # <DWT x, y> = <x, IDWT y>, and the transpose JAX derives for the linear map is IDWT
    np.testing.assert_allclose(float(jnp.vdot(DWT[n](x), y)), float(jnp.vdot(x, IDWT[n](y))), rtol=1e-5)
    (transposed,) = jax.linear_transpose(DWT[n], x)(y)
    np.testing.assert_allclose(np.asarray(transposed), np.asarray(IDWT[n](y)), atol=1e-6)


def test_gradient_of_energy_is_twice_the_input():
    x = _random(SHAPES[3], seed=3)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(haar_dwt3(v, 2) ** 2)))(x)  # ||DWT x||^2 = ||x||^2
    np.testing.assert_allclose(np.asarray(grad), 2 * np.asarray(x), atol=1e-5)


def test_constant_volume_has_only_lll_energy():
    value = -0.7
    y = np.asarray(haar_dwt3(jnp.full((1, 4, 6, 8, 2), value)))
    np.testing.assert_allclose(y[..., :2], 2 * math.sqrt(2) * value, rtol=1e-6)  # LLL of both channels
    np.testing.assert_allclose(y[..., 2:], 0.0, atol=1e-7)


def test_multi_level_approximation_is_the_scaled_block_sum():
    x = _random((1, 8, 8, 8, 1), seed=4)
    y = np.asarray(haar_dwt3(x, 2))
    block_sums = np.asarray(x).reshape(1, 2, 4, 2, 4, 2, 4, 1).sum(axis=(2, 4, 6))
    np.testing.assert_allclose(y[..., :1], block_sums / math.sqrt(2) ** 6, atol=1e-5)


def test_detail_bands_of_a_ramp():
    """x[i, j] = j (a ramp along W): in every 2x2 block LL = 2(2J + 1/2), LH = -1, HL = HH = 0."""
    ramp = jnp.broadcast_to(jnp.arange(4.0)[:, None], (1, 4, 4, 1))
    y = np.asarray(haar_dwt2(ramp))
    np.testing.assert_allclose(y[0, :, :, 0], [[1.0, 5.0], [1.0, 5.0]], atol=1e-6)
    np.testing.assert_allclose(y[0, :, :, 1], -1.0, atol=1e-6)
    np.testing.assert_allclose(y[0, :, :, 2:], 0.0, atol=1e-6)


def test_bfloat16_keeps_its_dtype():
    x = _random(SHAPES[3]).astype(jnp.bfloat16)
    y = haar_dwt3(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(haar_idwt3(y), np.float32), np.asarray(x, np.float32), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "fn, shape, levels, match",
    [
        (haar_dwt3, (1, 5, 4, 4, 1), 1, "divisible by 2"),
        (haar_dwt3, (1, 4, 4, 6, 1), 2, "divisible by 4"),
        (haar_dwt2, (1, 4, 3, 1), 1, "divisible by 2"),
        (haar_dwt3, (4, 4, 4, 1), 1, "rank 5"),
        (haar_dwt2, (1, 4, 4, 4, 1), 1, "rank 4"),
        (haar_idwt3, (1, 2, 2, 2, 4), 1, "divisible by 8"),
        (haar_idwt2, (1, 2, 2, 8), 2, "divisible by 16"),
        (haar_dwt3, (1, 4, 4, 4, 1), 0, "levels"),
    ],
)
def test_bad_inputs_raise(fn, shape, levels, match):
    with pytest.raises(ValueError, match=match):
        fn(jnp.zeros(shape), levels)
