"""Forward (noising) processes: the VP marginal ``q(x_t | x_0)`` and the VE perturbation."""

import jax
import jax.numpy as jnp

from gensynth.diffusion.parameterization import broadcast_coef
from gensynth.diffusion.schedules import VPSchedule


def q_sample(
    key: jax.Array, x0: jax.Array, t: jax.Array, schedule: VPSchedule
) -> tuple[jax.Array, jax.Array]:
    """Draws ``x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``.

    .. math::
      x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\epsilon

    with ``alpha_bar_t = schedule.alpha_bar[t]``.

    Args:
      key: PRNG key for ``eps``.
      x0: ``[B, ...]`` clean data (images in [-1, 1]).
      t: ``[B]`` int32 step indices, code convention 0..T-1 (book ``t + 1``).
      schedule: VP schedule.

    Returns:
      ``(x_t, eps)``, both shaped like ``x0``.

    >>> from gensynth.diffusion import linear_betas, vp_schedule
    >>> s = vp_schedule(linear_betas(100))
    >>> q_sample(jax.random.key(0), jnp.zeros((2, 4, 4, 1)), jnp.array([0, 99]), s)[0].shape
    (2, 4, 4, 1)

    References:
      Ho et al. 2020, Eq. 4; book ch. 2, Eq. 2.3.
    """
    eps = jax.random.normal(key, x0.shape, x0.dtype)
    a = broadcast_coef(schedule.alpha_bar[t], x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * eps, eps


def ve_perturb(key: jax.Array, x0: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Draws a VE state ``x_t = x_0 + sigma z`` (Eq. 7.9 with ``s_t = 1``).

    Args:
      key: PRNG key for ``z``.
      x0: ``[B, ...]`` clean data.
      sigma: noise level, scalar or ``[B]``.

    Returns:
      ``(x_t, z)``, both shaped like ``x0``.

    >>> ve_perturb(jax.random.key(0), jnp.zeros((2, 3)), jnp.ones(2))[0].shape
    (2, 3)

    References:
      Song & Ermon 2019; Chung & Ye (book ch. 7), Eq. 7.9.
    """
    z = jax.random.normal(key, x0.shape, x0.dtype)
    return x0 + broadcast_coef(sigma, x0) * z, z
