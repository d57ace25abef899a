"""Tests for gensynth.diffusion.forward: q(x_t | x_0) against its closed form and against the
step-by-step chain of Eq. 2.1 (spec ch. 2, Sect. 6 item 2)."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import linear_betas, q_sample, ve_perturb, vp_schedule

from .testkit import assert_moments

X0 = jnp.array([0.7, -0.2, 0.0])


def test_q_sample_matches_closed_form():
    s = vp_schedule(linear_betas(1000))
    n = 20000
    for t in (9, 99, 999):  # book t = 10, 100, 1000
        x_t, eps = jax.jit(q_sample)(jax.random.key(t), jnp.broadcast_to(X0, (n, 3)), jnp.full((n,), t), s)
        a = float(s.alpha_bar[t])
        np.testing.assert_allclose(x_t, np.sqrt(a) * X0 + np.sqrt(1 - a) * eps, atol=1e-6)
        assert_moments(x_t, np.sqrt(a) * np.asarray(X0), 1 - a)


def test_stepwise_chain_matches_marginal():
    # Running q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t) step by step must give the
    # closed-form marginal built from the cumulative product (Eq. 2.3).
    betas = linear_betas(1000)
    s = vp_schedule(betas)
    n = 10000

    @jax.jit
    def chain(key):
        def step(x, inputs):
            beta, i = inputs
            x = jnp.sqrt(1 - beta) * x + jnp.sqrt(beta) * jax.random.normal(jax.random.fold_in(key, i), x.shape)
            return x, x[:, 0]

        _, xs = jax.lax.scan(step, jnp.broadcast_to(X0[:1], (n, 1)), (jnp.asarray(betas), jnp.arange(1000)))
        return xs  # [T, n]

    xs = np.asarray(chain(jax.random.key(0)))
    for t in (9, 99, 999):
        a = float(s.alpha_bar[t])
        assert_moments(xs[t][:, None], np.sqrt(a) * float(X0[0]), 1 - a)


def test_ve_perturb_moments():
    n = 20000
    x_t, z = ve_perturb(jax.random.key(1), jnp.broadcast_to(X0, (n, 3)), jnp.full((n,), 3.0))
    np.testing.assert_allclose(x_t, X0 + 3.0 * z, atol=1e-5)
    assert_moments(x_t, np.asarray(X0), 9.0)
