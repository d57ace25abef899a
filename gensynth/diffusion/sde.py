"""Continuous-time VE and VP SDEs (score_sde style), time ``t`` continuous in [0, 1].

Each SDE exposes the forward coefficients (``sde``), the marginal ``p_t(x_t | x_0)``
(``marginal_prob``, ``scale_sigma``), the prior at ``t = 1`` (``prior_sampling``) and the
discretisation used by the reverse-diffusion predictor and the Langevin corrector of
:func:`gensynth.diffusion.pc_sample` (``discretize``, ``discrete_alpha``).

References:
  Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential Equations",
  Sects. 3.4 and Appendix B; Chung & Ye (book ch. 7), Eq. 7.11 with the corrected diffusion
  coefficient ``sqrt(d sigma^2 / dt)`` (erratum E2).
"""

import flax.struct
import jax
import jax.numpy as jnp

from gensynth.diffusion.parameterization import broadcast_coef
from gensynth.diffusion.schedules import ve_sigma


@flax.struct.dataclass
class VESDE:
    """Variance-exploding SDE ``dx = sqrt(d[sigma^2(t)]/dt) dw``, ``sigma(t)`` geometric.

    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, so the diffusion coefficient is
    ``g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))``. Kernel (Eq. 7.9): ``s_t = 1``,
    ``sigma_t = sigma(t)``. Score-MRI / MCG / DiffusionMBIR use ``sigma_min = 0.01,
    sigma_max = 378``; score_sde's CIFAR-10 configs use ``sigma_max = 50``.

    Attributes:
      sigma_min: noise level at ``t = 0`` (scalar).
      sigma_max: noise level at ``t = 1`` (scalar; the prior is ``N(0, sigma_max^2 I)``).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def sigma(self, t: jax.Array) -> jax.Array:
        """``sigma(t)`` for continuous ``t`` (any shape)."""
        return ve_sigma(t, self.sigma_min, self.sigma_max)

    def sde(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Forward drift ``f(x, t) = 0`` ([B, ...]) and diffusion ``g(t) = sqrt(d sigma^2/dt)`` ([B])."""
        g = self.sigma(t) * jnp.sqrt(2.0 * jnp.log(self.sigma_max / self.sigma_min))
        return jnp.zeros_like(x), g

    def marginal_prob(self, x0: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean ``x0`` ([B, ...]) and std ``sigma(t)`` ([B]) of ``p_t(x_t | x_0)``."""
        return x0, self.sigma(t)

    def scale_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Kernel coefficients ``(s_t, sigma_t) = (1, sigma(t))`` of Eq. 7.9, each shaped like t."""
        sigma = self.sigma(t)
        return jnp.ones_like(sigma), sigma

    def prior_sampling(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Draws ``x_1 ~ N(0, sigma_max^2 I)`` of the given shape ``[B, ...]``."""
        return self.sigma_max * jax.random.normal(key, shape)

    def discretize(
        self, x: jax.Array, t: jax.Array, t_next: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Forward step ``t_next -> t`` as ``x_t = x_{t_next} + f + G z`` (t_next < t).

        ``f = 0`` and ``G = sqrt(sigma(t)^2 - sigma(t_next)^2)``, with ``sigma(0) := 0`` (``t_next
        = 0`` is the clean data, as score_sde's ``sigma_{-1} = 0``).

        Args:
          x: ``[B, ...]`` state at ``t``.
          t: ``[B]`` current time.
          t_next: ``[B]`` earlier time.

        Returns:
          ``(f [B, ...], G [B])``.
        """
        sigma_next = jnp.where(t_next > 0, self.sigma(t_next), 0.0)
        return jnp.zeros_like(x), jnp.sqrt(self.sigma(t) ** 2 - sigma_next**2)

    def discrete_alpha(self, t: jax.Array, t_next: jax.Array) -> jax.Array:
        """Signal retention ``alpha_i`` of one discrete step; 1 for VE (Langevin step size)."""
        return jnp.ones_like(self.sigma(t))


@flax.struct.dataclass
class VPSDE:
    """Variance-preserving SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw``.

    ``beta(t) = beta_min + t (beta_max - beta_min)`` is the continuous limit of DDPM's linear
    schedule (``beta_min = 0.1, beta_max = 20`` for T = 1000). The marginal is
    ``N(sqrt(alpha_bar(t)) x_0, (1 - alpha_bar(t)) I)`` with
    ``log alpha_bar(t) = -t^2 (beta_max - beta_min)/2 - t beta_min``.

    Attributes:
      beta_min: ``beta(0)`` (scalar).
      beta_max: ``beta(1)`` (scalar).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: jax.Array) -> jax.Array:
        """``beta(t)`` for continuous ``t`` (any shape)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha_bar(self, t: jax.Array) -> jax.Array:
        """``log alpha_bar(t) = -int_0^t beta(u) du`` (any shape)."""
        return -0.5 * t**2 * (self.beta_max - self.beta_min) - t * self.beta_min

    def sde(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Forward drift ``-beta(t) x / 2`` ([B, ...]) and diffusion ``sqrt(beta(t))`` ([B])."""
        beta = self.beta(t)
        return -0.5 * broadcast_coef(beta, x) * x, jnp.sqrt(beta)

    def marginal_prob(self, x0: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean ``sqrt(alpha_bar) x0`` ([B, ...]) and std ``sqrt(1 - alpha_bar)`` ([B])."""
        log_ab = self.log_alpha_bar(t)
        mean = broadcast_coef(jnp.exp(0.5 * log_ab), x0) * x0
        return mean, jnp.sqrt(-jnp.expm1(log_ab))

    def scale_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Kernel coefficients ``(sqrt(alpha_bar), sqrt((1 - alpha_bar)/alpha_bar))`` of Eq. 7.9."""
        log_ab = self.log_alpha_bar(t)
        return jnp.exp(0.5 * log_ab), jnp.sqrt(jnp.expm1(-log_ab))

    def prior_sampling(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Draws ``x_1 ~ N(0, I)`` of the given shape ``[B, ...]``."""
        return jax.random.normal(key, shape)

    def discretize(
        self, x: jax.Array, t: jax.Array, t_next: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Forward step ``t_next -> t`` as ``x_t = x_{t_next} + f + G z`` (t_next < t).

        The exact VP step has ``alpha = alpha_bar(t) / alpha_bar(t_next)``; as in score_sde's
        DDPM discretisation, ``f = (sqrt(alpha) - 1) x`` and ``G = sqrt(1 - alpha)``.

        Args:
          x: ``[B, ...]`` state at ``t``.
          t: ``[B]`` current time.
          t_next: ``[B]`` earlier time (0 allowed).

        Returns:
          ``(f [B, ...], G [B])``.
        """
        log_alpha = self.log_alpha_bar(t) - self.log_alpha_bar(t_next)
        f = broadcast_coef(jnp.expm1(0.5 * log_alpha), x) * x
        return f, jnp.sqrt(-jnp.expm1(log_alpha))

    def discrete_alpha(self, t: jax.Array, t_next: jax.Array) -> jax.Array:
        """``alpha_i = alpha_bar(t) / alpha_bar(t_next) = 1 - beta_i`` of one discrete step."""
        return jnp.exp(self.log_alpha_bar(t) - self.log_alpha_bar(t_next))
