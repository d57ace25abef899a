"""Tests for gensynth.diffusion.dpm_solver: DPM-Solver++ against an independent float64 reference,
the DDIM identity, and the exact output distribution on Gaussian data.

With the optimal denoiser of Gaussian data every sampler step is affine in ``x`` per dimension,
so a deterministic sampler maps ``x_T`` to ``c + G x_T``; two runs (``x_T = 0`` and ``1``) give the
exact mean ``c`` and variance ``G^2`` of its samples for ``x_T ~ N(0, I)``, without Monte Carlo.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.diffusion import (
    ddim_sample,
    dpm_solver_pp_sample,
    dpm_solver_pp_step,
    eps_to_x0,
    gaussian_eps_fn,
    half_log_snr,
    linear_betas,
    logsnr_timesteps,
    spaced_timesteps,
    v_target,
    vp_s_sigma,
    vp_schedule,
)

from .testkit import MU, N_SAMPLES, SIGMA, assert_moments, chain_moments

BETAS = linear_betas(1000)
ALPHA_BAR = np.cumprod(1.0 - BETAS)  # float64


# ---------------------------------------------------------------- float64 reference


def _lam(a):
    return 0.5 * np.log(a / (1.0 - a))


def _phi(g, k, rho):
    """``int_0^h rho e^{rho (u - h)} u^k / k! du / h^k`` (``g = rho h``) by Gauss-Legendre quadrature:
    the weight of ``h^k D^(k)`` in the exact integral, computed without the closed form."""
    h = g / rho
    nodes, weights = np.polynomial.legendre.leggauss(40)
    u = 0.5 * h * (nodes + 1.0)
    integrand = rho * np.exp(rho * (u - h)) * u**k / np.prod(np.arange(1, k + 1))
    return 0.5 * h * np.sum(weights * integrand) / h**k


def reference_step(x, D, lams, a, a_prev, order, rho):
    """One DPM-Solver++ step in the papers' form, float64, without noise.

    ``D[j]`` is the x0 estimate at ``lams[j]`` (``j = 0`` current). Order 2 is Algorithm 2 of
    DPM-Solver++ (``rho = 2``: its SDE form); order 3 integrates the quadratic through three
    estimates, its derivatives found by solving the Vandermonde system in ``u = (lambda - lambda_s)/h``.
    """
    si_s, al_t, si_t = np.sqrt(1 - a), np.sqrt(a_prev), np.sqrt(1 - a_prev)
    h = _lam(a_prev) - _lam(a)
    out = si_t / si_s * np.exp(-(rho - 1) * h) * x - al_t * np.expm1(-rho * h) * D[0]
    if order == 2:
        r = (_lam(a) - lams[1]) / h
        out = out - al_t * np.expm1(-rho * h) * (D[0] - D[1]) / (2 * r)
    elif order == 3:
        u = (np.asarray(lams[:3]) - _lam(a)) / h
        vander = np.stack([np.ones(3), u, u**2 / 2], 1)  # p(u) = b0 + b1 u + b2 u^2 / 2
        b = np.tensordot(np.linalg.inv(vander), np.stack(D[:3]), 1)  # b1 = h D', b2 = h^2 D''
        out = out + al_t * (_phi(rho * h, 1, rho) * b[1] + _phi(rho * h, 2, rho) * b[2])
    return out


def reference_chain(alpha_bar_steps, order, rho=1, mu=MU, sigma2=SIGMA**2):
    """Exact affine law of the whole sampler with the optimal x0 predictor of N(mu, diag(sigma2)).

    Returns ``(c [d], G [d, K + 1])``: the output is ``c + G w`` with ``w = (x_T, z_1, ..., z_K)``
    independent standard normals (``G[:, 0]`` is the map of ``x_T``; the noise columns are zero
    for the ODE). Step ``i`` has order ``min(order, i + 1, max(K - 1 - i, 1))``.
    """
    a_steps = np.asarray(alpha_bar_steps, np.float64)
    K = len(a_steps)
    c, G = np.zeros_like(mu), np.zeros((len(mu), K + 1))
    G[:, 0] = 1.0
    Dc, DG, lams = [], [], []
    for i in range(K):
        k = K - 1 - i
        a, a_prev = a_steps[k], a_steps[k - 1] if k > 0 else 1.0
        gain = np.sqrt(a) * sigma2 / (a * sigma2 + 1 - a)  # x0_hat = mu + gain (x - sqrt(a) mu)
        Dc.insert(0, mu + gain * (c - np.sqrt(a) * mu))
        DG.insert(0, gain[:, None] * G)
        lams.insert(0, _lam(a))
        if a_prev == 1.0:  # lambda = inf: the first-order step returns the estimate
            c, G = Dc[0], DG[0]
            continue
        step_order = min(order, i + 1, max(K - 1 - i, 1))
        c = reference_step(c, Dc, lams, a, a_prev, step_order, rho)
        G = reference_step(G, DG, lams, a, a_prev, step_order, rho)
        if rho == 2:
            G[:, i + 1] += np.sqrt(1 - a_prev) * np.sqrt(-np.expm1(-2 * (_lam(a_prev) - _lam(a))))
    return c, G


def exact_limit(tau, mu=MU, sigma2=SIGMA**2):
    """Mean and std of the limit of every sampler here as the steps shrink: the exact probability-flow
    map from ``tau[-1]`` to ``tau[0]`` (``x - sqrt(a) mu`` scales with the marginal std) followed by
    the exact last denoising step to the clean data."""
    a0, aT = ALPHA_BAR[tau[0]], ALPHA_BAR[tau[-1]]
    std0, stdT = np.sqrt(a0 * sigma2 + 1 - a0), np.sqrt(aT * sigma2 + 1 - aT)
    gain = np.sqrt(a0) * sigma2 / (std0 * stdT)
    return mu - gain * np.sqrt(aT) * mu, gain


def affine_map(sampler, eps_fn, schedule, **kwargs):
    """``(c, G)`` of a deterministic sampler on 2-D data from the runs ``x_T = 0`` and ``x_T = 1``."""
    x_T = jnp.stack([jnp.zeros(2), jnp.ones(2)])
    out = sampler(jax.random.key(0), eps_fn, schedule, None, x_T=x_T, clip_x0=False, **kwargs)
    out = np.asarray(out, np.float64)
    return out[0], out[1] - out[0]


def w2(c, G, mean, std):
    """W2 distance between N(c, diag(G^2)) and N(mean, diag(std^2))."""
    return float(np.sqrt(np.sum((c - mean) ** 2 + (np.abs(G) - std) ** 2)))


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize(("order", "stochastic"), [(2, False), (3, False), (2, True)])
def test_step_matches_float64_formula(order, stochastic):
    # Arbitrary (non-Gaussian) estimates: the library's DDIM step + correction equals the papers'
    # exponential-integrator form, with the integrals of the reference computed by quadrature.
    with jax.enable_x64(True):
        x, d0, d1, d2 = np.random.default_rng(0).normal(size=(4, 3, 5))
        a, a_prev, lams = 0.3, 0.6, [_lam(0.3), _lam(0.2), _lam(0.12)]
        eps = (x - np.sqrt(a) * d0) / np.sqrt(1 - a)
        key = jax.random.key(1)
        history, lambda_prev = jnp.asarray(np.stack([d1, d2])), jnp.asarray(lams[1:])
        got = dpm_solver_pp_step(
            key, jnp.asarray(d0), jnp.asarray(eps), history, lambda_prev, a, a_prev, order=order, stochastic=stochastic
        )
        want = reference_step(x, [d0, d1, d2], lams, a, a_prev, order, 2 if stochastic else 1)
        if stochastic:  # the noise of ddim_step with eta = 1, drawn from the same key
            z = np.asarray(jax.random.normal(key, x.shape, jnp.float64))
            want = want + np.sqrt(1 - a_prev) * np.sqrt(-np.expm1(-2 * (_lam(a_prev) - _lam(a)))) * z
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("order", "grid", "K"), [(2, "time", 6), (3, "logsnr", 12)])
def test_whole_chain_matches_float64_reference(order, grid, K):
    # Warm-up, lower-order final steps, step indexing and the x0 history, on Gaussian data.
    with jax.enable_x64(True):
        s = vp_schedule(BETAS)
        eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
        tau = spaced_timesteps(1000, K) if grid == "time" else logsnr_timesteps(s, K)
        c, G = affine_map(dpm_solver_pp_sample, eps_fn, s, timesteps=tau, order=order)
    c_ref, G_ref = reference_chain(ALPHA_BAR[tau], order)
    np.testing.assert_allclose(c, c_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(G, G_ref[:, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("stochastic", [False, True])
def test_first_order_is_ddim_bit_for_bit(stochastic):
    # DPM-Solver++(1) is DDIM with eta = 0 in the x0 formulation; SDE-DPM-Solver++(1) is DDIM with
    # eta = 1 (DDPM ancestral), drawing the same noise from the same key.
    s = vp_schedule(BETAS)
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
    key = jax.random.key(2)
    dpm = dpm_solver_pp_sample(key, eps_fn, s, (64, 2), num_steps=10, order=1, stochastic=stochastic)
    ddim = ddim_sample(key, eps_fn, s, (64, 2), num_steps=10, eta=float(stochastic))
    np.testing.assert_array_equal(dpm, ddim)


def test_2m_beats_ddim_at_20_steps():
    # Exact W2 distance to the data Gaussian (float32 runs). Observed: DDIM 0.103, 2M 0.042; the
    # floor of every sampler here (prior mismatch and the last denoising step) is 0.0018.
    s = vp_schedule(BETAS)
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
    errors = {}
    for name, sampler, kw in [("ddim", ddim_sample, {}), ("2m", dpm_solver_pp_sample, {"order": 2})]:
        c, G = affine_map(sampler, eps_fn, s, num_steps=20, **kw)
        errors[name] = w2(c, G, MU, SIGMA)
    assert errors["2m"] <= 0.05, errors
    assert errors["2m"] < 0.5 * errors["ddim"], errors


@pytest.mark.parametrize(("order", "low", "high"), [(2, 3.5, 5.0), (3, 6.0, np.inf)])
def test_convergence_order(order, low, high):
    # Discretisation error (W2 to the exact limit of the chain) on steps uniform in lambda, in
    # float64: doubling K (41 -> 81) halves the lambda step. Observed ratios: 4.1 for 2M (order 2:
    # 4), 12.0 for 3M (order 3: 8; still pre-asymptotic); from K = 21 to 41: 3.8 and 16.9.
    with jax.enable_x64(True):
        s = vp_schedule(BETAS)
        eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
        errors = []
        for K in (41, 81):
            tau = logsnr_timesteps(s, K)
            c, G = affine_map(dpm_solver_pp_sample, eps_fn, s, timesteps=tau, order=order)
            errors.append(w2(c, G, *exact_limit(tau)))
    assert low < errors[0] / errors[1] < high, errors


def test_sde_2m_moments_match_reference_and_beat_ancestral():
    # Monte Carlo moments of SDE-DPM-Solver++(2M) at K = 50 equal the exact ones of the float64
    # reference within 5 SE; those are within 5% of the data variance (+2% and +5%) where DDIM
    # with eta = 1 (DDPM ancestral) is 29% and 16% low.
    s = vp_schedule(BETAS)
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)
    tau = spaced_timesteps(1000, 50)
    x = dpm_solver_pp_sample(jax.random.key(3), eps_fn, s, (N_SAMPLES, 2), num_steps=50, stochastic=True, clip_x0=False)
    c, G = reference_chain(ALPHA_BAR[tau], 2, rho=2)
    var = np.sum(G**2, 1)
    assert_moments(x, c, var)
    np.testing.assert_allclose(var, SIGMA**2, rtol=0.06)
    _, var_ancestral = chain_moments(ALPHA_BAR[tau], kind="ddim", eta=1.0)
    assert np.all(np.abs(var_ancestral / SIGMA**2 - 1) > 0.15)


def test_v_prediction_with_learned_variance_matches_eps():
    s = vp_schedule(linear_betas(200))
    eps_fn = gaussian_eps_fn(MU, SIGMA**2, s)

    def v_fn(x, t):  # a v-predicting network with a (2C-channel) learned-variance half
        eps = eps_fn(x, t)
        v = v_target(eps, eps_to_x0(eps, x, *vp_s_sigma(s.alpha_bar[t])), s.alpha_bar[t])
        return jnp.concatenate([v, jnp.zeros_like(v)], -1)

    key = jax.random.key(4)
    from_eps = dpm_solver_pp_sample(key, eps_fn, s, (256, 2), num_steps=15, order=3)
    from_v = dpm_solver_pp_sample(key, v_fn, s, (256, 2), num_steps=15, order=3, prediction="v")
    np.testing.assert_allclose(from_v, from_eps, atol=1e-4)


def test_images_under_vmap():
    s = vp_schedule(linear_betas(100))
    eps_fn = gaussian_eps_fn(0.0, 0.25, s)
    keys = jax.random.split(jax.random.key(5), 3)
    images = jax.vmap(lambda k: dpm_solver_pp_sample(k, eps_fn, s, (2, 8, 8, 1), num_steps=6))(keys)
    assert images.shape == (3, 2, 8, 8, 1) and bool(jnp.all(jnp.isfinite(images)))
    assert not np.allclose(images[0], images[1])  # one prior draw per key


def test_sampler_inside_jit_over_network_state():
    # As for DDIM: parameters are arguments of the user's jit, and the sampler's jit is inlined.
    s = vp_schedule(linear_betas(100))
    graphdef, state = nnx.split(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))

    @jax.jit
    def sample(key, state):
        model = nnx.merge(graphdef, state)
        return dpm_solver_pp_sample(key, lambda x, t: model(x), s, (8, 2), num_steps=5, order=3)

    x = sample(jax.random.key(0), state)
    assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))
    other = sample(jax.random.key(0), jax.tree.map(jnp.zeros_like, state))
    assert not np.allclose(other, x)
    assert sample._cache_size() == 1  # new parameters, same compiled program


def test_logsnr_timesteps_are_distinct_and_uniform_in_lambda():
    s = vp_schedule(BETAS)
    tau = logsnr_timesteps(s, 8)
    assert tau[0] == 0 and tau[-1] == 999 and np.all(np.diff(tau) > 0)
    lam = np.asarray(half_log_snr(ALPHA_BAR[tau]))
    step = (lam[0] - lam[-1]) / 7
    np.testing.assert_allclose(-np.diff(lam), step, rtol=0.1)  # rounding to integer steps
    crowded = logsnr_timesteps(s, 100)  # lambda is steep near t = 0: rounding would repeat steps
    assert np.all(np.diff(crowded) > 0) and crowded[0] == 0 and crowded[-1] == 999
    np.testing.assert_array_equal(logsnr_timesteps(s, 1000), np.arange(1000))
    with pytest.raises(ValueError, match="num_steps"):
        logsnr_timesteps(s, 0)


def test_bad_options_are_clear_errors():
    s = vp_schedule(linear_betas(100))
    eps_fn = gaussian_eps_fn(0.0, 1.0, s)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="order"):
        dpm_solver_pp_sample(key, eps_fn, s, (4, 2), num_steps=5, order=4)
    with pytest.raises(ValueError, match="stochastic"):
        dpm_solver_pp_sample(key, eps_fn, s, (4, 2), num_steps=5, order=3, stochastic=True)
    with pytest.raises(ValueError, match="not both"):
        dpm_solver_pp_sample(key, eps_fn, s, (4, 2), num_steps=5, timesteps=[0, 50])
    with pytest.raises(ValueError, match="prediction"):
        dpm_solver_pp_sample(key, eps_fn, s, (4, 2), num_steps=5, prediction="score")
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="x0_prev"):
        dpm_solver_pp_step(key, x, x, x[None], jnp.zeros(1), 0.5, 0.6, order=2)
