"""gensynth.inverse.real: the real-image restriction of complex operators."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth import inverse


def test_real_image_restriction_is_an_exact_adjoint():
    mask, _ = inverse.random1d((8, 8), 2.0, seed=1)
    op = inverse.RealImage(inverse.MultiCoilMRI(mask=jnp.asarray(mask), maps=inverse.birdcage_maps((8, 8), 3)))
    kx, kr, ki = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(kx, (8, 8))
    y = jax.random.normal(kr, (3, 8, 8)) + 1j * jax.random.normal(ki, (3, 8, 8))
    lhs = jnp.real(jnp.vdot(y, op.A(x)))  # <A_r x, y> under Re(u^H v)
    rhs = jnp.vdot(op.A_adjoint(y), x)
    assert op.A_adjoint(y).dtype == jnp.float32
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
