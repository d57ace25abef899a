"""2-D TV reconstruction by ADMM (spec ch. 7, E2 "TV (ADMM)" baseline): the difference operator
and its adjoint, the group shrink as a prox, least squares at lam = 0, the optimum against a
float64 primal-dual reference with a duality-gap certificate, denoising, single-coil MRI, and
jit/vmap batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import inverse as gi
from gensynth.data.phantoms import shepp_logan
from gensynth.inverse.tv import Dxy, DxyT, group_soft_threshold, tv_reconstruct


def _randn(rng, shape, complex_):
    return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex_ else 0)


def _diff_matrix(h, w):
    """``[2 h w, h w]`` forward differences, row-major pixels, zero rows at the far border."""
    d = np.zeros((2, h, w, h * w))
    for i in range(h):
        for j in range(w):
            k = i * w + j
            if i + 1 < h:
                d[0, i, j, k + w], d[0, i, j, k] = 1.0, -1.0
            if j + 1 < w:
                d[1, i, j, k + 1], d[1, i, j, k] = 1.0, -1.0
    return d.reshape(2 * h * w, h * w)


def _tv(dx, isotropic):
    g = np.abs(dx).reshape(2, -1)
    return np.sum(np.sqrt(np.sum(g**2, axis=0))) if isotropic else np.sum(g)


def _objective(a, y, x, lam, isotropic):
    d = _diff_matrix(*x.shape)
    x = x.ravel()
    return 0.5 * np.sum(np.abs(y - a @ x) ** 2) + lam * _tv(d @ x, isotropic)


def _dense_problem(complex_, m=48, shape=(6, 6), noise=0.1, seed=0):
    """Full-column-rank ``A [m, H W]`` with ``||A|| ~ 1`` and noisy data of a blocky image."""
    rng = np.random.default_rng(seed)
    a = _randn(rng, (m, shape[0] * shape[1]), complex_) / np.sqrt(m * (2 if complex_ else 1))
    truth = np.zeros(shape)
    truth[1:4, 2:5], truth[4:, :3] = 1.0, -0.5
    if complex_:
        truth = truth * np.exp(0.5j)
    y = a @ truth.ravel() + noise * _randn(rng, m, complex_)
    dtype = jnp.complex64 if complex_ else jnp.float32
    return a, y, gi.DenseOperator.create(jnp.asarray(a, dtype), shape), jnp.asarray(y, dtype)


def _pdhg_reference(a, y, shape, lam, isotropic, n_iter=3000):
    """Float64 Chambolle-Pock on ``min_x 1/2 ||y - A x||^2 + lam ||D x||`` (explicit matrices).

    Returns ``(x [H W], primal, dual)``; ``primal - dual >= 0`` bounds the distance to the optimum.
    Dual: ``max_{|p_g| <= lam} 1/2 ||y||^2 - 1/2 b^H (A^H A)^{-1} b`` with ``b = A^H y - D^T p``.
    """
    d = _diff_matrix(*shape)
    gram, aty = a.conj().T @ a, a.conj().T @ y
    tau = sigma = 0.99 / np.sqrt(np.linalg.eigvalsh(d.T @ d).max())
    resolvent = np.linalg.inv(np.eye(gram.shape[0]) + tau * gram)

    def project(q):  # onto {|p_g| <= lam} (groups = the 2 gradient components, or single entries)
        q2 = q.reshape(2, -1)
        size = np.sqrt(np.sum(np.abs(q2) ** 2, axis=0)) if isotropic else np.abs(q2)
        return (q2 / np.maximum(size / lam, 1.0)).reshape(-1)

    x = np.zeros(gram.shape[0], a.dtype)
    x_bar, p = x.copy(), np.zeros(d.shape[0], a.dtype)
    for _ in range(n_iter):
        p = project(p + sigma * d @ x_bar)
        x_new = resolvent @ (x - tau * d.T @ p + tau * aty)
        x_bar, x = 2 * x_new - x, x_new
    b = aty - d.T @ p
    dual = 0.5 * np.sum(np.abs(y) ** 2) - 0.5 * np.real(b.conj() @ np.linalg.solve(gram, b))
    return x, _objective(a, y, x.reshape(shape), lam, isotropic), dual


@pytest.mark.parametrize("complex_", [False, True])
def test_dxy_is_neumann_forward_difference_with_exact_adjoint(complex_):
    rng = np.random.default_rng(0)
    h, w = 5, 7
    dtype = jnp.complex64 if complex_ else jnp.float32
    x = jnp.asarray(_randn(rng, (h, w), complex_), dtype)
    p = jnp.asarray(_randn(rng, (2, h, w), complex_), dtype)
    d = _diff_matrix(h, w)
    np.testing.assert_allclose(Dxy(x).reshape(-1), d @ np.asarray(x).ravel(), atol=1e-6)
    lhs = np.vdot(np.asarray(Dxy(x)), np.asarray(p))
    rhs = np.vdot(np.asarray(x), np.asarray(DxyT(p)))
    assert abs(lhs - rhs) < 1e-5 * abs(lhs)
    assert DxyT(p).dtype == dtype


@pytest.mark.parametrize("complex_", [False, True])
def test_group_soft_threshold_satisfies_prox_optimality(complex_):
    # p = prox_{kappa ||.||_{2,1}}(v)  <=>  v - p in kappa d||p||_{2,1}: per group g,
    # v_g - p_g = kappa p_g / |p_g| when p_g != 0, and |v_g| <= kappa when p_g = 0.
    rng = np.random.default_rng(1)
    kappa = 0.8
    v = _randn(rng, (2, 40), complex_) * rng.uniform(0.1, 1.5, 40)
    p = np.asarray(group_soft_threshold(jnp.asarray(v), kappa), np.complex128)
    norm_v = np.sqrt(np.sum(np.abs(v) ** 2, axis=0))
    norm_p = np.sqrt(np.sum(np.abs(p) ** 2, axis=0))
    zero = norm_p == 0
    assert 5 < zero.sum() < 35  # both branches are exercised
    assert np.all(norm_v[zero] <= kappa + 1e-6)
    np.testing.assert_allclose((v - p)[:, ~zero], kappa * p[:, ~zero] / norm_p[~zero], atol=1e-5)


@pytest.mark.parametrize("complex_", [False, True])
def test_lam_zero_gives_least_squares(complex_):
    a, y, op, y32 = _dense_problem(complex_, m=72)
    x = tv_reconstruct(op, y32, lam=0.0)
    x_ls = np.linalg.lstsq(a, y, rcond=None)[0].reshape(6, 6)
    np.testing.assert_allclose(np.asarray(x), x_ls, atol=3e-5 * np.abs(x_ls).max())


@pytest.mark.parametrize(
    "complex_, isotropic", [(False, True), (False, False), (True, True), (True, False)]
)
def test_reaches_the_float64_primal_dual_optimum(complex_, isotropic):
    a, y, op, y32 = _dense_problem(complex_)
    lam = 0.05
    x_ref, primal, dual = _pdhg_reference(a, y, (6, 6), lam, isotropic)
    assert primal - dual < 1e-9 * primal  # certified reference optimum
    x = np.asarray(tv_reconstruct(op, y32, lam=lam, isotropic=isotropic), np.complex128)
    value = _objective(a, y, x, lam, isotropic)
    # Defaults (100 ADMM x 5 CG steps in float32) reach ~1e-7-1e-5 relative here.
    assert value - primal < 1e-4 * primal
    assert np.abs(x.ravel() - x_ref).max() < 2e-3
    # TV is active: the optimum is far from least squares.
    x_ls = np.linalg.lstsq(a, y, rcond=None)[0].reshape(6, 6)
    assert _objective(a, y, x_ls, lam, isotropic) > 1.1 * primal


def test_denoising_raises_psnr():
    truth = shepp_logan(32)[..., 0].astype(np.float64)
    noisy = truth + 0.2 * np.random.default_rng(0).standard_normal(truth.shape)
    op = gi.Inpaint(jnp.ones((32, 32)))
    x = np.asarray(tv_reconstruct(op, jnp.asarray(noisy, jnp.float32), lam=0.1))

    def psnr(im):  # data range 2 ([-1, 1])
        return 10 * np.log10(4.0 / np.mean((im - truth) ** 2))

    assert psnr(noisy) == pytest.approx(20.0, abs=0.4)
    assert psnr(x) > psnr(noisy) + 4.0  # ~ +5 dB at this lam (the best of a coarse sweep)


def test_single_coil_mri_beats_zero_filled():
    mask, _ = gi.uniform1d((32, 32), 2)
    op = gi.SingleCoilMRI(jnp.asarray(mask))
    truth = jnp.asarray(shepp_logan(32)[..., 0]) * jnp.exp(0.7j).astype(jnp.complex64)
    y = op.A(truth)
    x = tv_reconstruct(op, y, lam=0.003)
    assert x.dtype == jnp.complex64

    def rel_err(im):
        return float(jnp.linalg.norm(im - truth) / jnp.linalg.norm(truth))

    assert rel_err(x) < 0.7 * rel_err(op.A_adjoint(y))
    # The result stays (nearly) consistent with the measured k-space.
    assert float(jnp.linalg.norm(op.A(x) - y) / jnp.linalg.norm(y)) < 0.02


def test_jit_vmap_over_measurements_masks_and_lam_matches_single_calls():
    rng = np.random.default_rng(3)
    masks = jnp.stack([gi.random_pixel_mask((8, 8), 0.3, seed=s) for s in range(3)])
    ys = masks * jnp.asarray(rng.standard_normal((3, 8, 8)), jnp.float32)
    lams = jnp.array([0.02, 0.1, 0.3])

    @jax.jit
    def batch(masks, ys, lams):
        return jax.vmap(lambda m, y, lam: tv_reconstruct(gi.Inpaint(m), y, lam=lam))(
            masks, ys, lams
        )

    xs = batch(masks, ys, lams)
    for i in range(3):
        single = tv_reconstruct(gi.Inpaint(masks[i]), ys[i], lam=float(lams[i]))
        np.testing.assert_allclose(xs[i], single, atol=1e-5)
    assert len({float(jnp.abs(xs[i]).sum()) for i in range(3)}) == 3


def test_rejects_bad_arguments():
    op, y = gi.Inpaint(jnp.ones((4, 4))), jnp.zeros((4, 4))
    with pytest.raises(ValueError, match="n_iter"):
        tv_reconstruct(op, y, lam=0.1, n_iter=0)
    with pytest.raises(ValueError, match="n_cg"):
        tv_reconstruct(op, y, lam=0.1, n_cg=0)
    with pytest.raises(ValueError, match="lam"):
        tv_reconstruct(op, y, lam=-1.0)
    with pytest.raises(ValueError, match="rho"):
        tv_reconstruct(op, y, lam=0.1, rho=0.0)
    with pytest.raises(ValueError, match="x0"):
        tv_reconstruct(op, y, lam=0.1, x0=jnp.zeros((4, 5)))
