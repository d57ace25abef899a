"""Noise schedules: discrete VP (DDPM) betas and their derived quantities, respacing, VE sigmas.

Index convention: discrete timesteps are integers ``t in {0, ..., T-1}`` (the code convention of
DDPM/iDDPM); the book's ``t`` (1..T) is ``t + 1``. ``alpha_bar[t]`` is the book's
``alpha_bar_{t+1}``, and ``alpha_bar_prev[0] = 1`` is the book's ``alpha_bar_0``.

References:
  Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM), Eqs. 2-7.
  Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (iDDPM), Eq. 17
  (cosine schedule) and its timestep respacing.
  Song et al. 2021, "Score-Based Generative Modeling through SDEs" (VE sigmas).
"""

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """DDPM's linear beta schedule, rescaled by ``1000 / T`` for other step counts (iDDPM).

    Args:
      T: number of diffusion steps.
      beta_start: ``beta`` of the first step when ``T = 1000``.
      beta_end: ``beta`` of the last step when ``T = 1000``.

    Returns:
      ``[T]`` float64 NumPy array (host-side, so the cumulative product is exact to 1e-15).

    Raises:
      ValueError: if ``T`` is not positive or so small that ``beta_end * 1000 / T >= 1``.

    >>> linear_betas(1000)[[0, -1]]
    array([0.0001, 0.02  ])

    References:
      Ho et al. 2020, Sect. 4; Nichol & Dhariwal 2021 code (``get_named_beta_schedule``).
    """
    _check_T(T)
    scale = 1000.0 / T
    if scale * beta_end >= 1.0:
        raise ValueError(f"T={T} is too small for the linear schedule: beta_end * 1000 / T must be < 1")
    return np.linspace(scale * beta_start, scale * beta_end, T, dtype=np.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """iDDPM's cosine schedule: ``beta_t = min(1 - f(t+1)/f(t), max_beta)``.

    .. math::
      \\bar\\alpha(u) = f(u) / f(0),\\quad f(u) = \\cos^2\\big(\\tfrac{u/T + s}{1 + s}\\,\\tfrac{\\pi}{2}\\big)

    with ``u`` the book time (0..T), so ``alpha_bar[t] = f(t + 1) / f(0)`` until ``max_beta`` clips.

    Args:
      T: number of diffusion steps.
      s: small offset that keeps ``beta`` from being tiny near ``u = 0``.
      max_beta: upper clip of ``beta`` (avoids ``alpha_bar = 0`` at the last step).

    Returns:
      ``[T]`` float64 NumPy array.

    >>> cosine_betas(1000).shape
    (1000,)

    References:
      Nichol & Dhariwal 2021, Eq. 17.
    """
    _check_T(T)
    u = np.arange(T + 1, dtype=np.float64)
    f = np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def ve_sigma(t: jax.Array, sigma_min: float, sigma_max: float) -> jax.Array:
    """Geometric VE noise level ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``.

    Args:
      t: continuous time in [0, 1], any shape.
      sigma_min: noise level at ``t = 0``.
      sigma_max: noise level at ``t = 1``.

    Returns:
      ``sigma(t)``, same shape as ``t``.

    >>> float(ve_sigma(jnp.float32(1.0), 0.01, 50.0))
    50.0

    References:
      Song et al. 2021, Eq. 31; Chung & Ye (book ch. 7), Sect. 4.2 of the spec.
    """
    return sigma_min * (sigma_max / sigma_min) ** jnp.asarray(t)


def ve_sigmas(N: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """The geometric grid ``sigma_min (sigma_max/sigma_min)^(k/(N-1))``, ``k = 0..N-1`` (increasing).

    Args:
      N: number of noise levels (>= 2).
      sigma_min: smallest level.
      sigma_max: largest level.

    Returns:
      ``[N]`` float64 NumPy array, increasing from ``sigma_min`` to ``sigma_max``.

    >>> ve_sigmas(3, 0.01, 1.0)
    array([0.01, 0.1 , 1.  ])

    References:
      Song & Ermon 2019 (NCSN); Song et al. 2021, Appendix C.
    """
    if N < 2:
        raise ValueError(f"N must be >= 2 noise levels, got {N}")
    return np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), N))


@flax.struct.dataclass
class VPSchedule:
    """Discrete VP (DDPM) schedule; every leaf is an array over the T steps of this schedule.

    Leaves (all ``[T]`` float32, or float64 under ``jax.enable_x64``, except ``timesteps``):
      betas: ``beta_t``.
      alphas: ``alpha_t = 1 - beta_t``.
      alpha_bar: ``prod_{s <= t} alpha_s`` (DDPM Eq. 4).
      alpha_bar_prev: ``alpha_bar[t - 1]`` with ``alpha_bar_prev[0] = 1``.
      posterior_variance: ``beta_tilde_t = (1 - alpha_bar_prev)/(1 - alpha_bar) beta_t`` (Eq. 2.14).
      posterior_log_variance_clipped: ``log beta_tilde_t`` with ``beta_tilde[1]`` at ``t = 0``
        (``beta_tilde[0] = 0``), as in iDDPM.
      posterior_mean_coef1: ``x_0`` coefficient of the posterior mean,
        ``sqrt(alpha_bar_prev) beta / (1 - alpha_bar)`` (Eq. 2.13, corrected).
      posterior_mean_coef2: ``x_t`` coefficient, ``sqrt(alpha) (1 - alpha_bar_prev)/(1 - alpha_bar)``.
      timesteps: ``[T]`` int32, the step of the original (training) schedule that each step of
        this schedule stands for; the network is always called with these. ``arange(T)`` unless
        the schedule was respaced.

    Index ``t`` of the arrays is the code convention ``0..T-1`` (book ``t + 1``).
    """

    betas: jax.Array
    alphas: jax.Array
    alpha_bar: jax.Array
    alpha_bar_prev: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance_clipped: jax.Array
    posterior_mean_coef1: jax.Array
    posterior_mean_coef2: jax.Array
    timesteps: jax.Array

    @property
    def num_timesteps(self) -> int:
        """T, the number of steps of this schedule (static: read from the array shape)."""
        return self.betas.shape[0]


def vp_schedule(betas: np.ndarray | Sequence[float]) -> VPSchedule:
    """Builds the VP schedule and its posterior coefficients from betas.

    Every leaf is computed in float64 on the host (as iDDPM does), then stored as a JAX array of
    the default float dtype (float32, or float64 under ``jax.enable_x64``).

    Args:
      betas: ``[T]`` betas in (0, 1), e.g. from :func:`linear_betas` or :func:`cosine_betas`.

    Returns:
      A :class:`VPSchedule` with ``timesteps = arange(T)``.

    Raises:
      ValueError: if ``betas`` is not a 1-D array with values in (0, 1).

    >>> float(vp_schedule(linear_betas(1000)).alpha_bar[499])  # doctest: +ELLIPSIS
    0.078587...

    References:
      Ho et al. 2020, Eqs. 4, 6-7; Nichol & Dhariwal 2021 (clipped posterior log-variance).
    """
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.shape[0] < 1:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not np.all((betas > 0) & (betas < 1)):
        raise ValueError("betas must lie in (0, 1)")
    alpha_bar = np.cumprod(1.0 - betas)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    return _derive(np, betas, alpha_bar, alpha_bar_prev, np.arange(betas.shape[0]))


def spaced_timesteps(T: int, num_steps: int, kind: str = "linspace") -> np.ndarray:
    """Evenly spaced subset of ``{0..T-1}`` for respaced sampling (increasing).

    Args:
      T: number of steps of the original schedule.
      num_steps: size K of the subset, ``1 <= K <= T``.
      kind: ``"linspace"`` (iDDPM: ``round(linspace(0, T-1, K))``, includes ``T - 1``) or
        ``"uniform"`` (DDIM/DDS: ``arange(0, T, T // K)[:K]``, e.g. 0, 20, ..., 980).

    Returns:
      ``[K]`` int NumPy array, strictly increasing.

    >>> spaced_timesteps(1000, 4)
    array([  0, 333, 666, 999])

    References:
      Nichol & Dhariwal 2021, Sect. 4; Song et al. 2021 (DDIM), Appendix C.2.
    """
    _check_T(T)
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in [1, T={T}], got {num_steps}")
    if kind == "linspace":
        return np.round(np.linspace(0, T - 1, num_steps)).astype(np.int64)
    if kind == "uniform":
        return np.arange(0, T, T // num_steps)[:num_steps]
    raise ValueError(f"kind must be 'linspace' or 'uniform', got {kind!r}")


def respace(schedule: VPSchedule, timesteps: np.ndarray | Sequence[int]) -> VPSchedule:
    """iDDPM respacing: the schedule restricted to a subset of steps, with consistent betas.

    Keeps ``alpha_bar'_k = alpha_bar[tau_k]`` for the sorted subset ``tau`` and recomputes
    ``beta'_k = 1 - alpha_bar'_k / alpha_bar'_{k-1}`` (``alpha_bar'_{-1} = 1``), so that
    the respaced posterior and learned-variance range are those of a K-step DDPM.
    ``timesteps`` of the result maps each new step back to the original timestep.

    Works under ``jit`` with a traced ``schedule`` (``timesteps`` must be concrete).

    Args:
      schedule: the original schedule, T steps.
      timesteps: distinct integers in ``[0, T)`` (any order; sorted here), K of them.

    Returns:
      A K-step :class:`VPSchedule`.

    Raises:
      ValueError: if ``timesteps`` is empty, has repeats, or leaves ``[0, T)``.

    >>> respace(vp_schedule(linear_betas(1000)), spaced_timesteps(1000, 50)).num_timesteps
    50

    References:
      Nichol & Dhariwal 2021, Sect. 4 ("Improving sampling speed").
    """
    T = schedule.num_timesteps
    tau = np.asarray(timesteps)
    if tau.ndim != 1 or tau.size == 0 or not np.issubdtype(tau.dtype, np.integer):
        raise ValueError(f"timesteps must be a non-empty 1-D integer sequence, got {timesteps!r}")
    tau = np.sort(tau)
    if np.any(np.diff(tau) == 0) or tau[0] < 0 or tau[-1] >= T:
        raise ValueError(f"timesteps must be distinct integers in [0, {T}), got {tau.tolist()}")
    alpha_bar = schedule.alpha_bar[tau]
    alpha_bar_prev = jnp.concatenate([jnp.ones((1,), alpha_bar.dtype), alpha_bar[:-1]])
    betas = 1.0 - alpha_bar / alpha_bar_prev
    return _derive(jnp, betas, alpha_bar, alpha_bar_prev, schedule.timesteps[tau])


def _derive(xp, betas, alpha_bar, alpha_bar_prev, timesteps) -> VPSchedule:
    """All derived leaves from betas and cumulative products, computed with ``xp`` (np or jnp).

    ``vp_schedule`` passes float64 NumPy arrays (iDDPM computes its schedule in float64 too);
    ``respace`` passes JAX arrays so that it also works on a traced schedule.
    """
    posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    # beta_tilde[0] = 0: iDDPM clips its log to log beta_tilde[1] (or beta[0] for a 1-step schedule).
    first = posterior_variance[1:2] if betas.shape[0] > 1 else betas[:1]
    leaves = dict(
        betas=betas,
        alphas=1.0 - betas,
        alpha_bar=alpha_bar,
        alpha_bar_prev=alpha_bar_prev,
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=xp.log(xp.concatenate([first, posterior_variance[1:]])),
        posterior_mean_coef1=betas * xp.sqrt(alpha_bar_prev) / (1.0 - alpha_bar),
        posterior_mean_coef2=(1.0 - alpha_bar_prev) * xp.sqrt(1.0 - betas) / (1.0 - alpha_bar),
    )
    leaves = {name: jnp.asarray(value) for name, value in leaves.items()}
    return VPSchedule(**leaves, timesteps=jnp.asarray(timesteps, dtype=jnp.int32))


def _check_T(T: int) -> None:
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
