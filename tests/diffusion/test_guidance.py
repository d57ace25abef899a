"""Tests for gensynth.diffusion.guidance (spec ch. 2, Sect. 6 items 9 and 11)."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import cfg_combine, drop_labels, make_cfg_model_fn


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
    guided = jax.jit(make_cfg_model_fn(model_fn, y, jnp.full((3,), 7), 2.0))(x, jnp.zeros(3, jnp.int32))
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
