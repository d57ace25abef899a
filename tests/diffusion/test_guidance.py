"""Tests for gensynth.diffusion.guidance (spec ch. 2, Sect. 6 items 9-11)."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import (
    cfg_combine,
    classifier_guided_mean,
    drop_labels,
    linear_betas,
    make_cfg_model_fn,
    make_classifier_guided_eps_fn,
    vp_schedule,
)


def test_cfg_combine_conventions():
    e_c, e_u = jax.random.normal(jax.random.key(0), (2, 4, 8, 8, 3))
    np.testing.assert_array_equal(cfg_combine(e_c, e_u, 1.0), e_c)  # s = 1: exactly conditional
    np.testing.assert_allclose(cfg_combine(e_c, e_u, 0.0), e_u, atol=1e-6)  # s = 0: unconditional
    for s in (1.5, 3.0):
        w = s - 1.0  # book convention
        np.testing.assert_allclose(cfg_combine(e_c, e_u, s), (1 + w) * e_c - w * e_u, atol=1e-5)
        np.testing.assert_allclose(cfg_combine(e_c, e_u, s), e_u + s * (e_c - e_u), atol=1e-5)


def test_make_cfg_model_fn_batches_and_keeps_conditional_variance():
    calls = []

    def model_fn(x, t, y):  # eps half depends on the label, variance half on the label too
        calls.append(x.shape[0])
        y = y.astype(x.dtype)[:, None, None, None]
        return jnp.concatenate([x + y, 10 * y + jnp.zeros_like(x)], -1)

    x = jax.random.normal(jax.random.key(1), (3, 4, 4, 1))
    y = jnp.array([1, 2, 3])
    guided = jax.jit(make_cfg_model_fn(model_fn, y, 7, 2.0))(x, jnp.zeros(3, jnp.int32))
    assert calls == [6]  # one network call on the doubled batch
    eps_c, eps_u = x + y[:, None, None, None], x + 7.0
    np.testing.assert_allclose(guided[..., :1], eps_c + (eps_c - eps_u), rtol=1e-6)
    np.testing.assert_allclose(guided[..., 1:], 10.0 * jnp.broadcast_to(y[:, None, None, None], x.shape))


def test_drop_labels_rate_and_null():
    n, p = 100_000, 0.2
    y = jnp.arange(n) % 5
    dropped = drop_labels(jax.random.key(2), y, p, 5)
    frac = float(jnp.mean(dropped == 5))
    assert abs(frac - p) < 0.01  # SE = 0.0013
    np.testing.assert_array_equal(jnp.where(dropped == 5, y, dropped), y)  # kept ones unchanged
    maps = jnp.ones((4000, 2, 2, 8))  # semantic maps: null is the all-zero map, per example
    out = drop_labels(jax.random.key(3), maps, p, 0.0)
    per_example = out.reshape(4000, -1)
    assert jnp.all(jnp.all(per_example == 0, 1) | jnp.all(per_example == 1, 1))
    assert abs(float(jnp.mean(per_example[:, 0] == 0)) - p) < 0.03


def test_classifier_guidance_with_linear_log_classifier():
    # Item 10: for log p(y | x) = a^T x the guided mean shifts by exactly g Sigma a; the eps form
    # shifts the noise prediction by -sqrt(1 - alpha_bar) g a.
    a = jnp.array([0.5, -2.0, 1.0])
    mean = jax.random.normal(jax.random.key(4), (2, 3))
    log_var = jnp.log(jnp.array([0.01, 0.2]))
    grad = jax.grad(lambda x: jnp.sum(x @ a))(mean)
    shifted = classifier_guided_mean(mean, log_var, grad, 3.0)
    np.testing.assert_allclose(shifted - mean, 3.0 * jnp.exp(log_var)[:, None] * a, rtol=1e-6)
    s = vp_schedule(linear_betas(1000))
    eps_fn = lambda x, t: 0.1 * x  # noqa: E731
    guided = make_classifier_guided_eps_fn(eps_fn, lambda x, t: x @ a, s, 2.0)
    t = jnp.array([10, 900])
    expected = 0.1 * mean - jnp.sqrt(1 - s.alpha_bar[t])[:, None] * 2.0 * a
    np.testing.assert_allclose(jax.jit(guided)(mean, t), expected, rtol=1e-5)
