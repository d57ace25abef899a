"""Tests for gensynth.diffusion.parameterization (spec ch. 7, 10.2 items 6-7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from gensynth.diffusion import (
    eps_to_score,
    eps_to_x0,
    linear_betas,
    model_output_to_eps_x0,
    score_to_eps,
    split_output,
    tweedie_x0,
    v_target,
    v_to_eps_x0,
    vp_s_sigma,
    vp_schedule,
    x0_to_eps,
)


def _kernels():
    """(s, sigma) per example for VE (s = 1) and VP (from alpha_bar)."""
    ab = jnp.array([0.999, 0.5, 1e-3])
    return {"ve": (jnp.ones(3), jnp.array([0.01, 1.0, 300.0])), "vp": vp_s_sigma(ab)}


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_eps_score_x0_round_trip(kind):
    # Item 6: eps -> score -> x0 -> eps is the identity, and x_t = s x0 + s sigma eps holds.
    s, sigma = _kernels()[kind]
    x_t, eps = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 1))
    score = eps_to_score(eps, s, sigma)
    x0 = tweedie_x0(x_t, score, s, sigma)
    np.testing.assert_allclose(x0_to_eps(x0, x_t, s, sigma), eps, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(score_to_eps(score, s, sigma), eps, rtol=1e-5)
    np.testing.assert_allclose(eps_to_x0(eps, x_t, s, sigma), x0, rtol=1e-4, atol=1e-4)
    recon = s[:, None, None, None] * x0 + (s * sigma)[:, None, None, None] * eps
    np.testing.assert_allclose(recon, x_t, rtol=1e-4, atol=1e-4)


def test_vp_to_ve_scaling():
    # x_t / s_t of a VP state is a VE state x_0 + sigma_t eps.
    ab = jnp.array([0.9, 0.2])
    x0, eps = jax.random.normal(jax.random.key(1), (2, 2, 5))
    x_t = jnp.sqrt(ab)[:, None] * x0 + jnp.sqrt(1 - ab)[:, None] * eps
    s, sigma = vp_s_sigma(ab)
    np.testing.assert_allclose(x_t / s[:, None], x0 + sigma[:, None] * eps, rtol=1e-5, atol=1e-6)


def test_v_round_trip_and_model_outputs():
    sch = vp_schedule(linear_betas(1000))
    t = jnp.array([0, 300, 999])
    x0, eps = jax.random.normal(jax.random.key(2), (2, 3, 4, 4, 2))
    ab = sch.alpha_bar[t][:, None, None, None]
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
    v = v_target(eps, x0, sch.alpha_bar[t])
    e, x = v_to_eps_x0(v, x_t, sch.alpha_bar[t])
    np.testing.assert_allclose(e, eps, atol=1e-5)
    np.testing.assert_allclose(x, x0, atol=1e-5)
    for prediction, out in (("eps", eps), ("x0", x0), ("v", v)):
        r = jnp.full_like(out, 0.3)
        e, x, r_out = model_output_to_eps_x0(jnp.concatenate([out, r], -1), x_t, t, sch, prediction)
        np.testing.assert_allclose(r_out, r)
        # x0 from an eps output at t = 999 amplifies float32 rounding by 1/sqrt(ab) ~ 160.
        np.testing.assert_allclose(x, x0, atol=2e-4 if prediction == "eps" else 1e-5)
        np.testing.assert_allclose(e, eps, atol=1e-4)
    assert split_output(eps, x_t)[1] is None
    with pytest.raises(ValueError, match="model output"):
        split_output(jnp.zeros((3, 4, 4, 3)), x_t)
    with pytest.raises(ValueError, match="prediction"):
        model_output_to_eps_x0(eps, x_t, t, sch, "score")


def _gaussian_posterior_mean(x, mu, cov, s, sigma):
    """E[x_0 | x_t = x] for x_0 ~ N(mu, cov), x_t = s x_0 + s sigma z (linear-Gaussian)."""
    d = mu.shape[0]
    return mu + s * cov @ jnp.linalg.solve(s**2 * cov + (s * sigma) ** 2 * jnp.eye(d), x - s * mu)


@pytest.mark.parametrize("kind", ["ve", "vp", "arbitrary"])
def test_tweedie_exact_for_gaussian_prior(kind):
    # Item 7: with the analytic score of the N(mu, Sigma) prior's marginal, the corrected
    # Eq. 7.13 equals the exact posterior mean (float64, 1e-10); the printed form does not when s != 1.
    with jax.enable_x64(True):
        d = 4
        k0, k1, k2 = jax.random.split(jax.random.key(3), 3)
        mu = jax.random.normal(k0, (d,))
        L = jax.random.normal(k1, (d, d)) / 2
        cov = L @ L.T + 0.1 * jnp.eye(d)
        s, sigma = {
            "ve": (1.0, 0.7),
            "vp": tuple(float(c) for c in vp_s_sigma(jnp.float64(0.3))),
            "arbitrary": (0.37, 1.3),
        }[kind]
        x = jax.random.normal(k2, (d,)) * 2
        score = -jnp.linalg.solve(s**2 * cov + (s * sigma) ** 2 * jnp.eye(d), x - s * mu)
        exact = _gaussian_posterior_mean(x, mu, cov, s, sigma)
        np.testing.assert_allclose(tweedie_x0(x[None], score[None], s, sigma)[0], exact, atol=1e-10)
        printed = (x + sigma**2 * score) / s  # Eq. 7.13 as printed (erratum E4)
        if kind == "ve":
            np.testing.assert_allclose(printed, exact, atol=1e-10)
        else:
            assert float(jnp.max(jnp.abs(printed - exact))) > 1e-2


def test_tweedie_exact_for_gaussian_mixture_by_quadrature():
    with jax.enable_x64(True):
        w, m, v = jnp.array([0.3, 0.7]), jnp.array([-1.0, 0.8]), jnp.array([0.05, 0.2])
        s, sigma = 0.6, 0.5

        def log_marginal(x):
            return jax.scipy.special.logsumexp(jnp.log(w) + norm.logpdf(x, s * m, s * jnp.sqrt(v + sigma**2)))

        grid = jnp.linspace(-6, 6, 20001)
        prior = jnp.sum(w[:, None] * norm.pdf(grid, m[:, None], jnp.sqrt(v)[:, None]), 0)
        for x in (-1.2, 0.1, 0.9):
            weights = prior * norm.pdf(x, s * grid, s * sigma)
            quad = jnp.sum(grid * weights) / jnp.sum(weights)
            score = jax.grad(log_marginal)(x)
            np.testing.assert_allclose(tweedie_x0(jnp.array([x]), score[None], s, sigma)[0], quad, atol=1e-8)
