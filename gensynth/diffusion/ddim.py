"""DDIM sampling (any eta, two eta conventions, any step subset) and deterministic inversion.

A K-step DDIM run is a walk over the respaced schedule (:func:`gensynth.diffusion.respace`) of
the chosen steps ``tau_0 < ... < tau_{K-1}``; "``t - 1``" is the previous chosen step and
``alpha_bar_{-1} = 1``. Both functions are single jitted programs (see
:mod:`gensynth.diffusion.ddpm` for the jit design and how to pass network parameters).

References:
  Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", Eq. 12 and Sect. 4.3;
  book ch. 7, Eqs. 7.21-7.24 (``beta_tilde`` read as a std, erratum E8);
  Chung et al. 2024, "Decomposed Diffusion Sampler" code (the "dds" eta convention).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from gensynth.diffusion.chain import ModelFn, chosen_steps, reverse_chain, sample_shape
from gensynth.diffusion.parameterization import (
    PREDICTIONS,
    broadcast_coef,
    model_output_to_eps_x0,
)
from gensynth.diffusion.schedules import VPSchedule, respace

ETA_MODES = ("ddim", "dds")


def ddim_step(
    key: jax.Array,
    x0: jax.Array,
    eps: jax.Array,
    alpha_bar: jax.Array,
    alpha_bar_prev: jax.Array,
    *,
    eta: float | jax.Array = 0.0,
    eta_mode: str = "ddim",
) -> jax.Array:
    """One DDIM update from the current estimates ``(x0, eps)`` to the previous step.

    ``eta_mode="ddim"`` (Eq. 7.21; ``eta = 1`` is DDPM ancestral with ``beta_tilde``)::

      sigma = eta sqrt((1 - a_prev)/(1 - a)) sqrt(1 - a/a_prev)
      x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z

    ``eta_mode="dds"`` (DDS code; ``eta = 1`` discards ``eps``, which is *not* DDPM)::

      x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) (eta z + sqrt(1 - eta^2) eps)

    with ``a = alpha_bar``, ``a_prev = alpha_bar_prev``. The two coincide at ``eta = 0``.

    Args:
      key: PRNG key for ``z``.
      x0: ``[B, ...]`` clean-image estimate (e.g. Tweedie, possibly clipped or data-consistent).
      eps: ``[B, ...]`` noise estimate.
      alpha_bar: ``alpha_bar`` of the current step, scalar or ``[B]``.
      alpha_bar_prev: ``alpha_bar`` of the step to go to (1 after the last step).
      eta: stochasticity in [0, 1].
      eta_mode: ``"ddim"`` or ``"dds"``.

    Returns:
      ``[B, ...]`` previous state.

    Raises:
      ValueError: for an unknown ``eta_mode``.

    References:
      Song et al. 2021 (DDIM), Eqs. 12 and 16; book ch. 7, Eq. 7.21; spec ch. 7, Sect. 4.5.
    """
    a, a_prev = broadcast_coef(alpha_bar, x0), broadcast_coef(alpha_bar_prev, x0)
    if eta_mode == "ddim":
        sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
        eps_coef = jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma**2, 0.0))
    elif eta_mode == "dds":
        sigma = eta * jnp.sqrt(1.0 - a_prev)
        eps_coef = jnp.sqrt(1.0 - eta**2) * jnp.sqrt(1.0 - a_prev)
    else:
        raise ValueError(f"eta_mode must be one of {ETA_MODES}, got {eta_mode!r}")
    z = jax.random.normal(key, x0.shape, x0.dtype)
    return jnp.sqrt(a_prev) * x0 + eps_coef * eps + sigma * z


def ddim_sample(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    shape: Sequence[int] | None,
    *,
    num_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    eta: float | jax.Array = 0.0,
    eta_mode: str = "ddim",
    x_T: jax.Array | None = None,
    prediction: str = "eps",
    clip_x0: bool = True,
) -> jax.Array:
    """DDIM sampling over K chosen steps, from ``x_T ~ N(0, I)`` (or a given latent).

    Each step evaluates the network once, reads ``(eps, x0)`` from its output (clipping ``x0``
    to [-1, 1] and recomputing ``eps`` from it when ``clip_x0``, as iDDPM does) and applies
    :func:`ddim_step`. A network output with 2C channels (learned variance) is accepted; its
    variance half is unused.

    Args:
      key: PRNG key (prior draw and per-step noise; unused noise when ``eta = 0``).
      model_fn: ``model_fn(x, t) -> out``, ``t`` ``[B]`` int32 original timesteps.
      schedule: the training schedule (T steps).
      shape: ``(B, ..., C)``; may be None when ``x_T`` is given.
      num_steps: K evenly spaced steps (``round(linspace(0, T-1, K))``); None with
        ``timesteps=None`` means all T steps.
      timesteps: explicit distinct steps in ``[0, T)`` instead of ``num_steps`` (e.g. DDS's
        ``range(0, 1000, 20)``).
      eta: stochasticity (0: deterministic DDIM).
      eta_mode: ``"ddim"`` (book Eq. 7.21) or ``"dds"`` (DDS code convention).
      x_T: optional ``[B, ..., C]`` starting latent at the largest chosen step.
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip predicted ``x0`` to [-1, 1] (pixel data in [-1, 1]).

    Returns:
      ``[B, ..., C]`` samples.

    Raises:
      ValueError: for unknown options, both or bad step choices, or mismatched shapes.

    >>> from gensynth.diffusion import gaussian_eps_fn, linear_betas, vp_schedule
    >>> s = vp_schedule(linear_betas(1000))
    >>> ddim_sample(jax.random.key(0), gaussian_eps_fn(0.0, 1.0, s), s, (8, 2), num_steps=10).shape
    (8, 2)

    References:
      Song et al. 2021 (DDIM), Eq. 12; book ch. 7, Eqs. 7.21-7.24.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if eta_mode not in ETA_MODES:
        raise ValueError(f"eta_mode must be one of {ETA_MODES}, got {eta_mode!r}")
    shape = sample_shape(shape, x_T)
    tau = chosen_steps(schedule.num_timesteps, num_steps, timesteps)
    return _ddim_sample(key, x_T, schedule, eta, model_fn, shape, tau, eta_mode, prediction, clip_x0)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 9))
def _ddim_sample(key, x_T, schedule, eta, model_fn, shape, tau, eta_mode, prediction, clip_x0):
    schedule = respace(schedule, tau)

    def update_fn(key_i, x, t, eps, x0, r):
        a, a_prev = schedule.alpha_bar[t], schedule.alpha_bar_prev[t]
        return ddim_step(key_i, x0, eps, a, a_prev, eta=eta, eta_mode=eta_mode)

    return reverse_chain(key, x_T, shape, schedule, model_fn, prediction, clip_x0, update_fn)


def ddim_invert(
    model_fn: ModelFn,
    schedule: VPSchedule,
    x0: jax.Array,
    *,
    num_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    prediction: str = "eps",
) -> jax.Array:
    """Deterministic DDIM inversion ``x_0 -> x_T`` (eta = 0 run backwards).

    Step k goes from the latent at ``tau_{k-1}`` (the data for k = 0, ``alpha_bar_{-1} = 1``) to
    ``tau_k``, approximating the unknown ``eps(x_{tau_k}, tau_k)`` by the network at the
    current latent and the target step::

      eps = eps_theta(x, tau_k);  x0_hat = (x - sqrt(1 - a_prev) eps) / sqrt(a_prev)
      x <- sqrt(a) x0_hat + sqrt(1 - a) eps

    ``ddim_sample(..., x_T=ddim_invert(...), eta=0, clip_x0=False)`` with the same steps
    reproduces ``x0`` up to the discretisation error of that approximation.

    Args:
      model_fn: ``model_fn(x, t) -> out``, ``t`` ``[B]`` int32 original timesteps.
      schedule: the training schedule (T steps).
      x0: ``[B, ..., C]`` data to invert.
      num_steps: K evenly spaced steps; None with ``timesteps=None`` means all T.
      timesteps: explicit distinct steps in ``[0, T)`` instead of ``num_steps``.
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.

    Returns:
      ``[B, ..., C]`` latent at the largest chosen step.

    Raises:
      ValueError: for unknown options or bad step choices.

    References:
      Song et al. 2021 (DDIM), Sect. 4.3 and Appendix; Dhariwal & Nichol 2021
      (``ddim_reverse_sample``).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    tau = chosen_steps(schedule.num_timesteps, num_steps, timesteps)
    return _ddim_invert(x0, schedule, model_fn, tau, prediction)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _ddim_invert(x0, schedule, model_fn, tau, prediction):
    schedule = respace(schedule, tau)

    def body(k, x):
        t = jnp.full((x.shape[0],), k, jnp.int32)
        out = model_fn(x, schedule.timesteps[t]).astype(x.dtype)
        eps, _, _ = model_output_to_eps_x0(out, x, t, schedule, prediction)
        a_prev = broadcast_coef(schedule.alpha_bar_prev[t], x)
        a = broadcast_coef(schedule.alpha_bar[t], x)
        x0_hat = (x - jnp.sqrt(1.0 - a_prev) * eps) / jnp.sqrt(a_prev)
        return jnp.sqrt(a) * x0_hat + jnp.sqrt(1.0 - a) * eps

    return jax.lax.fori_loop(0, schedule.num_timesteps, body, x0)

