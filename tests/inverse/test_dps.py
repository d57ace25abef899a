"""DPS: the likelihood gradient through a linear Tweedie map (spec 10.2 item 12), the posterior
mean on a Gaussian prior, Poisson likelihood, NFE/VJP accounting and sharding."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.inverse.dps import dps, likelihood_grad, residual_sq_norm
from gensynth.inverse.layout import REAL
from tests.inverse.posterior_kit import (
    EPS,
    MU,
    SCHED,
    assert_same_on_mesh,
    counted,
    measurement,
    posterior,
    random_op,
)


def test_gradient_through_linear_tweedie_is_2_JT_AH_residual():
    op = random_op()
    rng = np.random.default_rng(0)
    J = jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)
    d = jnp.asarray(rng.normal(size=16), jnp.float32)
    x0_fn = lambda x: (x.reshape(x.shape[0], 16) @ J.T + d).reshape(x.shape)  # noqa: E731
    x = jnp.asarray(rng.normal(size=(3, 4, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    x0, r2, g = jax.jit(lambda x, y: likelihood_grad(x0_fn, op, x, y, layout=REAL))(x, y)
    res = jax.vmap(op.A)(x0) - y
    expected = 2.0 * jax.vmap(op.A_adjoint)(res).reshape(3, 16) @ J
    np.testing.assert_allclose(
        np.asarray(g).reshape(3, 16), np.asarray(expected), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(r2), np.sum(np.asarray(res) ** 2, -1), rtol=1e-5)
    # the code's normalisation: grad ||r|| = grad ||r||^2 / (2 ||r||)
    norm = lambda x: jnp.sqrt(residual_sq_norm(op, x0_fn(x[None]), y[:1]))[0]  # noqa: E731
    norm_grad = jax.jit(jax.grad(norm))(x[0])
    np.testing.assert_allclose(
        np.asarray(norm_grad), np.asarray(g[0] / (2 * np.sqrt(r2[0]))), rtol=1e-4, atol=1e-5
    )


def test_dps_posterior_mean_counts_and_mesh():
    # DPS is approximate (Jensen gap of p(y | x0_hat)), so the check is a measured tolerance:
    # with 1024 samples the Monte Carlo s.e. of each pixel mean is <= 0.025 and the measured
    # max error is 0.09 (prior mean: 0.72); 0.15 leaves ~2.5 s.e. of slack.
    op = random_op()
    _, y = measurement(op, 0.1)
    ys = jnp.broadcast_to(y, (1024, 6))
    counter = {}
    eps = counted(EPS, counter)
    x, info = dps(jax.random.key(0), eps, SCHED, op, ys)
    mean, _ = posterior(op, y, 0.1)
    err = np.abs(np.asarray(x).mean(0) - mean).max()
    assert err < 0.15 and err < 0.5 * np.abs(MU - mean).max(), err
    assert counter == {"fwd": 1000, "vjp": 1000}
    assert info["nfe"] == info["vjps"] == 1000 and info["needs_vjp"]
    assert_same_on_mesh(lambda ys: dps(jax.random.key(0), eps, SCHED, op, ys)[0], ys, reference=x)


def test_poisson_weighting_and_solve():
    op = random_op()
    y = jnp.asarray([[4.0, 0.0, 1.0, 9.0, 2.0, 0.5]])
    x0 = jnp.zeros((1, 4, 4))
    expected = np.sum(np.asarray(y[0]) ** 2 / (2 * np.maximum(np.asarray(y[0]), 1e-3)))
    np.testing.assert_allclose(
        np.asarray(residual_sq_norm(op, x0, y, "poisson"))[0], expected, rtol=1e-5
    )
    counter = {}
    eps = counted(EPS, counter)
    x, info = dps(
        jax.random.key(1), eps, SCHED, op, y, likelihood="poisson", num_steps=20, trajectory=True
    )
    assert counter == {"fwd": 20, "vjp": 20} and info["nfe"] == info["vjps"] == 20
    assert info["trajectory"].shape == (20, 1, 4, 4) and np.all(np.isfinite(np.asarray(x)))
