"""Exact denoisers for Gaussian data, with the same interfaces as trained networks.

For data ``x_0 ~ N(mu, diag(sigma2))`` and the kernel ``x_t = s_t x_0 + s_t sigma_t z`` the
marginal is ``N(s_t mu, s_t^2 (sigma2 + sigma_t^2))``, so the score and the optimal noise
prediction are known in closed form. Samplers and solvers are tested against these (spec ch. 7,
Sect. 10.1: "an analytic-Gaussian network with the same interface").
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gensynth.diffusion.parameterization import broadcast_coef
from gensynth.diffusion.schedules import VPSchedule
from gensynth.diffusion.sde import VESDE, VPSDE


def gaussian_eps_fn(
    mu: jax.Array, sigma2: jax.Array, schedule: VPSchedule
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The optimal VP noise predictor ``E[eps | x_t]`` for Gaussian data.

    .. math::
      \\hat\\epsilon(x_t, t) = \\frac{\\sqrt{1 - \\bar\\alpha_t}\\,(x_t - \\sqrt{\\bar\\alpha_t}\\,\\mu)}
                                   {\\bar\\alpha_t\\,\\sigma^2 + 1 - \\bar\\alpha_t}

    Args:
      mu: data mean, shape ``[...]`` broadcastable to one example ``x[0]``.
      sigma2: per-element data variance, same shape rules as ``mu``.
      schedule: the original (not respaced) schedule, so that ``alpha_bar[t]`` is read at the
        original timesteps the samplers pass.

    Returns:
      ``eps_fn(x, t) -> [B, ...]`` with ``x`` ``[B, ...]`` and ``t`` ``[B]`` int32 in 0..T-1.

    References:
      Spec ch. 7, Sect. 10.1 and 10.3 (E1).
    """
    mu, sigma2 = jnp.asarray(mu), jnp.asarray(sigma2)

    def eps_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        a = broadcast_coef(schedule.alpha_bar[t], x)
        return jnp.sqrt(1.0 - a) * (x - jnp.sqrt(a) * mu) / (a * sigma2 + 1.0 - a)

    return eps_fn


def gaussian_score_fn(
    mu: jax.Array, sigma2: jax.Array, sde: VESDE | VPSDE
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The exact score ``grad log p_t(x)`` of the marginal of Gaussian data under an SDE.

    .. math::
      \\nabla_x \\log p_t(x) = -\\frac{x - s_t \\mu}{s_t^2 \\sigma^2 + (s_t \\sigma_t)^2}

    Args:
      mu: data mean, broadcastable to one example ``x[0]``.
      sigma2: per-element data variance, same shape rules as ``mu``.
      sde: :class:`VESDE` or :class:`VPSDE`.

    Returns:
      ``score_fn(x, t) -> [B, ...]`` with ``x`` ``[B, ...]`` and ``t`` ``[B]`` continuous in [0, 1].

    References:
      Spec ch. 7, Sect. 10.2 item 7 and Sect. 10.3 (E1).
    """
    mu, sigma2 = jnp.asarray(mu), jnp.asarray(sigma2)

    def score_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        s, _ = sde.scale_sigma(t)
        _, std = sde.marginal_prob(x, t)
        s, std = broadcast_coef(s, x), broadcast_coef(std, x)
        return -(x - s * mu) / (s**2 * sigma2 + std**2)

    return score_fn
