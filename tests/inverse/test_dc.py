"""Data consistency (spec ch. 7, Sect. 10.2 items 10-11, erratum E13): CG on small SPD /
Hermitian systems, the DDS Krylov properties, the regularised variant, TV-z ADMM pieces."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import inverse as gi


def _spd(n, seed, complex_=False):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    return a @ a.conj().T + n * np.eye(n)


@pytest.mark.parametrize("complex_", [False, True])
def test_cg_solves_spd_and_hermitian_systems(complex_):
    with jax.enable_x64(True):
        h = _spd(8, 0, complex_)
        rng = np.random.default_rng(1)
        b = rng.standard_normal(8) + (1j * rng.standard_normal(8) if complex_ else 0)
        x = gi.cg(lambda v: jnp.asarray(h) @ v, jnp.asarray(b), jnp.zeros_like(jnp.asarray(b)), 8)
        np.testing.assert_allclose(x, np.linalg.solve(h, b), rtol=1e-9)
        # A tolerance freezes the iterate once reached; extra iterations then change nothing.
        x_tol = gi.cg(
            lambda v: jnp.asarray(h) @ v,
            jnp.asarray(b),
            jnp.zeros_like(jnp.asarray(b)),
            30,
            tol=1e-6,
        )
        np.testing.assert_allclose(x_tol, np.linalg.solve(h, b), rtol=1e-5)
        assert np.all(np.isfinite(np.asarray(x_tol)))


def test_cg_float32_under_jit():
    h = jnp.asarray(_spd(6, 2), jnp.float32)
    b = jnp.arange(6.0)
    x = jax.jit(lambda b: gi.cg(lambda v: h @ v, b, jnp.zeros(6), 6))(b)
    np.testing.assert_allclose(h @ x, b, rtol=1e-4, atol=1e-4)


def test_cg_past_convergence_stays_at_the_solution_in_float32():
    # With H = I CG converges in one step; later steps must not divide float32 rounding noise by
    # a near-zero curvature (that once returned values ~1e8).
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 6)))
    op = gi.DenseOperator.create(jnp.asarray(q.T, jnp.float32), (4, 4))
    assert op.AAH_is_identity
    y = jnp.asarray(np.random.default_rng(1).standard_normal(6), jnp.float32)
    for seed in range(3):
        x_hat = 3 * jnp.asarray(np.random.default_rng(seed + 2).standard_normal((4, 4)), jnp.float32)
        x = gi.cg_data_consistency(x_hat, y, op, 8)
        assert np.abs(np.asarray(op.A(x) - y)).max() < 1e-5
        assert np.abs(np.asarray(x)).max() < 2 * np.abs(np.asarray(x_hat)).max() + 1


def _problem(m=6, n=10, seed=3):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    op = gi.DenseOperator(matrix=jnp.asarray(a), image_shape=(n,))
    x_hat = jnp.asarray(rng.standard_normal(n))
    y = jnp.asarray(rng.standard_normal(m))
    return a, op, x_hat, y


def test_dds_cg_krylov_nullspace_and_monotone_residual():
    with jax.enable_x64(True):
        a, op, x_hat, y = _problem()
        gram = a.T @ a
        r0 = a.T @ (np.asarray(y) - a @ np.asarray(x_hat))
        null = np.eye(10) - np.linalg.pinv(a) @ a  # projector onto null(A)
        residuals = []
        for k in range(7):
            xk = np.asarray(gi.cg_data_consistency(x_hat, y, op, k))
            residuals.append(np.linalg.norm(np.asarray(y) - a @ xk))
            if k > 0:  # x_k - x_hat lies in K_k(A^H A, A^H (y - A x_hat))
                basis = np.stack([np.linalg.matrix_power(gram, j) @ r0 for j in range(k)], axis=1)
                q = np.linalg.qr(basis)[0]
                step = xk - np.asarray(x_hat)
                assert np.linalg.norm(step - q @ (q.T @ step)) < 1e-8 * np.linalg.norm(step)
            np.testing.assert_allclose(null @ xk, null @ np.asarray(x_hat), atol=1e-10)
        assert all(b <= a_ + 1e-12 for a_, b in itertools.pairwise(residuals))
        assert residuals[-1] < 1e-8  # rank(A) = 6 steps reach an exact solution of A x = y


def test_dds_cg_noisy_variant_matches_closed_form():
    with jax.enable_x64(True):
        a, op, x_hat, y = _problem()
        gamma = 0.7
        expected = np.linalg.solve(
            np.eye(10) + gamma * a.T @ a, np.asarray(x_hat) + gamma * a.T @ np.asarray(y)
        )
        x = gi.cg_data_consistency(x_hat, y, op, 10, gamma=gamma)
        np.testing.assert_allclose(x, expected, rtol=1e-9)


def test_dds_cg_complex_mri():
    n = 16
    mask = jnp.asarray(gi.random1d((n, n), 4, seed=0)[0])
    op = gi.MultiCoilMRI(mask, gi.birdcage_maps((n, n), 4))
    x_true = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.complex64)
    y = op.A(x_true)
    solve = jax.jit(lambda xh, k: gi.cg_data_consistency(xh, y, op, k), static_argnums=1)
    res = [
        float(jnp.linalg.norm(op.A(solve(jnp.zeros((n, n), jnp.complex64), k)) - y))
        for k in (0, 5, 40)
    ]
    assert res[0] > res[1] > res[2]
    assert res[2] < 1e-2 * res[0]  # SENSE A^H A is ill-conditioned: slow, but it converges


def test_dz_adjoint_and_soft_threshold_is_prox():
    rng = np.random.default_rng(0)
    x, z = (jnp.asarray(rng.standard_normal((5, 4, 3)), jnp.float32) for _ in range(2))
    np.testing.assert_allclose(jnp.vdot(gi.Dz(x), z), jnp.vdot(x, gi.DzT(z)), rtol=1e-5)
    np.testing.assert_allclose(gi.Dz(x)[1], x[2] - x[1], atol=1e-6)
    np.testing.assert_allclose(gi.Dz(x)[-1], x[0] - x[-1], atol=1e-6)  # circular
    # prox_{kappa |.|}(v) = argmin_u 1/2 |u - v|^2 + kappa |u|: check against a dense grid search.
    kappa, grid = 0.6, np.linspace(-4, 4, 80001)
    for v in (-2.5, -0.3, 0.0, 0.4, 1.7):
        best = grid[np.argmin(0.5 * (grid - v) ** 2 + kappa * np.abs(grid))]
        assert float(gi.soft_threshold(jnp.asarray(v), kappa)) == pytest.approx(best, abs=2e-4)
    c = jnp.asarray([3.0 + 4.0j])  # complex: shrink the modulus, keep the phase
    np.testing.assert_allclose(gi.soft_threshold(c, 1.0), [2.4 + 3.2j], rtol=1e-6)


def test_admm_tv_z_decreases_objective():
    d, n = 6, 8
    op = gi.Inpaint(gi.random_pixel_mask((n, n), 0.6, seed=0))
    ramp = jnp.linspace(0.0, 1.0, d)[:, None, None] * jnp.ones((d, n, n))
    truth = jnp.where(ramp > 0.5, 1.0, 0.0)  # piecewise constant along z
    noise = jnp.asarray(np.random.default_rng(0).standard_normal((d, n, n)), jnp.float32)
    y = jax.vmap(op.A)(truth + 0.2 * noise)
    lam, rho = 0.1, 1.0

    def objective(x):
        return 0.5 * jnp.sum((jax.vmap(op.A)(x) - y) ** 2) + lam * jnp.sum(jnp.abs(gi.Dz(x)))

    step = jax.jit(lambda x, s: gi.admm_tv_z(x, y, op, s, rho, lam, 5))
    x = jnp.zeros((d, n, n))
    state = gi.admm_tv_z_init(x)
    values = [float(objective(x))]
    for _ in range(30):
        x, state = step(x, state)
        values.append(float(objective(x)))
    assert values[-1] < values[1] < values[0]
    assert values[-1] <= min(values) + 1e-3 * values[0]  # settled at (near) its best value
    # TV along z makes each observed z-profile flatter than the data.
    assert float(jnp.sum(jnp.abs(gi.Dz(x)))) < float(jnp.sum(jnp.abs(gi.Dz(y))))
