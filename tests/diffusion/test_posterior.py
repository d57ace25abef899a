"""Tests for gensynth.diffusion.posterior: the corrected Eq. 2.13 by regression (spec ch. 2, Sect. 6
items 3-4) and the reverse-kernel variances (item 12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.diffusion import (
    eps_to_x0,
    linear_betas,
    q_posterior_mean_variance,
    reverse_log_variance,
    vp_s_sigma,
    vp_schedule,
)


@pytest.mark.parametrize("t", [1, 499, 999])
def test_posterior_by_regression(t):
    # Draw x_{t-1} ~ q(x_{t-1} | x_0), then x_t ~ q(x_t | x_{t-1}); the least-squares fit of
    # x_{t-1} on (x_0, x_t) recovers the posterior mean coefficients and variance. The book's
    # printed sqrt(alpha_bar_t) factor on x_t fails this for every t >= 1 (code).
    s = vp_schedule(linear_betas(1000))
    n = 200000
    k0, k1, k2 = jax.random.split(jax.random.key(t), 3)
    x0 = jax.random.uniform(k0, (n,), minval=-1.0, maxval=1.0)
    a_prev, beta = float(s.alpha_bar_prev[t]), float(s.betas[t])
    x_prev = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * jax.random.normal(k1, (n,))
    x_t = np.sqrt(1 - beta) * x_prev + np.sqrt(beta) * jax.random.normal(k2, (n,))
    design = np.stack([np.asarray(x0), np.asarray(x_t)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, np.asarray(x_prev, np.float64), rcond=None)
    np.testing.assert_allclose(coef, [s.posterior_mean_coef1[t], s.posterior_mean_coef2[t]], atol=1e-2)
    residual_var = np.var(np.asarray(x_prev, np.float64) - design @ coef)
    np.testing.assert_allclose(residual_var, s.posterior_variance[t], rtol=2e-2)
    mean, var, _ = q_posterior_mean_variance(x0[:4, None], jnp.asarray(x_t[:4, None]), jnp.full((4,), t), s)
    coefs = np.asarray([s.posterior_mean_coef1[t], s.posterior_mean_coef2[t]])
    np.testing.assert_allclose(mean[:, 0], design[:4] @ coefs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, s.posterior_variance[t])


def test_posterior_mean_of_eps_estimate_is_eq_2_19():
    # Item 4: mu_tilde(x_t, x0_hat(x_t, eps)) = (x_t - beta / sqrt(1 - alpha_bar) eps) / sqrt(alpha)
    # for any eps (float64, 1e-10).
    with jax.enable_x64(True):
        s = vp_schedule(linear_betas(1000))
        t = jnp.array([1, 10, 500, 999])
        x_t, eps = jax.random.normal(jax.random.key(0), (2, 4, 3), jnp.float64)
        x0_hat = eps_to_x0(eps, x_t, *vp_s_sigma(s.alpha_bar[t]))
        mean, _, _ = q_posterior_mean_variance(x0_hat, x_t, t, s)
        b, a = s.betas[t][:, None], s.alpha_bar[t][:, None]
        eq_2_19 = (x_t - b / jnp.sqrt(1 - a) * eps) / jnp.sqrt(1 - b)
        np.testing.assert_allclose(mean, eq_2_19, atol=1e-10)


def test_reverse_log_variance_choices():
    s = vp_schedule(linear_betas(1000))
    t = jnp.array([0, 1, 500, 999])
    log_beta, log_bt = jnp.log(s.betas[t]), s.posterior_log_variance_clipped[t]
    np.testing.assert_allclose(reverse_log_variance(t, s, "fixed_small"), log_bt)
    np.testing.assert_allclose(reverse_log_variance(t, s, "fixed_large")[1:], log_beta[1:])
    np.testing.assert_allclose(reverse_log_variance(t, s, "fixed_large")[0], np.log(s.posterior_variance[1]), rtol=1e-6)
    # Item 12: v = (r + 1)/2; v = 1 gives beta, v = 0 gives beta tilde (clipped), linear in v.
    ones = jnp.ones((4, 2, 1))
    np.testing.assert_allclose(reverse_log_variance(t, s, "learned", ones)[:, 0, 0], log_beta, rtol=1e-6)
    np.testing.assert_allclose(reverse_log_variance(t, s, "learned", -ones)[:, 0, 0], log_bt, rtol=1e-6)
    mid = reverse_log_variance(t, s, "learned", 0.0 * ones)[:, 0, 0]
    np.testing.assert_allclose(mid, 0.5 * (log_beta + log_bt), rtol=1e-6)
    with pytest.raises(ValueError, match="learned"):
        reverse_log_variance(t, s, "learned")
    with pytest.raises(ValueError, match="variance"):
        reverse_log_variance(t, s, "large")
