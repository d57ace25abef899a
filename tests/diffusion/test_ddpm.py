"""Tests for gensynth.diffusion.ddpm: ancestral sampling with the exact Gaussian denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.diffusion import (
    ddpm_sample,
    gaussian_eps_fn,
    linear_betas,
    spaced_timesteps,
    vp_schedule,
)

from .testkit import MU, N_SAMPLES, SIGMA, assert_moments, chain_moments

SCHEDULE = vp_schedule(linear_betas(1000))
EPS_FN = gaussian_eps_fn(MU, SIGMA**2, SCHEDULE)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_recovers_gaussian_data(variance):
    # The sample moments must equal the exact moments of the discrete chain (float64 recursion,
    # testkit.chain_moments) within 5 standard errors; that chain's own bias against the data
    # moments is its discretisation error, 2.5% (fixed_small under-disperses: beta tilde ignores
    # the posterior uncertainty of x0) or 0.6% (fixed_large) of the variance at T = 1000.
    x = ddpm_sample(jax.random.key(0), EPS_FN, SCHEDULE, (N_SAMPLES, 2), variance=variance, clip_x0=False)
    kind = "ddpm_small" if variance == "fixed_small" else "ddpm_large"
    mean, var = chain_moments(np.cumprod(1 - linear_betas(1000)), kind=kind)
    assert_moments(x, mean, var)
    np.testing.assert_allclose(mean, MU, atol=1e-4)
    np.testing.assert_allclose(var, SIGMA**2, rtol=0.03)


def test_respaced_ddpm_matches_its_chain():
    tau = spaced_timesteps(1000, 100)
    x = ddpm_sample(jax.random.key(1), EPS_FN, SCHEDULE, (N_SAMPLES, 2), num_steps=100, clip_x0=False)
    mean, var = chain_moments(np.cumprod(1 - linear_betas(1000))[tau], kind="ddpm_small")
    assert_moments(x, mean, var)


def test_learned_variance_endpoints_match_fixed_variances():
    # r = -1 is beta tilde and r = +1 is beta (Eq. 2.28), so a 2C-channel output with those
    # constants reproduces the fixed variances (same key, same noise).
    s = vp_schedule(linear_betas(50))
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
    key, shape = jax.random.key(2), (256, 2)

    def with_r(r):
        return lambda x, t: jnp.concatenate([eps_fn(x, t), jnp.full_like(x, r)], -1)

    small = ddpm_sample(key, eps_fn, s, shape, variance="fixed_small")
    large = ddpm_sample(key, eps_fn, s, shape, variance="fixed_large")
    np.testing.assert_allclose(ddpm_sample(key, with_r(-1.0), s, shape, variance="learned"), small, atol=1e-5)
    np.testing.assert_allclose(ddpm_sample(key, with_r(1.0), s, shape, variance="learned"), large, atol=1e-5)
    assert float(jnp.max(jnp.abs(small - large))) > 1e-2


def test_clip_x0_keeps_samples_in_range_and_bad_options_fail():
    s = vp_schedule(linear_betas(50))
    eps_fn = gaussian_eps_fn(jnp.array([0.95, -0.95]), jnp.array([0.3, 0.3]) ** 2, s)
    x = ddpm_sample(jax.random.key(3), eps_fn, s, (1024, 2))
    assert float(jnp.max(jnp.abs(x))) <= 1.0
    x_unclipped = ddpm_sample(jax.random.key(3), eps_fn, s, (1024, 2), clip_x0=False)
    assert float(jnp.max(jnp.abs(x_unclipped))) > 1.0
    with pytest.raises(ValueError, match="variance"):
        ddpm_sample(jax.random.key(0), eps_fn, s, (4, 2), variance="small")
    with pytest.raises(ValueError, match="learned"):
        ddpm_sample(jax.random.key(0), eps_fn, s, (4, 2), variance="learned")
    with pytest.raises(ValueError, match="shape"):
        ddpm_sample(jax.random.key(0), eps_fn, s, None)
