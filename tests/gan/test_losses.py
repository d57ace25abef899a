"""Adversarial losses, gradient penalties and feature matching against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.gan import (
    ADVERSARIAL_LOSSES,
    bce_d_loss,
    bce_g_loss,
    feature_matching_loss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    r1_penalty,
    wgan_d_loss,
)


def softplus(v):
    return math.log1p(math.exp(v))


def test_bce_losses():
    real, fake = jnp.array([2.0, 0.0]), jnp.array([-1.0, 1.0])
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    expected_d = (softplus(-2.0) + softplus(0.0)) / 2 + (softplus(-1.0) + softplus(1.0)) / 2
    np.testing.assert_allclose(bce_d_loss(real, fake), expected_d, rtol=1e-6)
    np.testing.assert_allclose(bce_g_loss(fake), (softplus(1.0) + softplus(-1.0)) / 2, rtol=1e-6)
    # Non-saturating: the generator's gradient stays large where D confidently rejects the fake.
    assert float(jax.grad(lambda f: bce_g_loss(f))(jnp.array([-10.0]))[0]) < -0.99


def test_lsgan_losses():
    real, fake = jnp.array([0.5, 1.5]), jnp.array([0.5, -1.0])
    np.testing.assert_allclose(lsgan_d_loss(real, fake), (0.25 + 0.25) / 2 + (0.25 + 1.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(lsgan_g_loss(jnp.array([0.0, 2.0, 1.0])), 2.0 / 3.0, rtol=1e-6)


def test_hinge_and_wgan_losses():
    assert float(hinge_d_loss(jnp.full((2, 3, 3, 1), 2.0), jnp.full((2, 3, 3, 1), -2.0))) == 0.0
    np.testing.assert_allclose(hinge_d_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, -0.5])), 0.25 + 0.75, rtol=1e-6)
    fake = jnp.array([1.0, -3.0, 0.5])
    np.testing.assert_allclose(hinge_g_loss(fake), 0.5, rtol=1e-6)
    np.testing.assert_allclose(wgan_d_loss(jnp.array([2.0, 4.0]), fake), -0.5 - 3.0, rtol=1e-6)
    assert set(ADVERSARIAL_LOSSES) == {"bce", "lsgan", "hinge", "wgan"}


def test_gradient_penalty_of_linear_critics():
    real = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
    fake = jax.random.normal(jax.random.key(1), (3, 4, 4, 1))
    # D(x) = <w, x> per example: the gradient is w at every point, |w| = 3 -> (3 - 1)^2 = 4.
    w = jnp.zeros((4, 4, 1)).at[0, 0, 0].set(3.0)
    penalty = gradient_penalty(jax.random.key(2), lambda x: jnp.sum(x * w, axis=(1, 2, 3)), real, fake)
    np.testing.assert_allclose(penalty, 4.0, rtol=1e-5)
    # A patch critic D(x) = 0.25 x (one logit per pixel): grad of the summed map is 0.25 everywhere,
    # norm 0.25 * sqrt(16) = 1, so the penalty vanishes.
    np.testing.assert_allclose(gradient_penalty(jax.random.key(3), lambda x: 0.25 * x, real, fake), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(jax.random.key(0), lambda x: x, real, fake[:2])


def test_r1_penalty_hand_value():
    real = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    # D(x) = sum x^2 per example: grad 2x, |2x|^2 = 4 |x|^2 = (20, 4), mean 12.
    np.testing.assert_allclose(r1_penalty(lambda x: jnp.sum(x**2, axis=-1), real), 12.0, rtol=1e-6)


def test_feature_matching_loss():
    real = [jnp.zeros((2, 2)), jnp.ones((1, 3))]
    fake = [jnp.array([[1.0, -1.0], [3.0, 0.0]]), jnp.array([[1.0, 0.0, 4.0]])]
    # layer 1: mean |diff| = 5/4; layer 2: (0 + 1 + 3)/3 = 4/3.
    np.testing.assert_allclose(feature_matching_loss(real, fake, weights=[2.0, 3.0]), 2 * 1.25 + 3 * 4 / 3, rtol=1e-6)
    np.testing.assert_allclose(feature_matching_loss(real, fake, distance="l2"), 11 / 4 + 10 / 3, rtol=1e-6)
    # The real features are constants.
    grads = jax.grad(lambda r: feature_matching_loss(r, fake))(real)
    assert all(float(jnp.abs(g).sum()) == 0.0 for g in grads)
    with pytest.raises(ValueError, match="one entry per layer"):
        feature_matching_loss(real, fake, weights=[1.0])
