"""3D DDS (slice-wise DDS with one ADMM-TV-z iteration per step): its reduction to 2D DDS for
one-slice volumes, what an exact ADMM x-update guarantees (slice-mean data consistency), the
TV-z coupling, data consistency with the exact Gaussian denoiser, NFE accounting, jit, batches
of independent volumes and sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.inverse.dc import Dz
from gensynth.inverse.dds import dds
from gensynth.inverse.dds3d import dds_3d
from tests.inverse.posterior_kit import (
    EPS,
    MU,
    SCHED,
    SIGMA2,
    assert_same_on_mesh,
    counted,
    orthonormal_op,
    random_op,
)

D = 4


def _slices_A(op, x):
    """``A x`` of every slice of ``x [B, D, 4, 4]`` -> ``[B, D, m]``."""
    return np.asarray(jax.vmap(jax.vmap(op.A))(x))


def _mean_abs_dz(x):
    return float(jnp.mean(jnp.abs(jax.vmap(Dz)(x))))


@pytest.mark.parametrize("gamma", [None, 2.0])
def test_one_slice_volumes_are_2d_dds(gamma):
    # For D = 1 the circular D_z is exactly zero, so the ADMM x-update is DDS's CG (noisy:
    # the same CG on the system scaled by 1 / gamma) whatever rho and lam, with the same key use.
    op = random_op()
    y = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), jnp.float32)
    key = jax.random.key(0)
    x3, info = dds_3d(
        key, EPS, SCHED, op, y[:, None], num_steps=10, lam=0.5, gamma=gamma, trajectory=True
    )
    x2, _ = dds(key, EPS, SCHED, op, y, num_steps=10, gamma=gamma)
    assert x3.shape == (4, 1, 4, 4) and info["trajectory"].shape == (10, 4, 1, 4, 4)
    np.testing.assert_allclose(np.asarray(x3[:, 0]), np.asarray(x2), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(info["trajectory"][-1]), np.asarray(x3))


def test_exact_x_update_is_consistent_on_average_and_tv_z_shrinks_differences():
    # Summing the x-update's normal equations A^H (A x - y) + rho D_z^T (D_z x - z + u) = 0 over
    # the slices removes the D_z^T terms (circular differences sum to zero), so an exactly solved
    # update (n_cg = 64 = unknowns per volume) has sum_d A^H (y_d - A x_d) = 0 for ANY lam, and
    # with A A^H = I: mean_d A x_d = mean_d y_d. Each slice alone is not consistent (residual
    # measured 0.23 at lam = 0: z, u start at 0 and persist, tying the slices to each other).
    # A strong lam collapses the volume along z (measured mean |D_z x| 0.44 -> 3e-8, the truth's
    # 0.86), and then every slice is the one image with A x_d = mean_d y_d.
    op = orthonormal_op()
    rng = np.random.default_rng(0)
    truth = MU + np.sqrt(SIGMA2) * rng.normal(size=(D, 4, 4))  # independent slices
    y = jnp.broadcast_to(jax.vmap(op.A)(jnp.asarray(truth, jnp.float32)), (8, D, 6))
    counter, seen = {}, []

    def eps(x, t):
        seen.append(x.shape)  # at trace time
        return EPS(x, t)

    eps = counted(eps, counter)
    res, tv = {}, {}
    for lam in (0.0, 2.0):
        x, info = dds_3d(jax.random.key(0), eps, SCHED, op, y, n_cg=64, lam=lam)
        res[lam] = _slices_A(op, x) - np.asarray(y)
        tv[lam] = _mean_abs_dz(x)
        assert np.abs(res[lam].mean(axis=1)).max() < 1e-5, lam
    assert np.abs(res[0.0]).max() > 0.1 and tv[2.0] < 1e-3 * tv[0.0], (tv, np.abs(res[0.0]).max())
    assert counter == {"fwd": 100} and info["nfe"] == 50 and not info["needs_vjp"]
    assert {s[0] for s in seen} == {8 * D}  # one network call on all slices of all volumes


def test_consistent_with_z_constant_truth_jit_independent_volumes_and_mesh():
    # Noiseless data of a volume constant along z, book defaults (K = 50, M = 5, rho = 10,
    # lam = 0.04): the volume is data-consistent slice by slice (measured max residual 5e-7;
    # prior mean 0.59). Volumes are separate ADMM problems: changing the data of volume 1 leaves
    # volume 0 unchanged (to float rounding, 3e-6 measured; a z-coupling across volumes would
    # move it by O(1)).
    op = orthonormal_op()
    volume = np.broadcast_to(MU + 0.5, (D, 4, 4))
    y = jnp.broadcast_to(jax.vmap(op.A)(jnp.asarray(volume, jnp.float32)), (4, D, 6))
    solve = jax.jit(lambda y: dds_3d(jax.random.key(0), EPS, SCHED, op, y)[0])
    x = solve(y)
    assert x.shape == (4, D, 4, 4)
    assert np.abs(_slices_A(op, x) - np.asarray(y)).max() < 1e-4
    other = y.at[1].set(-y[1])
    np.testing.assert_allclose(np.asarray(solve(other)[0]), np.asarray(x[0]), atol=2e-5)
    assert_same_on_mesh(solve, y, reference=x)


def test_bad_arguments():
    op = orthonormal_op()
    y = jnp.zeros((1, D, 6))
    for kwargs, match in (
        ({"n_cg": 0}, "n_cg"),
        ({"rho": 0.0}, "rho"),
        ({"lam": -1.0}, "lam"),
        ({"gamma": 0.0}, "gamma"),
    ):
        with pytest.raises(ValueError, match=match):
            dds_3d(jax.random.key(0), EPS, SCHED, op, y, **kwargs)
    with pytest.raises(ValueError, match=r"\[B, D, \*meas_shape\]"):
        dds_3d(jax.random.key(0), EPS, SCHED, op, jnp.zeros((6,)))
