"""Restoration operators (spec ch. 7, Sect. 6.3): masks, pooling identities, blur."""

import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import inverse as gi


def test_avgpool_identities():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 16)), jnp.float32)
    for f in (2, 4):
        op = gi.AvgPoolSR(f)
        y = jnp.asarray(rng.standard_normal((16 // f, 16 // f)), jnp.float32)
        np.testing.assert_allclose(op.A(op.A_adjoint(y)), y / f**2, atol=1e-6)  # A A^H = I / f^2
        np.testing.assert_allclose(op.A(op.A_dagger(y)), y, atol=1e-6)  # right inverse
        p = op.project(x, y)
        np.testing.assert_allclose(op.A(p), y, atol=1e-5)  # exact projection
        np.testing.assert_allclose(op.project(p, y), p, atol=1e-5)
        np.testing.assert_allclose(op.A(x)[1, 2], x[f : 2 * f, 2 * f : 3 * f].mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="factor"):
        gi.AvgPoolSR(0)
    with pytest.raises(ValueError, match="multiples"):
        gi.AvgPoolSR(3).A(x)


def test_blur_kernel_and_constant_image():
    k = gi.gaussian_kernel((16, 16), 2.0)
    assert float(k.sum()) == pytest.approx(1.0) and int(jnp.argmax(k)) == 0
    op = gi.Blur.gaussian((16, 16), 2.0)
    np.testing.assert_allclose(op.A(jnp.full((16, 16), 3.0)), 3.0, rtol=1e-5)  # preserves DC
    impulse = jnp.zeros((16, 16)).at[5, 7].set(1.0)
    np.testing.assert_allclose(op.A(impulse), jnp.roll(k, (5, 7), axis=(0, 1)), atol=1e-6)


def test_inpainting_masks():
    m = gi.box_mask((8, 8), (2, 5, 1, 4))
    assert float(m.sum()) == 64 - 9 and float(m[3, 2]) == 0.0
    r = gi.random_pixel_mask((20, 20), 0.3, seed=1)
    assert float(r.sum()) == 280.0
    np.testing.assert_array_equal(r, gi.random_pixel_mask((20, 20), 0.3, seed=1))
    with pytest.raises(ValueError, match="box"):
        gi.box_mask((8, 8), (5, 2, 0, 1))
    with pytest.raises(ValueError, match="missing_fraction"):
        gi.random_pixel_mask((8, 8), 1.5)
