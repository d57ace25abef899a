"""Tests for gensynth.diffusion.sde: SDE coefficients vs marginals (spec ch. 7, 10.2 item 13)."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import VESDE, VPSDE


def _euler_maruyama(key, sde, x0, t_end, num_steps):
    """Forward Euler-Maruyama with coefficients at interval midpoints; returns x at t_end."""
    dt = t_end / num_steps

    def body(i, x):
        t = jnp.full((x.shape[0],), (i + 0.5) * dt)
        drift, g = sde.sde(x, t)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape)
        return x + drift * dt + g[:, None] * jnp.sqrt(dt) * z

    return jax.lax.fori_loop(0, num_steps, body, x0)


def test_ve_forward_variance_grows_as_sigma_squared():
    # Item 13: with g = sqrt(d sigma^2/dt) the variance grows by sigma_1^2 - sigma_0^2; the
    # chapter's printed sqrt(sigma sigma') would give half of that (50% off, >> 4 SE = 2.8%).
    sde = VESDE(sigma_min=0.01, sigma_max=2.0)
    n = 40000
    x0 = 0.5 * jax.random.normal(jax.random.key(1), (n, 1))
    x1 = jax.jit(_euler_maruyama, static_argnums=(3, 4))(jax.random.key(2), sde, x0, 1.0, 200)
    growth = float(jnp.var(x1) - jnp.var(x0))
    expected = 2.0**2 - 0.01**2
    se = np.sqrt(2.0 / n) * (expected + 0.25)  # SE of the variance of x1 (x0 is shared)
    assert abs(growth - expected) < 4 * se, (growth, expected)


def test_vp_forward_matches_marginal_prob():
    sde = VPSDE()
    n, t_end = 20000, 0.4
    x0 = jnp.broadcast_to(jnp.array([1.0, -0.5]), (n, 2))
    xt = jax.jit(_euler_maruyama, static_argnums=(3, 4))(jax.random.key(3), sde, x0, t_end, 250)
    mean, std = sde.marginal_prob(x0[:1], jnp.array([t_end]))
    se_mean = float(std[0]) / np.sqrt(n)
    np.testing.assert_allclose(jnp.mean(xt, 0), mean[0], atol=5 * se_mean)
    np.testing.assert_allclose(jnp.var(xt, 0), float(std[0]) ** 2, rtol=5 * np.sqrt(2.0 / n))


def test_scale_sigma_consistent_with_marginal_prob():
    t = jnp.array([1e-3, 0.3, 1.0])
    for sde in (VESDE(0.01, 50.0), VPSDE()):
        s, sigma = sde.scale_sigma(t)
        mean, std = sde.marginal_prob(jnp.ones((3, 1)), t)
        np.testing.assert_allclose(s * sigma, std, rtol=1e-5)
        np.testing.assert_allclose(mean[:, 0], s, rtol=1e-6)
    s, _ = VPSDE().scale_sigma(t)
    np.testing.assert_allclose(s**2, np.exp(-0.5 * t**2 * 19.9 - 0.1 * t), rtol=1e-5)


def test_discretize_matches_marginals():
    t, t_next = jnp.array([0.8, 0.01]), jnp.array([0.7, 0.0])
    ve = VESDE(0.01, 50.0)
    f, G = ve.discretize(jnp.ones((2, 3)), t, t_next)
    assert jnp.all(f == 0)
    np.testing.assert_allclose(G**2, [ve.sigma(0.8) ** 2 - ve.sigma(0.7) ** 2, ve.sigma(0.01) ** 2], rtol=1e-5)
    vp = VPSDE()
    x = jnp.ones((2, 3))
    f, G = vp.discretize(x, t, t_next)
    alpha = np.exp(vp.log_alpha_bar(t) - vp.log_alpha_bar(t_next))
    np.testing.assert_allclose((x + f)[:, 0], np.sqrt(alpha), rtol=1e-6)  # x_t = sqrt(alpha) x_{t_next} + ...
    np.testing.assert_allclose(G**2, 1 - alpha, rtol=1e-5)
    np.testing.assert_allclose(vp.discrete_alpha(t, t_next), alpha, rtol=1e-6)
    assert jnp.all(ve.discrete_alpha(t, t_next) == 1.0)


def test_prior_sampling_scale():
    x = VESDE(0.01, 50.0).prior_sampling(jax.random.key(0), (20000, 2))
    np.testing.assert_allclose(jnp.std(x), 50.0, rtol=0.02)
    x = VPSDE().prior_sampling(jax.random.key(0), (20000, 2))
    np.testing.assert_allclose(jnp.std(x), 1.0, rtol=0.02)
