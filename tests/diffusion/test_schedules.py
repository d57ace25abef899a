"""Tests for gensynth.diffusion.schedules: reference values of spec ch. 2, closed forms, respacing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.diffusion import (
    cosine_betas,
    linear_betas,
    respace,
    spaced_timesteps,
    ve_sigma,
    ve_sigmas,
    vp_schedule,
)


def test_linear_schedule_reference_values():
    s = vp_schedule(linear_betas(1000))
    ab = np.asarray(s.alpha_bar, np.float64)
    assert np.all(np.diff(ab) < 0) and ab[0] < 1 and ab[-1] > 0
    # Spec ch. 2, Sect. 2.2 and 2.4 (book t = code t + 1).
    np.testing.assert_allclose(ab[499], 0.0785872, rtol=1e-5)
    np.testing.assert_allclose(ab[999], 4.03583e-5, rtol=1e-5)
    pv = np.asarray(s.posterior_variance, np.float64)
    assert pv[0] == 0.0
    np.testing.assert_allclose(pv[1], 5.45319e-5, rtol=1e-5)
    np.testing.assert_allclose(pv[999], 0.0199999835, rtol=1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(s.posterior_log_variance_clipped[:2])), [pv[1], pv[1]], rtol=1e-6)
    assert s.alpha_bar_prev[0] == 1.0
    np.testing.assert_allclose(s.alpha_bar_prev[1:], s.alpha_bar[:-1])


def test_linear_betas_rescale_with_T():
    np.testing.assert_allclose(linear_betas(250)[[0, -1]], [4e-4, 0.08])


def test_cosine_matches_closed_form():
    T, s = 1000, 0.008
    ab = np.asarray(vp_schedule(cosine_betas(T)).alpha_bar, np.float64)
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    u = np.arange(1, T + 1)
    unclipped = cosine_betas(T) < 0.999  # the last steps are clipped at max_beta
    assert unclipped[:990].all() and not unclipped[-1]
    np.testing.assert_allclose(ab[:990], (f(u) / f(0))[:990], rtol=1e-5)


def test_posterior_coefficients_corrected_eq_2_13():
    b = linear_betas(1000)
    s = vp_schedule(b)
    ab = np.cumprod(1 - b)
    abp = np.concatenate([[1.0], ab[:-1]])
    np.testing.assert_allclose(s.posterior_mean_coef1, np.sqrt(abp) * b / (1 - ab), rtol=1e-5)
    # sqrt(alpha_t), not sqrt(alpha_bar_t) (spec ch. 2, erratum 1).
    np.testing.assert_allclose(s.posterior_mean_coef2, np.sqrt(1 - b) * (1 - abp) / (1 - ab), rtol=1e-5)


def test_respace_keeps_alpha_bar_and_maps_timesteps():
    s = vp_schedule(linear_betas(1000))
    tau = spaced_timesteps(1000, 50)
    r = respace(s, tau[::-1])  # any order
    np.testing.assert_array_equal(r.timesteps, tau)
    np.testing.assert_allclose(r.alpha_bar, np.asarray(s.alpha_bar)[tau], rtol=1e-6)
    # beta'_k = 1 - ab_k / ab_{k-1} rebuilds the same cumulative product.
    np.testing.assert_allclose(np.cumprod(1 - np.asarray(r.betas, np.float64)), r.alpha_bar, rtol=1e-5)
    full = respace(s, np.arange(1000))
    np.testing.assert_allclose(full.betas, s.betas, rtol=1e-3)


def test_respace_works_under_jit_and_rejects_bad_steps():
    s = vp_schedule(linear_betas(100))
    r = jax.jit(lambda sch: respace(sch, (0, 50, 99)))(s)
    np.testing.assert_allclose(r.alpha_bar, s.alpha_bar[jnp.array([0, 50, 99])])
    with pytest.raises(ValueError, match="distinct"):
        respace(s, [0, 5, 5])
    with pytest.raises(ValueError, match="distinct"):
        respace(s, [0, 100])


def test_spaced_timesteps():
    np.testing.assert_array_equal(spaced_timesteps(1000, 4), [0, 333, 666, 999])
    np.testing.assert_array_equal(spaced_timesteps(1000, 50, "uniform")[[0, 1, -1]], [0, 20, 980])
    with pytest.raises(ValueError, match="num_steps"):
        spaced_timesteps(10, 11)


def test_ve_sigmas_geometric():
    sig = ve_sigmas(5, 0.01, 100.0)
    np.testing.assert_allclose(sig, [0.01, 0.1, 1.0, 10.0, 100.0], rtol=1e-12)
    np.testing.assert_allclose(ve_sigma(jnp.array([0.0, 0.5, 1.0]), 0.01, 100.0), [0.01, 1.0, 100.0], rtol=1e-5)


def test_vp_schedule_rejects_bad_betas():
    with pytest.raises(ValueError, match="betas"):
        vp_schedule(np.array([0.1, 1.5]))
