"""Adversarial losses on discriminator logits, and the gradient penalties and feature matching that
regularise them.

A discriminator output `D(x)` is a logit map of any shape `[B, ...]` (one logit per image, or one
per patch for a PatchGAN); every mean below runs over all its elements. Discriminator losses add a
real and a fake term (SPADE / pix2pix convention; LDM and DiffTumor halve the hinge loss, which only
rescales the discriminator's gradient).

References:
  Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014 (BCE; non-saturating G loss);
  Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017;
  Lim & Ye, "Geometric GAN", 2017, and Miyato et al., "Spectral Normalization for GANs", ICLR 2018
  (hinge); Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017 (WGAN-GP);
  Mescheder et al., "Which Training Methods for GANs do actually Converge?", ICML 2018 (R1);
  Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016, and Wang et al.,
  pix2pixHD, CVPR 2018 (feature matching).
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def _mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x.astype(jnp.float32))


def bce_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Binary cross-entropy discriminator loss `mean softplus(-D(x)) + mean softplus(D(G(z)))`,
    i.e. `-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))` (Eq. 13.2 negated), float32 scalar.

    >>> round(float(bce_d_loss(jnp.zeros(3), jnp.zeros(3))), 4)  # 2 log 2
    1.3863
    """
    return _mean(jax.nn.softplus(-real_logits.astype(jnp.float32))) + _mean(jax.nn.softplus(fake_logits))


def bce_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss `mean softplus(-D(G(z)))` = `-log sigmoid(D(G(z)))`."""
    return _mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def lsgan_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Least-squares discriminator loss `mean (D(x) - 1)^2 + mean D(G(z))^2`.

    >>> float(lsgan_d_loss(jnp.ones(2), jnp.zeros(2)))
    0.0
    """
    return _mean(jnp.square(real_logits.astype(jnp.float32) - 1.0)) + _mean(jnp.square(fake_logits.astype(jnp.float32)))


def lsgan_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Least-squares generator loss `mean (D(G(z)) - 1)^2` (brainSPADE's VAE, Eq. 1.1)."""
    return _mean(jnp.square(fake_logits.astype(jnp.float32) - 1.0))


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Hinge discriminator loss `mean ReLU(1 - D(x)) + mean ReLU(1 + D(G(z)))`.

    >>> float(hinge_d_loss(jnp.full(2, 2.0), jnp.full(2, -2.0)))
    0.0
    """
    return _mean(jax.nn.relu(1.0 - real_logits.astype(jnp.float32))) + _mean(
        jax.nn.relu(1.0 + fake_logits.astype(jnp.float32))
    )


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
    """Hinge (and WGAN) generator loss `-mean D(G(z))`."""
    return -_mean(fake_logits)


def wgan_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Wasserstein critic loss `mean D(G(z)) - mean D(x)`; pair with `gradient_penalty` (WGAN-GP)
    and `hinge_g_loss` as the generator loss."""
    return _mean(fake_logits) - _mean(real_logits)


def _per_example_grad_sq_norm(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """`|grad_x sum D(x)|^2` per example, float32 `[B]` (the sum runs over D's output map, so each
    example's gradient is that of its own outputs: examples do not interact in D)."""
    grads = jax.grad(lambda v: jnp.sum(d_fn(v).astype(jnp.float32)))(x)
    return jnp.sum(jnp.square(grads.astype(jnp.float32)).reshape(x.shape[0], -1), axis=-1)


def gradient_penalty(
    key: jax.Array, d_fn: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array
) -> jax.Array:
    """WGAN-GP penalty `mean_b (|grad D(x_hat_b)|_2 - 1)^2` at `x_hat = u x + (1 - u) G(z)`.

    u ~ U[0, 1] is drawn per example from `key`; the norm runs over all of an example's elements.
    Multiply by lambda (10 in the paper) and add to the critic loss.

    Args:
      key: PRNG key for the interpolation weights.
      d_fn: discriminator `[B, ...] -> [B, ...]` logits (examples must not interact: no batch norm).
      real: `[B, ...]` real samples.
      fake: `[B, ...]` generated samples (treated as constants).

    Returns:
      float32 scalar.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {real.shape} and {fake.shape}")
    u = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
    x_hat = (u * real + (1.0 - u) * jax.lax.stop_gradient(fake)).astype(real.dtype)
    norm = jnp.sqrt(_per_example_grad_sq_norm(d_fn, x_hat) + 1e-12)
    return jnp.mean(jnp.square(norm - 1.0))


def r1_penalty(d_fn: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
    """R1 penalty `mean_b |grad_x D(x_b)|_2^2` on real samples `[B, ...]`; multiply by gamma / 2
    and add to the discriminator loss. float32 scalar."""
    return jnp.mean(_per_example_grad_sq_norm(d_fn, real))


def feature_matching_loss(
    real_features: Sequence[jax.Array],
    fake_features: Sequence[jax.Array],
    *,
    weights: Sequence[float] | None = None,
    distance: str = "l1",
) -> jax.Array:
    """`sum_l w_l mean |F_l(x) - F_l(G(z))|` over discriminator layers l (pix2pixHD, SPADE).

    The real features are constants (stop-gradient): the loss trains the generator only.

    Args:
      real_features: per-layer activations of D on real data, each `[B, ...]`.
      fake_features: the same layers on generated data, same shapes.
      weights: w_l per layer (default 1 each).
      distance: "l1" (pix2pixHD, SPADE) or "l2" (squared error, as brainSPADE's text has it).

    Returns:
      float32 scalar.

    >>> float(feature_matching_loss([jnp.zeros(2)], [jnp.array([1.0, 3.0])]))
    2.0
    """
    if len(real_features) != len(fake_features):
        raise ValueError(f"real_features and fake_features must list the same layers, got "
                         f"{len(real_features)} and {len(fake_features)}")  # fmt: skip
    if distance not in ("l1", "l2"):
        raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")
    weights = [1.0] * len(real_features) if weights is None else list(weights)
    if len(weights) != len(real_features):
        raise ValueError(f"weights must have one entry per layer ({len(real_features)}), got {len(weights)}")
    total = jnp.zeros((), jnp.float32)
    for w, r, f in zip(weights, real_features, fake_features):
        if r.shape != f.shape:
            raise ValueError(f"feature shapes differ between real and fake: {r.shape} and {f.shape}")
        diff = jax.lax.stop_gradient(r.astype(jnp.float32)) - f.astype(jnp.float32)
        total = total + w * jnp.mean(jnp.abs(diff) if distance == "l1" else jnp.square(diff))
    return total


# (discriminator loss, generator loss) by the name a config uses.
ADVERSARIAL_LOSSES = {
    "bce": (bce_d_loss, bce_g_loss),
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "wgan": (wgan_d_loss, hinge_g_loss),
}
