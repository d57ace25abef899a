"""Losses of first-stage autoencoders: reconstruction (L1, L2, focal), KL to N(0, I), VQ terms.

All take channels-last arrays `[B, *S, C]` and return float32 scalars averaged as stated.
Adversarial and perceptual terms live in `gensynth.gan.losses` and `gensynth.models.perceptual`.
"""

import jax
import jax.numpy as jnp


def _check_same_shape(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def l1_loss(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """mean |x - x_hat| over all elements (float32 scalar); `x`, `x_hat` of one shape.

    >>> float(l1_loss(jnp.zeros(4), jnp.array([1.0, -1.0, 2.0, 0.0])))
    1.0
    """
    _check_same_shape("x", x, "x_hat", x_hat)
    return jnp.mean(jnp.abs(x.astype(jnp.float32) - x_hat.astype(jnp.float32)))


def l2_loss(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """mean (x - x_hat)^2 over all elements (float32 scalar); Eq. 13.1's reconstruction term.

    >>> float(l2_loss(jnp.zeros(2), jnp.array([1.0, 3.0])))
    5.0
    """
    _check_same_shape("x", x, "x_hat", x_hat)
    return jnp.mean(jnp.square(x.astype(jnp.float32) - x_hat.astype(jnp.float32)))


def focal_loss(target: jax.Array, logits: jax.Array, *, gamma: float = 2.0) -> jax.Array:
    """Focal loss with soft targets over the channel axis (brainSPADE's label-map VAE, Eq. 1.1).

    .. math::
      FL = -\\frac{1}{N} \\sum_{v} \\sum_c s_{v,c} (1 - \\hat s_{v,c})^\\gamma \\log \\hat s_{v,c},
      \\quad \\hat s = \\mathrm{softmax}(\\text{logits})

    with s = `target` (per-voxel probabilities over C classes) and N the number of voxels
    (B x prod(S)). gamma = 0 gives the soft cross-entropy.

    Args:
      target: `[B, *S, C]` class probabilities (each voxel sums to 1).
      logits: `[B, *S, C]` decoder outputs before the softmax.
      gamma: focusing exponent >= 0.

    Returns:
      float32 scalar.

    References:
      Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; Fernandez et al.,
      brainSPADE, 2022.

    >>> round(float(focal_loss(jnp.array([[1.0, 0.0]]), jnp.zeros((1, 2)), gamma=0.0)), 4)  # log 2
    0.6931
    """
    _check_same_shape("target", target, "logits", logits)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    weight = (1.0 - jnp.exp(log_p)) ** gamma
    return -jnp.mean(jnp.sum(target.astype(jnp.float32) * weight * log_p, axis=-1))


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(logvar)) || N(0, I)) summed over each example's elements, averaged over B.

    .. math::
      KL = \\frac{1}{2} \\sum_i (\\mu_i^2 + \\sigma_i^2 - \\log \\sigma_i^2 - 1)

    with mu = `mean`, log sigma^2 = `logvar`, the sum over all non-batch elements (Eq. 1.1, 13.1).

    Args:
      mean: `[B, ...]` posterior means.
      logvar: `[B, ...]` posterior log-variances.

    Returns:
      float32 scalar >= 0 (nats per example); 0 iff mean = 0 and logvar = 0.

    References:
      Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014, Appendix B.

    >>> float(kl_divergence(jnp.ones((2, 3)), jnp.zeros((2, 3))))
    1.5
    """
    _check_same_shape("mean", mean, "logvar", logvar)
    mu, lv = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    per_element = 0.5 * (mu**2 + jnp.exp(lv) - lv - 1.0)
    return jnp.mean(jnp.sum(per_element.reshape(per_element.shape[0], -1), axis=-1))


def vq_commitment_loss(z_e: jax.Array, e: jax.Array, *, beta: float = 0.25) -> jax.Array:
    """beta * mean |z_e - sg(e)|^2: pulls encoder outputs `z_e` `[..., D]` towards their codes `e`
    (gradient to the encoder only). beta = 0.25 in VQ-VAE and DiffTumor.

    References:
      van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017, Eq. 3.
    """
    _check_same_shape("z_e", z_e, "e", e)
    diff = z_e.astype(jnp.float32) - jax.lax.stop_gradient(e.astype(jnp.float32))
    return beta * jnp.mean(jnp.square(diff))


def vq_codebook_loss(z_e: jax.Array, e: jax.Array) -> jax.Array:
    """mean |sg(z_e) - e|^2: pulls codes `e` `[..., D]` towards the encoder outputs (gradient to
    the codebook only); replaced by the EMA update when the codebook is EMA-trained.

    References:
      van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017, Eq. 3.
    """
    _check_same_shape("z_e", z_e, "e", e)
    diff = jax.lax.stop_gradient(z_e.astype(jnp.float32)) - e.astype(jnp.float32)
    return jnp.mean(jnp.square(diff))
