"""DenseOperator: construction checks, pseudo-inverse, exact projection with orthonormal rows."""

import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.inverse import DenseOperator


def test_create_detects_orthonormal_rows_and_pinv():
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((12, 5)))[0].T  # [5, 12]
    op = DenseOperator.create(jnp.asarray(q, jnp.float32), (3, 4))
    assert op.AAH_is_identity
    x = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
    y = op.A(x)
    assert y.shape == (5,)
    np.testing.assert_allclose(op.A(op.project(jnp.zeros((3, 4)), y)), y, atol=1e-5)
    m = rng.standard_normal((5, 12))
    general = DenseOperator.create(jnp.asarray(m, jnp.float32), (3, 4))
    assert not general.AAH_is_identity
    np.testing.assert_allclose(general.A(general.A_dagger(y)), y, atol=1e-4)


def test_bad_matrix_is_refused():
    with pytest.raises(ValueError, match="matrix"):
        DenseOperator.create(jnp.zeros((3, 10)), (3, 4))
