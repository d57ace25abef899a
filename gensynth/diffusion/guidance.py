"""Guidance: classifier-free (condition dropout, prediction mixing) and classifier guidance.

Scale convention: the code's ``s`` (``s = 1``: plain conditional model, no guidance); the book
(ch. 2, Eqs. 2.22-2.24) writes ``w = s - 1``:

.. math::
  \\tilde\\epsilon = \\epsilon_\\theta(x_t, \\varnothing)
                   + s\\,(\\epsilon_\\theta(x_t, y) - \\epsilon_\\theta(x_t, \\varnothing))
                   = (1 + w)\\,\\epsilon_\\theta(x_t, y) - w\\,\\epsilon_\\theta(x_t, \\varnothing)

Guidance mixes the two *predictions* and then takes one sampler step (erratum 7 of spec ch. 2:
the book mixes two sampled states instead).

Classifier guidance (book ch. 2, Eq. 2.21, corrected; ADM) shifts the reverse-step mean by
``g Sigma grad log p_phi(y | x_t)``, or, in eps form for any VP sampler, subtracts
``sqrt(1 - alpha_bar) g grad log p_phi(y | x_t)`` from the noise prediction.

References:
  Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6 and Algorithm 1;
  Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", Algorithms 1-2.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion.parameterization import broadcast_coef
from gensynth.diffusion.schedules import VPSchedule


def cfg_combine(pred_cond: jax.Array, pred_uncond: jax.Array, scale: float | jax.Array) -> jax.Array:
    """Guided prediction ``pred_cond + (s - 1)(pred_cond - pred_uncond)``.

    Written around the conditional prediction so that ``s = 1`` returns it exactly; equal to
    ``pred_uncond + s (pred_cond - pred_uncond)``.

    Args:
      pred_cond: ``[B, ...]`` prediction with the condition (eps, or score).
      pred_uncond: ``[B, ...]`` prediction with the null condition.
      scale: guidance scale ``s`` (scalar or ``[B]``-broadcastable); book ``w = s - 1``.

    Returns:
      ``[B, ...]`` guided prediction.

    >>> float(cfg_combine(jnp.float32(1.0), jnp.float32(0.0), 1.5))
    1.5

    References:
      Ho & Salimans 2022, Eq. 6; book ch. 2, Eq. 2.23 (corrected).
    """
    return pred_cond + (scale - 1.0) * (pred_cond - pred_uncond)


def make_cfg_model_fn(
    model_fn: Callable[[jax.Array, jax.Array, Any], jax.Array],
    y: Any,
    y_null: Any,
    scale: float | jax.Array,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Wraps a conditional network as a guided ``model_fn(x, t)`` for the samplers.

    Each call runs the network once on the doubled batch ``[x; x]`` with conditions ``[y; y_null]``
    and mixes the first C output channels with :func:`cfg_combine`. When the output has 2C
    channels (learned variance), the variance half is taken from the conditional pass only,
    as in the SDM/NASDM code.

    Args:
      model_fn: ``model_fn(x, t, y) -> out`` with ``x`` ``[B, ..., C]``, ``t`` ``[B]`` and ``y``
        an array or pytree of arrays with leading axis B; ``out`` ``[B, ..., C or 2C]``.
      y: the condition, leading axis B.
      y_null: the null condition, same structure as ``y`` with each leaf broadcastable to the
        matching leaf of ``y`` (e.g. the null class label ``num_classes``, or 0.0 for all-zero
        semantic maps).
      scale: guidance scale ``s`` (``s = 1``: no guidance).

    Returns:
      ``cfg_model_fn(x, t) -> out`` with the same output layout as ``model_fn``.

    References:
      Ho & Salimans 2022, Algorithm 2; spec ch. 2, Sect. 2.8.
    """

    def cfg_model_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        B, C = x.shape[0], x.shape[-1]
        y_both = jax.tree.map(
            lambda a, b: jnp.concatenate([a, jnp.broadcast_to(jnp.asarray(b, a.dtype), a.shape)], axis=0), y, y_null
        )
        out = model_fn(jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0), y_both)
        out_cond, out_uncond = out[:B], out[B:]
        guided = cfg_combine(out_cond[..., :C], out_uncond[..., :C], scale)
        return jnp.concatenate([guided, out_cond[..., C:]], axis=-1)

    return cfg_model_fn


def drop_labels(key: jax.Array, y: jax.Array, p_uncond: float, null_label: Any) -> jax.Array:
    """Replaces each example's condition by the null condition with probability ``p_uncond``.

    Args:
      key: PRNG key for the per-example Bernoulli draws.
      y: ``[B, ...]`` conditions (``[B]`` int labels or ``[B, H, W, K]`` maps).
      p_uncond: drop probability in [0, 1] (NASDM fine-tuning: 0.2).
      null_label: the null condition, broadcastable to ``y[0]`` (e.g. ``num_classes``, or 0 for
        an all-zero map).

    Returns:
      ``[B, ...]`` conditions, same dtype as ``y``.

    >>> drop_labels(jax.random.key(0), jnp.arange(4), 1.0, 10)
    Array([10, 10, 10, 10], dtype=int32)

    References:
      Ho & Salimans 2022, Algorithm 1; spec ch. 2, Sect. 2.8 (per-example dropping).
    """
    drop = jax.random.bernoulli(key, p_uncond, (y.shape[0],))
    drop = drop.reshape(drop.shape + (1,) * (y.ndim - 1))
    return jnp.where(drop, jnp.asarray(null_label, y.dtype), y)


def classifier_guided_mean(
    mean: jax.Array, log_variance: jax.Array, grad_log_prob: jax.Array, scale: float | jax.Array
) -> jax.Array:
    """Classifier-guided reverse mean ``mu + g Sigma grad log p_phi(y | x_t)``.

    Args:
      mean: ``[B, ...]`` reverse-step mean ``mu_theta(x_t, t)``.
      log_variance: ``log Sigma_theta``, ``[B]`` or ``[B, ...]``.
      grad_log_prob: ``[B, ...]`` gradient of the classifier's ``log p_phi(y | x_t)``.
      scale: guidance scale ``g`` (ADM's ``s``; the book's ``alpha``).

    Returns:
      ``[B, ...]`` guided mean; the step variance is unchanged.

    >>> float(classifier_guided_mean(jnp.zeros((1, 1)), jnp.log(jnp.array([0.5])), jnp.ones((1, 1)), 2.0)[0, 0])
    1.0

    References:
      Dhariwal & Nichol 2021, Algorithm 1; book ch. 2, Eq. 2.21 (with the Sigma factor, erratum 6).
    """
    return mean + scale * jnp.exp(broadcast_coef(log_variance, mean)) * grad_log_prob


def make_classifier_guided_eps_fn(
    eps_fn: Callable[[jax.Array, jax.Array], jax.Array],
    log_prob_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: VPSchedule,
    scale: float | jax.Array,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Wraps an eps network with classifier guidance in eps form, for any VP sampler.

    ``eps_hat = eps_theta(x_t, t) - sqrt(1 - alpha_bar_t) g grad_x log p_phi(y | x_t)``.

    Args:
      eps_fn: ``eps_fn(x, t) -> [B, ..., C]`` noise prediction (C channels).
      log_prob_fn: ``log_prob_fn(x, t) -> [B]`` log-probability of the target labels under a
        classifier trained on noisy inputs (labels closed over).
      schedule: the original schedule (``t`` are original timesteps, as samplers pass them).
      scale: guidance scale ``g``.

    Returns:
      ``guided_eps_fn(x, t) -> [B, ..., C]``.

    References:
      Dhariwal & Nichol 2021, Algorithm 2 (DDIM form); spec ch. 2, Sect. 2.7.
    """

    def guided_eps_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        grad = jax.grad(lambda x: jnp.sum(log_prob_fn(x, t)))(x)
        return eps_fn(x, t) - broadcast_coef(jnp.sqrt(1.0 - schedule.alpha_bar[t]), x) * scale * grad

    return guided_eps_fn
