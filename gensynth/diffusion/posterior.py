"""The true posterior ``q(x_{t-1} | x_t, x_0)`` and the variance choices of the reverse kernel.

Index convention: ``t`` is the code step 0..T-1 of ``schedule`` (book ``t + 1``).

References:
  Ho et al. 2020, Eqs. 6-7 and Sect. 3.2; Nichol & Dhariwal 2021, Eq. 15 (learned variance);
  book ch. 2, Eqs. 2.12-2.14 (2.13 corrected: the ``x_t`` coefficient has ``sqrt(alpha_t)``)
  and Eq. 2.28.
"""

import jax
import jax.numpy as jnp

from gensynth.diffusion.parameterization import broadcast_coef
from gensynth.diffusion.schedules import VPSchedule

VARIANCES = ("fixed_small", "fixed_large", "learned")


def q_posterior_mean_variance(
    x0: jax.Array, x_t: jax.Array, t: jax.Array, schedule: VPSchedule
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean and variance of ``q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I)``.

    .. math::
      \\tilde\\mu_t = \\frac{\\sqrt{\\bar\\alpha_{t-1}}\\,\\beta_t}{1 - \\bar\\alpha_t} x_0
        + \\frac{\\sqrt{\\alpha_t}\\,(1 - \\bar\\alpha_{t-1})}{1 - \\bar\\alpha_t} x_t,\\qquad
      \\tilde\\beta_t = \\frac{1 - \\bar\\alpha_{t-1}}{1 - \\bar\\alpha_t}\\,\\beta_t

    Args:
      x0: ``[B, ...]`` clean image (or its estimate).
      x_t: ``[B, ...]`` noisy state.
      t: ``[B]`` int32 step indices.
      schedule: VP schedule.

    Returns:
      ``(mean [B, ...], variance [B], log_variance_clipped [B])``.

    References:
      Ho et al. 2020, Eq. 7; book ch. 2, Eqs. 2.13 (corrected) and 2.14.
    """
    mean = (
        broadcast_coef(schedule.posterior_mean_coef1[t], x0) * x0
        + broadcast_coef(schedule.posterior_mean_coef2[t], x_t) * x_t
    )
    return mean, schedule.posterior_variance[t], schedule.posterior_log_variance_clipped[t]


def reverse_log_variance(
    t: jax.Array, schedule: VPSchedule, variance: str, r: jax.Array | None = None
) -> jax.Array:
    """Log-variance of the reverse kernel ``p_theta(x_{t-1} | x_t)``.

    - ``"fixed_small"``: ``log beta_tilde_t`` (clipped at ``t = 0``).
    - ``"fixed_large"``: ``log beta_t``, with ``beta_tilde[1]`` at ``t = 0`` (iDDPM).
    - ``"learned"``: Eq. 2.28, ``v log beta_t + (1 - v) log beta_tilde_t`` with ``v = (r + 1)/2``
      and ``r`` the raw, unclipped network output.

    Args:
      t: ``[B]`` int32 step indices.
      schedule: VP schedule (respaced schedules use their own ``beta'`` and ``beta_tilde'``).
      variance: one of ``"fixed_small"``, ``"fixed_large"``, ``"learned"``.
      r: ``[B, ..., C]`` raw variance output, required for ``"learned"``.

    Returns:
      ``[B]`` for fixed variances, ``[B, ..., C]`` for the learned one.

    Raises:
      ValueError: for an unknown ``variance`` or a missing ``r``.

    References:
      Ho et al. 2020, Sect. 3.2; Nichol & Dhariwal 2021, Eq. 15; book ch. 2, Eq. 2.28.
    """
    min_log = schedule.posterior_log_variance_clipped[t]
    if variance == "fixed_small":
        return min_log
    max_log = jnp.log(schedule.betas[t])
    if variance == "fixed_large":
        return jnp.where(t == 0, min_log, max_log)
    if variance == "learned":
        if r is None:
            raise ValueError("variance='learned' needs the model's variance output r (2C channels)")
        frac = (r + 1.0) / 2.0
        return frac * broadcast_coef(max_log, r) + (1.0 - frac) * broadcast_coef(min_log, r)
    raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
