"""Tests for gensynth.diffusion.analytic: the exact Gaussian denoisers."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from gensynth.diffusion import VESDE, VPSDE, gaussian_eps_fn, gaussian_score_fn, linear_betas, q_sample, vp_schedule

from .testkit import MU, SIGMA


def test_eps_fn_is_the_conditional_mean_of_the_noise():
    # E[eps | x_t] is the least-squares predictor: the residual eps - eps_hat(x_t) is uncorrelated
    # with (1, x_t), and eps_hat is affine in x_t, so regressing eps on x_t recovers it.
    s = vp_schedule(linear_betas(1000))
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
    n = 200000
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = MU + SIGMA * jax.random.normal(k0, (n, 2))
    for t in (50, 400):
        tt = jnp.full((n,), t)
        x_t, eps = q_sample(k1, x0, tt, s)
        resid = np.asarray(eps - eps_fn(x_t, tt), np.float64)
        xc = np.asarray(x_t, np.float64) - np.asarray(x_t, np.float64).mean(0)
        np.testing.assert_allclose(resid.mean(0), 0.0, atol=5 / np.sqrt(n))
        corr = (resid * xc).mean(0) / (resid.std(0) * xc.std(0))
        np.testing.assert_allclose(corr, 0.0, atol=5 / np.sqrt(n))


def test_score_fn_is_gradient_of_log_marginal():
    x = jnp.array([[0.3, -2.0], [1.5, 0.4]])
    for sde in (VESDE(0.01, 50.0), VPSDE()):
        score_fn = gaussian_score_fn(MU, SIGMA**2, sde)
        for t in (0.01, 0.5, 1.0):
            tt = jnp.full((2,), t)
            mean, std = sde.marginal_prob(jnp.broadcast_to(jnp.asarray(MU, jnp.float32), (2, 2)), tt)
            s, _ = sde.scale_sigma(tt)

            def log_p(x):
                scale = jnp.sqrt(s[:, None] ** 2 * SIGMA**2 + std[:, None] ** 2)
                return jnp.sum(norm.logpdf(x, mean, scale))

            np.testing.assert_allclose(score_fn(x, tt), jax.grad(log_p)(x), rtol=1e-5, atol=1e-7)
