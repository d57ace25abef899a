"""Parallel-beam CT (spec ch. 7, Sect. 6.2 and issue 5): FBP quality, agreement with
scikit-image's independent projector, exact transpose, angle sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.transform import radon as sk_radon

from gensynth import inverse as gi
from gensynth.data import shepp_logan


def _psnr(x, ref):
    return 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((x - ref) ** 2))


def test_fbp_of_shepp_logan_full_scan():
    size = 64
    x = (shepp_logan(size)[..., 0] + 1.0) / 2.0  # attenuation in [0, 1]
    op = gi.Radon.create(gi.sparse_view_angles(180), size)
    recon = np.asarray(jax.jit(lambda o, v: gi.fbp(o, o.A(v)))(op, x))
    assert _psnr(recon, x) >= 25.0
    # Few views degrade it (the sparse-view problem the solvers address).
    op8 = gi.Radon.create(gi.sparse_view_angles(8), size)
    recon8 = np.asarray(jax.jit(lambda o, v: o.A_dagger(o.A(v)))(op8, x))
    assert _psnr(recon8, x) < _psnr(recon, x) - 5.0


def test_forward_matches_scikit_image():
    size = 33  # odd: both put the rotation centre at pixel 16
    yy, xx = np.mgrid[:size, :size]
    inside = np.hypot(yy - size // 2, xx - size // 2) <= size // 2
    x = (shepp_logan(size)[..., 0] + 1.0) / 2.0 * inside  # zero outside the scanned circle
    degrees = np.arange(0.0, 180.0, 15.0)
    op = gi.Radon.create(jnp.deg2rad(degrees), size, n_det=size)
    ours = np.asarray(jax.jit(lambda o, v: o.A(v))(op, x))  # [V, D]
    theirs = sk_radon(x, degrees, circle=True).T  # [V, D]
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99
    assert np.abs(ours - theirs).max() < 0.1 * np.abs(theirs).max()


def test_adjoint_is_the_matrix_transpose():
    op = gi.Radon.create(gi.sparse_view_angles(3), 6, n_det=7)
    matrix, back = jax.jit(
        lambda o: (
            jax.jacfwd(o.A)(jnp.zeros((6, 6))),
            jax.vmap(o.A_adjoint)(jnp.eye(21).reshape(21, 3, 7)),
        )
    )(op)
    matrix, back = matrix.reshape(21, 36), back.reshape(21, 36)
    np.testing.assert_allclose(back, matrix, atol=1e-6)


def test_point_projects_to_its_detector_bin():
    x = jnp.zeros((9, 9)).at[4, 6].set(1.0)  # 2 pixels right of the centre
    op = gi.Radon.create(jnp.deg2rad(jnp.array([0.0, 90.0])), 9, n_det=9)
    sino = np.asarray(op.A(x))
    assert np.argmax(sino[0]) == 6 and sino[0].max() == pytest.approx(1.0)
    assert np.argmax(sino[1]) == 4  # at 90 degrees the column offset projects onto the centre


def test_angle_sets():
    np.testing.assert_allclose(gi.sparse_view_angles(4), np.pi * np.arange(4) / 4, rtol=1e-6)
    la = np.asarray(gi.limited_angle_angles(120))
    assert la.shape == (120,) and la[-1] == pytest.approx(np.deg2rad(119.0))
    assert gi.Radon.create(gi.sparse_view_angles(8), 256).n_det == 363
    with pytest.raises(ValueError, match="angles"):
        gi.Radon.create(jnp.zeros((2, 2)), 16)


def test_project_is_a_descent_step_not_a_projection():
    """Erratum E10 for CT: A A^T != I. The unit Landweber step diverges (||A||^2 ~ N V); the
    preconditioned step x + A^T (y - A x) / A^T A 1 lowers the residual at any scale."""
    size = 24
    x_true = (shepp_logan(size)[..., 0] + 1.0) / 2.0
    op = gi.Radon.create(gi.sparse_view_angles(12), size)

    @jax.jit
    def residuals(op, x_true):
        y = op.A(x_true)
        res = lambda v: jnp.linalg.norm(op.A(v) - y)
        x0 = jnp.zeros_like(x_true)
        x1 = op.project(x0, y)
        x2 = op.project(x1, y)
        unit = gi.landweber(x0, y, op, 1.0)
        return res(x0), res(x1), res(x2), res(unit), jnp.linalg.norm(x2 - x1)

    r0, r1, r2, r_unit, moved = residuals(op, x_true)
    assert r2 < r1 < r0
    assert r_unit > r0  # the printed unit step overshoots for CT
    assert moved > 1e-3  # not idempotent
    np.testing.assert_allclose(
        gi.normalized_backprojection(jnp.zeros((size, size)), op.A(x_true), op),
        op.project(jnp.zeros((size, size)), op.A(x_true)),
        atol=1e-5,
    )
