"""Shared pieces of the diffusion tests: Gaussian test data, moment checks and exact chain moments.

Gaussian data ``x0 ~ N(MU, diag(SIGMA^2))`` has an exact score, so a sampler driven by it must
reproduce ``(MU, SIGMA^2)`` up to Monte Carlo error and its own discretisation bias. For the
discrete VP chains (DDPM, DDIM) that bias is known exactly: with the optimal denoiser every
step is affine in ``x`` per dimension, so the output mean and variance follow from a scalar
float64 recursion (:func:`chain_moments`), written here independently of the library code.
"""

import numpy as np

MU = np.array([0.5, -0.3])  # per-dimension data mean
SIGMA = np.array([0.3, 0.8])  # per-dimension data std (distinct, one below and one near 1)
N_SAMPLES = 16384  # Monte Carlo samples per sampler check


def assert_moments(x, mean, var, *, n_se=5.0, mean_allow=0.0, var_allow=0.0):
    """Sample mean and variance of ``x [n, d]`` match ``mean``/``var`` within ``n_se`` standard
    errors (``sqrt(var/n)`` and ``var sqrt(2/(n-1))``) plus absolute allowances."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    mean, var = np.broadcast_to(mean, x.shape[1:]), np.broadcast_to(var, x.shape[1:])
    se_mean = np.sqrt(var / n)
    se_var = var * np.sqrt(2.0 / (n - 1))
    mean_err = np.abs(x.mean(0) - mean)
    var_err = np.abs(x.var(0, ddof=1) - var)
    assert np.all(mean_err <= n_se * se_mean + mean_allow), (x.mean(0), mean, se_mean)
    assert np.all(var_err <= n_se * se_var + var_allow), (x.var(0, ddof=1), var, se_var)


def chain_moments(alpha_bar_steps, *, kind, eta=0.0, mu=MU, sigma2=SIGMA**2):
    """Exact output mean and variance of a discrete VP sampler with the optimal eps predictor.

    Args:
      alpha_bar_steps: float64 ``alpha_bar`` at the visited steps, increasing step order.
      kind: ``"ddim"`` (chapter-7 eta convention) or ``"ddpm_small"`` / ``"ddpm_large"``
        (ancestral with beta tilde or beta; these visit every step of the schedule).
      eta: DDIM eta.

    Returns:
      ``(mean, var)`` per dimension, starting from ``x_T ~ N(0, 1)``.
    """
    a_all = np.asarray(alpha_bar_steps, np.float64)
    a_prev_all = np.concatenate([[1.0], a_all[:-1]])
    m, v = np.zeros_like(mu), np.ones_like(mu)
    for k in range(len(a_all) - 1, -1, -1):
        a, ap = a_all[k], a_prev_all[k]
        gain_x0 = np.sqrt(a) * sigma2 / (a * sigma2 + 1 - a)  # x0_hat = mu + gain_x0 (x - sqrt(a) mu)
        gain_eps = np.sqrt(1 - a) / (a * sigma2 + 1 - a)  # eps_hat = gain_eps (x - sqrt(a) mu)
        if kind == "ddim":
            noise_var = eta**2 * (1 - ap) / (1 - a) * (1 - a / ap)
            c_eps = np.sqrt(max(1 - ap - noise_var, 0.0))
            A = np.sqrt(ap) * gain_x0 + c_eps * gain_eps
            B = np.sqrt(ap) * (mu - gain_x0 * np.sqrt(a) * mu) - c_eps * gain_eps * np.sqrt(a) * mu
        else:
            beta = 1 - a / ap
            c1, c2 = np.sqrt(ap) * beta / (1 - a), np.sqrt(1 - beta) * (1 - ap) / (1 - a)
            A = c1 * gain_x0 + c2
            B = c1 * (mu - gain_x0 * np.sqrt(a) * mu)
            small = beta * (1 - ap) / (1 - a)
            noise_var = 0.0 if k == 0 else (small if kind == "ddpm_small" else beta)
        m, v = A * m + B, A * A * v + noise_var
    return m, v
