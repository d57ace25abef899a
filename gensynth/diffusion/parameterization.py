"""Conversions between the network parameterisations: noise eps, clean x0, velocity v, score.

The perturbation kernel is written as in Chung & Ye (book ch. 7, Eq. 7.9):

.. math::
  x_t = s_t x_0 + s_t \\sigma_t z,\\qquad z \\sim \\mathcal N(0, I)

so the total noise std is ``s_t sigma_t``. VE: ``s_t = 1``. VP (DDPM): ``s_t = sqrt(alpha_bar)``
and ``s_t sigma_t = sqrt(1 - alpha_bar)``, i.e. ``sigma_t = sqrt((1 - alpha_bar)/alpha_bar)``
(:func:`vp_s_sigma`). With ``eps = z``:

- score: ``grad log p(x_t) = -eps / (s_t sigma_t)`` (Eq. 7.19 for VP);
- Tweedie: ``E[x_0 | x_t] = (x_t + s_t^2 sigma_t^2 score) / s_t`` (Eq. 7.13, corrected, E4);
- VP velocity: ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0`` (Salimans & Ho 2022).

Coefficients are scalars or per-example ``[B]`` arrays; :func:`broadcast_coef` lines them up
with ``[B, ...]`` data.
"""

import jax
import jax.numpy as jnp

from gensynth.diffusion.schedules import VPSchedule

PREDICTIONS = ("eps", "x0", "v")


def broadcast_coef(c: jax.Array | float, x: jax.Array) -> jax.Array:
    """Reshapes a scalar or per-example coefficient ``[B]`` to ``[B, 1, ..., 1]`` to match x.

    Args:
      c: scalar or ``[B]``.
      x: ``[B, ...]``.

    Returns:
      ``c`` with ``x.ndim`` dimensions (scalars stay scalars).

    >>> broadcast_coef(jnp.ones(4), jnp.zeros((4, 8, 8, 1))).shape
    (4, 1, 1, 1)
    """
    c = jnp.asarray(c)
    if c.ndim == 0:
        return c
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def vp_s_sigma(alpha_bar: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps a VP ``alpha_bar`` to the kernel form ``(s_t, sigma_t)`` of Eq. 7.9.

    ``x_t / s_t`` is then a VE state at noise level ``sigma_t`` (the spec's ``vp_to_ve_scale``).

    Args:
      alpha_bar: ``alpha_bar_t`` in (0, 1], any shape.

    Returns:
      ``(sqrt(alpha_bar), sqrt((1 - alpha_bar) / alpha_bar))``.

    >>> [round(float(a), 4) for a in vp_s_sigma(jnp.float32(0.5))]
    [0.7071, 1.0]

    References:
      Chung & Ye (book ch. 7), Sect. 7.2.1; spec ch. 7, Sect. 4.1.
    """
    alpha_bar = jnp.asarray(alpha_bar)
    return jnp.sqrt(alpha_bar), jnp.sqrt((1.0 - alpha_bar) / alpha_bar)


def eps_to_score(eps: jax.Array, s: jax.Array, sigma: jax.Array) -> jax.Array:
    """``score = -eps / (s sigma)`` (Eq. 7.19; VE: ``-eps / sigma``). eps: ``[B, ...]``."""
    return -eps / broadcast_coef(s * sigma, eps)


def score_to_eps(score: jax.Array, s: jax.Array, sigma: jax.Array) -> jax.Array:
    """``eps = -s sigma score`` (inverse of :func:`eps_to_score`). score: ``[B, ...]``."""
    return -broadcast_coef(s * sigma, score) * score


def tweedie_x0(x_t: jax.Array, score: jax.Array, s: jax.Array, sigma: jax.Array) -> jax.Array:
    """Tweedie's posterior mean ``E[x_0 | x_t] = (x_t + s^2 sigma^2 score) / s``.

    This is the corrected Eq. 7.13 (erratum E4: the book prints ``sigma^2`` for ``s^2 sigma^2``);
    VE (``s = 1``): ``x_t + sigma^2 score`` (the denoiser ``D_theta``, Eq. 7.14).

    Args:
      x_t: ``[B, ...]`` noisy state.
      score: ``[B, ...]`` ``grad log p_t(x_t)``.
      s: signal scale ``s_t``, scalar or ``[B]``.
      sigma: ``sigma_t`` of Eq. 7.9, scalar or ``[B]``.

    Returns:
      ``[B, ...]`` estimate of ``x_0``.

    >>> float(tweedie_x0(jnp.ones((1, 1)), -jnp.ones((1, 1)), 1.0, 0.5)[0, 0])
    0.75

    References:
      Efron 2011; Chung & Ye (book ch. 7), Lemma 7.1 and its proof (Eq. 7.47).
    """
    return (x_t + broadcast_coef((s * sigma) ** 2, x_t) * score) / broadcast_coef(s, x_t)


def eps_to_x0(eps: jax.Array, x_t: jax.Array, s: jax.Array, sigma: jax.Array) -> jax.Array:
    """``x_0 = (x_t - s sigma eps) / s`` (VP: Eq. 7.22 / 2.16 as corrected). Arrays ``[B, ...]``."""
    return (x_t - broadcast_coef(s * sigma, x_t) * eps) / broadcast_coef(s, x_t)


def x0_to_eps(x0: jax.Array, x_t: jax.Array, s: jax.Array, sigma: jax.Array) -> jax.Array:
    """``eps = (x_t - s x_0) / (s sigma)`` (inverse of :func:`eps_to_x0`). Arrays ``[B, ...]``."""
    return (x_t - broadcast_coef(s, x_t) * x0) / broadcast_coef(s * sigma, x_t)


def v_target(eps: jax.Array, x0: jax.Array, alpha_bar: jax.Array) -> jax.Array:
    """VP velocity ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0``. Arrays ``[B, ...]``.

    References:
      Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models", Sect. 4.
    """
    a = broadcast_coef(alpha_bar, eps)
    return jnp.sqrt(a) * eps - jnp.sqrt(1.0 - a) * x0


def v_to_eps_x0(v: jax.Array, x_t: jax.Array, alpha_bar: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inverts :func:`v_target` given ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``.

    ``x_0 = sqrt(a) x_t - sqrt(1 - a) v`` and ``eps = sqrt(1 - a) x_t + sqrt(a) v``.

    Args:
      v: ``[B, ...]`` predicted velocity.
      x_t: ``[B, ...]`` noisy state.
      alpha_bar: scalar or ``[B]``.

    Returns:
      ``(eps, x0)``, each ``[B, ...]``.
    """
    a = broadcast_coef(alpha_bar, x_t)
    return jnp.sqrt(1.0 - a) * x_t + jnp.sqrt(a) * v, jnp.sqrt(a) * x_t - jnp.sqrt(1.0 - a) * v


def split_output(out: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Splits a network output into its mean part and, if learned, its variance part.

    Args:
      out: ``[B, ..., C]`` (fixed variance) or ``[B, ..., 2C]`` (learned variance: the first C
        channels are the eps/x0/v prediction, the last C the raw variance output ``r``).
      x_t: ``[B, ..., C]`` the network input.

    Returns:
      ``(prediction [B, ..., C], r [B, ..., C] or None)``.

    Raises:
      ValueError: if ``out`` has neither C nor 2C channels or a different leading shape.
    """
    C = x_t.shape[-1]
    if out.shape[:-1] != x_t.shape[:-1] or out.shape[-1] not in (C, 2 * C):
        raise ValueError(
            f"model output must have shape {x_t.shape[:-1]} + ({C},) or ({2 * C},) for input "
            f"{x_t.shape}, got {out.shape}"
        )
    if out.shape[-1] == C:
        return out, None
    return out[..., :C], out[..., C:]


def model_output_to_eps_x0(
    out: jax.Array, x_t: jax.Array, t: jax.Array, schedule: VPSchedule, prediction: str = "eps"
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Reads a VP network output as ``(eps, x0, r)`` whatever it predicts.

    Args:
      out: ``[B, ..., C]`` or ``[B, ..., 2C]`` network output (see :func:`split_output`).
      x_t: ``[B, ..., C]`` noisy input.
      t: ``[B]`` int32 step index into ``schedule`` (code convention, 0..T-1).
      schedule: the VP schedule the index refers to.
      prediction: what the first C channels predict: ``"eps"``, ``"x0"`` or ``"v"``.

    Returns:
      ``(eps, x0, r)``: ``[B, ..., C]`` each; ``r`` is the raw variance output or None.

    Raises:
      ValueError: for an unknown ``prediction`` or a badly shaped ``out``.

    References:
      Ho et al. 2020 (eps); Salimans & Ho 2022 (v); spec ch. 2, Sect. 2.5.
    """
    pred, r = split_output(out, x_t)
    alpha_bar = schedule.alpha_bar[t]
    if prediction == "eps":
        return pred, eps_to_x0(pred, x_t, *vp_s_sigma(alpha_bar)), r
    if prediction == "x0":
        return x0_to_eps(pred, x_t, *vp_s_sigma(alpha_bar)), pred, r
    if prediction == "v":
        return *v_to_eps_x0(pred, x_t, alpha_bar), r
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
