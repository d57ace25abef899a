"""Classifier-free guidance: condition dropout for training, prediction mixing for sampling.

Scale convention: the code's ``s`` (``s = 1``: plain conditional model, no guidance); the book
(ch. 2, Eqs. 2.22-2.24) writes ``w = s - 1``:

.. math::
  \\tilde\\epsilon = \\epsilon_\\theta(x_t, \\varnothing) + s\\,(\\epsilon_\\theta(x_t, y) - \\epsilon_\\theta(x_t, \\varnothing))
                   = (1 + w)\\,\\epsilon_\\theta(x_t, y) - w\\,\\epsilon_\\theta(x_t, \\varnothing)

Guidance mixes the two *predictions* and then takes one sampler step (erratum 7 of spec ch. 2:
the book mixes two sampled states instead).

References:
  Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6 and Algorithm 1.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


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
      y_null: the null condition, same structure and shapes as ``y`` (e.g. the null class label
        ``num_classes`` for every example, or all-zero semantic maps).
      scale: guidance scale ``s`` (``s = 1``: no guidance).

    Returns:
      ``cfg_model_fn(x, t) -> out`` with the same output layout as ``model_fn``.

    References:
      Ho & Salimans 2022, Algorithm 2; spec ch. 2, Sect. 2.8.
    """

    def cfg_model_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        B, C = x.shape[0], x.shape[-1]
        y_both = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), y, y_null)
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
