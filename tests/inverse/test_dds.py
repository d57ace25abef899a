"""DDS: data consistency with noiseless data, posterior means (noiseless and noisy) on a Gaussian
prior, NFE accounting (K calls, no VJP), a complex operator and sharding."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import gaussian_eps_fn
from gensynth.inverse.dds import dds
from gensynth.inverse.dense import DenseOperator
from tests.inverse.posterior_kit import (
    EPS,
    MU,
    SCHED,
    assert_same_on_mesh,
    counted,
    measurement,
    orthonormal_op,
    posterior,
    random_op,
)

B = 1024


def test_dds_noiseless_consistent_near_posterior_and_same_on_mesh():
    # CG from x0_hat is exact after one step for A A^H = I; the default 5 steps must then stay
    # put (float32 CG used to divide rounding noise by a near-zero curvature here). Measured max
    # error of the sample mean: 0.03 (random A), Monte Carlo s.e. <= 0.02 per pixel; prior-mean
    # error 0.72.
    op = orthonormal_op()
    _, y = measurement(op, 0.0)
    x, info = dds(jax.random.key(0), EPS, SCHED, op, jnp.broadcast_to(y, (16, 6)))
    assert np.abs(np.asarray(jax.vmap(op.A)(x)) - y).max() < 1e-4
    assert info == {"nfe": 50, "vjps": 0, "needs_vjp": False, "trajectory": None}
    op = random_op()
    _, y = measurement(op, 0.0)
    ys = jnp.broadcast_to(y, (B, 6))
    x, _ = dds(jax.random.key(0), EPS, SCHED, op, ys)
    mean, _ = posterior(op, y, 0.0)
    err = np.abs(np.asarray(x).mean(0) - mean).max()
    assert err < 0.1 and err < 0.2 * np.abs(MU - mean).max(), err
    assert_same_on_mesh(lambda ys: dds(jax.random.key(0), EPS, SCHED, op, ys)[0], ys, reference=x)


def test_dds_noisy_variant_near_posterior():
    # gamma = 1 / sigma_y^2 makes the proximal CG target the MAP-consistent weighting; measured
    # max error 0.06 (s.e. <= 0.02) against 0.72 for the prior mean.
    op = random_op()
    _, y = measurement(op, 0.1)
    x, _ = dds(jax.random.key(3), EPS, SCHED, op, jnp.broadcast_to(y, (B, 6)), gamma=100.0)
    mean, _ = posterior(op, y, 0.1)
    err = np.abs(np.asarray(x).mean(0) - mean).max()
    assert err < 0.12 and err < 0.2 * np.abs(MU - mean).max(), err


def test_dds_complex_and_counts():
    rng = np.random.default_rng(3)
    op = DenseOperator.create(
        jnp.asarray(rng.normal(size=(6, 16)) + 1j * rng.normal(size=(6, 16)), jnp.complex64), (4, 4)
    )
    y = jnp.asarray(rng.normal(size=(2, 6)) + 1j * rng.normal(size=(2, 6)), jnp.complex64)
    counter = {}
    eps2 = counted(gaussian_eps_fn(0.0, 1.0, SCHED), counter)  # 2-channel real/imag network
    x, info = dds(jax.random.key(1), eps2, SCHED, op, y, num_steps=10, n_cg=6, trajectory=True)
    assert x.dtype == jnp.complex64 and info["trajectory"].shape == (10, 2, 4, 4)
    assert np.abs(np.asarray(jax.vmap(op.A)(x) - y)).max() < 1e-3
    assert counter == {"fwd": 10} and info["nfe"] == 10 and info["vjps"] == 0
