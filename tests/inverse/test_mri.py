"""MRI operators (spec ch. 7, Sect. 10.2 items 3-4, erratum E10; ch. 17 tests 6, 7, 9)."""

import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import inverse as gi

N = 16


def _complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), jnp.complex64)


@pytest.fixture(scope="module")
def mask():
    return jnp.asarray(gi.random1d((N, N), 4, seed=0)[0])


def test_single_coil_projection_is_kspace_replacement(mask):
    op = gi.SingleCoilMRI(mask)
    x, x_true = _complex((N, N), 0), _complex((N, N), 1)
    y = op.A(x_true)
    p = op.project(x, y)
    np.testing.assert_allclose(p, gi.kspace_replace(x, y, mask), atol=1e-5)
    k = gi.fft2c(p)
    np.testing.assert_allclose(k * mask, y, atol=1e-5)  # measured locations replaced
    np.testing.assert_allclose(k * (1 - mask), gi.fft2c(x) * (1 - mask), atol=1e-5)  # rest kept
    # (I - A^H A) x + A^H y, the printed Eq. 7.27, is the same map here (A A^H = I).
    np.testing.assert_allclose(x - op.A_adjoint(op.A(x)) + op.A_adjoint(y), p, atol=1e-5)


def test_full_mask_recovers_truth():
    op = gi.SingleCoilMRI(jnp.ones((N, N)))
    x_true = _complex((N, N), 3)
    np.testing.assert_allclose(op.project(_complex((N, N), 4), op.A(x_true)), x_true, atol=1e-5)


def test_sense_landweber_step_is_not_a_projection(mask):
    """Erratum E10: for A = P F S the unit step lowers the residual but is not idempotent."""
    op = gi.MultiCoilMRI(mask, gi.birdcage_maps((N, N), 4))
    x, x_true = _complex((N, N), 5), _complex((N, N), 6)
    y = op.A(x_true)
    p = op.project(x, y)
    pp = op.project(p, y)
    residual = lambda v: float(jnp.linalg.norm(op.A(v) - y))
    assert residual(p) < residual(x)  # ||A|| <= 1, so the unit step is a descent step
    assert residual(pp) < residual(p)
    assert float(jnp.linalg.norm(pp - p)) > 1e-2 * float(jnp.linalg.norm(p))  # NOT idempotent
    assert residual(p) > 1e-3 * float(jnp.linalg.norm(y))  # nor consistent after one step


def test_uniform_maps_full_mask_gives_identity_normal_operator():
    k = 4
    maps = jnp.full((k, N, N), 1.0 / np.sqrt(k), jnp.complex64)
    op = gi.MultiCoilMRI(jnp.ones((N, N)), maps)
    x = _complex((N, N), 7)
    np.testing.assert_allclose(op.A_adjoint(op.A(x)), x, atol=1e-5)


def test_rss_of_normalised_coil_images_is_magnitude():
    maps = gi.birdcage_maps((N, N), 6)
    x = _complex((N, N), 8)
    np.testing.assert_allclose(jnp.sum(jnp.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(gi.rss(maps * x), jnp.abs(x), rtol=1e-5)


def test_single_coil_works_coilwise_on_stacks(mask):
    op = gi.SingleCoilMRI(mask)
    xs = _complex((3, N, N), 9)
    np.testing.assert_allclose(op.A(xs)[1], op.A(xs[1]), atol=1e-6)


def test_bad_shapes_are_refused(mask):
    with pytest.raises(ValueError, match="mask"):
        gi.SingleCoilMRI(jnp.ones((2, N, N)))
    with pytest.raises(ValueError, match="maps"):
        gi.MultiCoilMRI(mask, jnp.ones((4, N, N + 1), jnp.complex64))
