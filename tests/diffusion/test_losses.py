"""Tests for gensynth.diffusion.losses: optimal-model loss values, the hybrid loss's stop-gradient
and VLB terms (spec ch. 2, Sect. 2.9 and Sect. 6 items 12-13), and VE DSM."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from gensynth.diffusion import (
    VESDE,
    diffusion_loss,
    dsm_loss_ve,
    eps_to_x0,
    gaussian_eps_fn,
    gaussian_score_fn,
    linear_betas,
    v_target,
    vp_s_sigma,
    vp_schedule,
)

from .testkit import MU, SIGMA

N = 65536


def _optimal_model_fn(schedule, prediction):
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, schedule)

    def model_fn(x, t):
        eps = eps_fn(x, t)
        x0 = eps_to_x0(eps, x, *vp_s_sigma(schedule.alpha_bar[t]))
        return {"eps": eps, "x0": x0, "v": v_target(eps, x0, schedule.alpha_bar[t])}[prediction]

    return model_fn


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_simple_loss_of_optimal_model(prediction):
    # The optimal predictor's loss is the posterior variance of the target, averaged over dims and
    # uniform t: Var(eps|x_t) = a s2/(a s2 + 1 - a), Var(x0|x_t) = s2 (1 - a)/(a s2 + 1 - a) and
    # Var(v|x_t) = Var(eps|x_t)/a. Tolerance: 5 standard errors of the per-example loss.
    s = vp_schedule(linear_betas(1000))
    x0 = MU + SIGMA * jax.random.normal(jax.random.key(0), (N, 2))
    loss, metrics = jax.jit(functools.partial(diffusion_loss, prediction=prediction), static_argnums=1)(
        jax.random.key(1), _optimal_model_fn(s, prediction), x0, s
    )
    a = np.asarray(s.alpha_bar, np.float64)[:, None]
    s2 = SIGMA**2
    post_var = {"eps": a * s2, "x0": s2 * (1 - a), "v": s2}[prediction] / (a * s2 + 1 - a)  # [T, 2]
    expected = post_var.mean()
    # Per-example loss = mean over 2 dims of V_d chi2_1: Var = E_t[(V1^2 + V2^2)/2] + Var_t(mean_d V).
    se = np.sqrt(((post_var**2).sum(1) / 2).mean() + post_var.mean(1).var()) / np.sqrt(N)
    assert abs(float(loss) - expected) < 5 * se, (float(loss), expected, se)
    assert float(metrics["mse"]) == float(loss)


def test_l1_loss_of_optimal_model():
    # loss_type="l1" (ch. 4, Eq. 4.7): the posterior-mean eps predictor errs by N(0, V_t) with
    # V_t = Var(eps|x_t) = a s2/(a s2 + 1 - a), so its mean absolute error is E_t sqrt(2 V_t / pi).
    s = vp_schedule(linear_betas(1000))
    x0 = MU + SIGMA * jax.random.normal(jax.random.key(0), (N, 2))
    loss, metrics = jax.jit(functools.partial(diffusion_loss, loss_type="l1"), static_argnums=1)(
        jax.random.key(1), _optimal_model_fn(s, "eps"), x0, s
    )
    a = np.asarray(s.alpha_bar, np.float64)[:, None]
    V = a * SIGMA**2 / (a * SIGMA**2 + 1 - a)  # [T, 2]
    mean_abs = np.sqrt(2 * V / np.pi)
    expected = mean_abs.mean()
    # Per-example loss = mean over 2 dims of |N(0, V_d)|, each with variance V_d (1 - 2/pi).
    se = np.sqrt(((V * (1 - 2 / np.pi)).sum(1) / 4).mean() + mean_abs.mean(1).var()) / np.sqrt(N)
    assert abs(float(loss) - expected) < 5 * se, (float(loss), expected, se)
    assert float(metrics["mae"]) == float(loss) and "mse" not in metrics
    with pytest.raises(ValueError, match="loss_type"):
        diffusion_loss(jax.random.key(1), _optimal_model_fn(s, "eps"), x0[:2], s, loss_type="huber")


def _hybrid_setup(T=1000, B=4096):
    s = vp_schedule(linear_betas(T))
    k0, k1 = jax.random.split(jax.random.key(2))
    x0 = jax.random.randint(k0, (B, 4, 4, 1), 0, 256) / 127.5 - 1.0  # 8-bit grid in [-1, 1]
    out = jax.random.normal(k1, (B, 4, 4, 2))
    return s, x0, out


def test_hybrid_loss_gradients_split_between_heads():
    # Eq. 2.29: the VLB term sees the mean through stop_gradient, so it trains only the variance
    # channels; L_simple trains only the mean channels.
    s, x0, out = _hybrid_setup(B=64)

    def metrics_of(params, weight=1.0):
        return diffusion_loss(jax.random.key(3), lambda x, t: params, x0, s, hybrid=True, vlb_weight=weight)

    @jax.jit
    def run(params):
        grad_vlb = jax.grad(lambda p: metrics_of(p)[1]["vlb"])(params)
        grad_mse = jax.grad(lambda p: metrics_of(p)[1]["mse"])(params)
        return metrics_of(params), metrics_of(params, 0.5), grad_vlb, grad_mse

    (loss, metrics), (loss_w, m_w), g_vlb, g_mse = run(out)
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    np.testing.assert_allclose(loss, metrics["mse"] + 1.0 * metrics["vlb"], rtol=1e-6)
    np.testing.assert_allclose(loss_w, m_w["mse"] + 0.5 * m_w["vlb"], rtol=1e-6)
    assert jnp.all(g_vlb[..., :1] == 0) and jnp.any(g_vlb[..., 1:] != 0)
    assert jnp.all(g_mse[..., 1:] == 0) and jnp.any(g_mse[..., :1] != 0)


def test_hybrid_vlb_values_with_perfect_mean():
    # A model that predicts x0 exactly has the true posterior mean, so KL(q || p_theta) depends only
    # on the variances: 0 for r = -1 (beta tilde) and KL(N(0, beta_tilde) || N(0, beta)) for r = +1.
    s, x0, _ = _hybrid_setup()
    B = x0.shape[0]

    @jax.jit
    def run(r):
        model_fn = lambda x, t: jnp.concatenate([x0, jnp.full_like(x0, r)], -1)  # noqa: E731
        return diffusion_loss(jax.random.key(4), model_fn, x0, s, prediction="x0", hybrid=True)[1]["vlb"]

    # r = -1: only examples with t = 0 (decoder NLL of ~1.3 bits each, P = 1/1000) contribute.
    assert 0.0 <= float(run(-1.0)) < 0.01
    beta, log_bt = np.asarray(s.betas, np.float64), np.asarray(s.posterior_log_variance_clipped, np.float64)
    kl = 0.5 * (-1 + np.log(beta) - log_bt + np.exp(log_bt) / beta) / np.log(2)  # bits/dim, t >= 1
    bin_half = 1 / 255 / np.sqrt(beta[0])
    kl[0] = -np.log(norm.cdf(bin_half) - norm.cdf(-bin_half)) / np.log(2)  # t = 0: interior bins
    # (edge bins x0 = +-1 have a larger probability; they are 2/256 of the pixels.)
    edge = -np.log(norm.cdf(bin_half)) / np.log(2)
    kl[0] = (254 * kl[0] + 2 * edge) / 256
    np.testing.assert_allclose(float(run(1.0)), kl.mean(), atol=5 * kl.std() / np.sqrt(B))


def test_decoder_term_for_one_step_schedule():
    # With T = 1 every example is at t = 0: L_vlb is the discretised-decoder NLL of x0 under
    # N(x0_pred, beta_0) in bits/dim.
    s = vp_schedule(np.array([0.01]))
    x0 = jnp.array([-1.0, -1.0 + 2 / 255, 153 / 127.5 - 1.0, 1.0]).reshape(4, 1, 1, 1)
    x0_pred = x0 + 0.01
    model_fn = lambda x, t: jnp.concatenate([x0_pred, jnp.zeros_like(x0)], -1)  # noqa: E731
    loss_fn = functools.partial(diffusion_loss, prediction="x0", hybrid=True)
    _, metrics = jax.jit(loss_fn, static_argnums=1)(jax.random.key(5), model_fn, x0, s)
    sd, x, m = 0.1, np.asarray(x0).ravel(), np.asarray(x0_pred).ravel()
    hi = np.where(x > 0.999, 1.0, norm.cdf((x + 1 / 255 - m) / sd))
    lo = np.where(x < -0.999, 0.0, norm.cdf((x - 1 / 255 - m) / sd))
    np.testing.assert_allclose(metrics["vlb"], np.mean(-np.log(hi - lo)) / np.log(2), rtol=1e-4)


def test_hybrid_requires_variance_channels():
    s, x0, out = _hybrid_setup(B=8)
    loss_fn = jax.jit(diffusion_loss, static_argnums=1, static_argnames=("hybrid", "prediction"))
    with pytest.raises(ValueError, match="2 channels"):
        loss_fn(jax.random.key(0), lambda x, t: out[..., :1], x0, s, hybrid=True)
    with pytest.raises(ValueError, match="1 channels"):
        loss_fn(jax.random.key(0), lambda x, t: out, x0, s, hybrid=False)
    with pytest.raises(ValueError, match="prediction"):
        loss_fn(jax.random.key(0), lambda x, t: out, x0, s, prediction="score")


def test_dsm_loss_ve_of_exact_score():
    # With the exact score of N(MU, SIGMA^2) data, sigma s + z has per-dim variance
    # s2/(s2 + sigma_t^2), so the loss is E_t[sum_d s2_d/(s2_d + sigma_t^2)], t ~ U(t_eps, 1).
    sde = VESDE(0.01, 50.0)
    x0 = MU + SIGMA * jax.random.normal(jax.random.key(6), (N, 2))
    loss, _ = jax.jit(dsm_loss_ve, static_argnums=1)(jax.random.key(7), gaussian_score_fn(MU, SIGMA**2, sde), x0, sde)
    t = np.linspace(1e-5, 1, 200001)
    V = SIGMA**2 / (SIGMA**2 + (0.01 * 5000.0**t)[:, None] ** 2)  # [t, 2]
    expected = V.sum(1).mean()
    se = np.sqrt((2 * V**2).sum(1).mean() + V.sum(1).var()) / np.sqrt(N)
    assert abs(float(loss) - expected) < 5 * se, (float(loss), expected, se)
