"""Tests for gensynth.diffusion.pc: predictor-corrector sampling with the exact Gaussian score
(VE and VP) and the Langevin corrector's stationary variance (spec ch. 7, 10.2 item 14)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.diffusion import VESDE, VPSDE, gaussian_score_fn, langevin_step, pc_sample, tweedie_x0

from .testkit import MU, N_SAMPLES, SIGMA, assert_moments


@pytest.mark.parametrize(
    ("sde", "t_eps", "corrector_first"),
    [(VESDE(0.01, 50.0), 1e-5, True), (VPSDE(), 1e-3, False)],
    ids=["ve-corrector-first", "vp-predictor-first"],
)
def test_pc_recovers_gaussian_data(sde, t_eps, corrector_first):
    # Allowance beyond 5 SE: 2% of the variance for the first-order predictor (N = 500) and the
    # Langevin bias, which for N(m, v) data is a relative (snr^2 |z|^2/|g|^2 per-dim)-sized
    # inflation of the small-variance dimension (measured with 2e5 samples: <= 0.8% at snr =
    # 0.05; ~5% at score-MRI's snr = 0.16, hence the smaller snr here).
    score_fn = gaussian_score_fn(MU, SIGMA**2, sde)
    x = pc_sample(
        jax.random.key(0), score_fn, sde, (N_SAMPLES, 2), num_steps=500, n_corrector=1, snr=0.05,
        t_eps=t_eps, corrector_first=corrector_first,
    )  # fmt: skip
    assert_moments(x, MU, SIGMA**2, var_allow=0.02 * SIGMA**2)


def test_langevin_corrector_keeps_gaussian_variance():
    # Item 14: Langevin with the exact score of N(0, s^2 I) and the SNR step rule. With batch-mean
    # norms the step is eps = 2 r^2 s^4 / v for current variance v, and the ULA update
    # x <- (1 - eps/s^2) x + sqrt(2 eps) z has the fixed point v = s^2 (1 + r^2): within MC error
    # of s^2 (2.6% at r = 0.16). Started from variance 4 s^2 it must relax there in 100 steps
    # (contraction ~(1 - 2 r^2)^2 per step); a sqrt(eps) noise scale would settle near s^2 / 2.
    s2, snr, n, d = 0.7**2, 0.16, 16384, 4
    sde = VESDE(0.01, 50.0)
    score_fn = lambda x, t: -x / s2  # noqa: E731
    t = jnp.full((n,), 0.5)

    @jax.jit
    def run(key, x):
        body = lambda i, x: langevin_step(jax.random.fold_in(key, i), score_fn, sde, x, t, t, snr)[0]  # noqa: E731
        return jax.lax.fori_loop(0, 100, body, x)

    for scale in (1.0, 2.0):
        x = run(jax.random.key(1), scale * np.sqrt(s2) * jax.random.normal(jax.random.key(2), (n, d)))
        flat = np.asarray(x).reshape(-1, 1)
        assert_moments(flat, 0.0, s2 * (1 + snr**2))
        assert abs(flat.var() / s2 - 1) < 0.05


def test_denoise_last_step_is_tweedie_and_options():
    # One VE predictor step from t = 1 to the data with denoise=True is x + sigma_max^2 score,
    # i.e. Tweedie's estimate, whatever the key.
    sde = VESDE(0.01, 5.0)
    score_fn = gaussian_score_fn(MU, SIGMA**2, sde)
    x_T = 5.0 * jax.random.normal(jax.random.key(3), (64, 2))
    out = [pc_sample(jax.random.key(k), score_fn, sde, None, num_steps=1, n_corrector=0, x_T=x_T) for k in (4, 5)]
    np.testing.assert_array_equal(out[0], out[1])
    expected = tweedie_x0(x_T, score_fn(x_T, jnp.ones(64)), 1.0, 5.0)
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="num_steps"):
        pc_sample(jax.random.key(0), score_fn, sde, (4, 2), num_steps=0)
    with pytest.raises(ValueError, match="n_corrector"):
        pc_sample(jax.random.key(0), score_fn, sde, (4, 2), n_corrector=-1)
