"""DDPM ancestral sampling (fixed or learned variance, optional respacing), one jitted program.

Jit design (shared by all samplers in this package): the public function checks its
arguments and calls a ``jax.jit``-compiled core whose static arguments are the model function,
the output shape, the step subset and the string/bool options; arrays (key, schedule,
``x_T``) are traced. The whole reverse process is one ``lax.fori_loop``; step ``i`` draws its
noise from ``jax.random.fold_in(key, i)``.

``model_fn`` is hashed by identity: define it once and reuse it, or recompilation follows.
Arrays it closes over become compile-time constants; to keep network parameters as arguments,
call the sampler inside your own jitted function of the parameters (the nested jit is inlined)::

    @jax.jit
    def sample(key, state):
        model = nnx.merge(graphdef, state)
        return ddpm_sample(key, lambda x, t: model(x, t), schedule, (16, 64, 64, 1))
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from gensynth.diffusion.chain import ModelFn, reverse_chain, sample_shape
from gensynth.diffusion.parameterization import PREDICTIONS, broadcast_coef
from gensynth.diffusion.posterior import VARIANCES, q_posterior_mean_variance, reverse_log_variance
from gensynth.diffusion.schedules import VPSchedule, respace, spaced_timesteps


def ddpm_step(
    key: jax.Array,
    x_t: jax.Array,
    x0: jax.Array,
    t: jax.Array,
    schedule: VPSchedule,
    log_variance: jax.Array,
) -> jax.Array:
    """One ancestral step ``x_{t-1} = mu_tilde_t(x_t, x0) + 1[t > 0] exp(log_variance / 2) z``.

    The posterior form of DDPM's Eq. 11 (DPS Alg. 1): identical to
    ``(x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)`` when ``x0`` is the
    eps-implied estimate, and the iDDPM route when ``x0`` was clipped.

    Args:
      key: PRNG key for ``z``.
      x_t: ``[B, ...]`` current state.
      x0: ``[B, ...]`` estimate of the clean image.
      t: ``[B]`` int32 step indices into ``schedule`` (no noise where ``t == 0``).
      schedule: VP schedule (possibly respaced).
      log_variance: log of the reverse-kernel variance, ``[B]`` or ``[B, ...]``
        (see :func:`gensynth.diffusion.reverse_log_variance`).

    Returns:
      ``[B, ...]`` state ``x_{t-1}``.

    References:
      Ho et al. 2020, Algorithm 2; book ch. 2, Eq. 2.18; book ch. 7, Eq. 7.20 (corrected).
    """
    mean, _, _ = q_posterior_mean_variance(x0, x_t, t, schedule)
    z = jax.random.normal(key, x_t.shape, x_t.dtype)
    std = broadcast_coef(jnp.where(t > 0, 1.0, 0.0), x_t) * jnp.exp(0.5 * broadcast_coef(log_variance, x_t))
    return mean + std * z


def ddpm_sample(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    shape: Sequence[int] | None,
    *,
    x_T: jax.Array | None = None,
    num_steps: int | None = None,
    prediction: str = "eps",
    variance: str = "fixed_small",
    clip_x0: bool = True,
) -> jax.Array:
    """DDPM ancestral sampling from ``x_T ~ N(0, I)`` down to ``x_0``.

    Args:
      key: PRNG key (split into the prior draw and the per-step noise stream).
      model_fn: ``model_fn(x, t) -> out``, ``x`` ``[B, ..., C]``, ``t`` ``[B]`` int32 original
        timesteps; ``out`` ``[B, ..., C]`` or ``[B, ..., 2C]`` (learned variance).
      schedule: the training schedule (T steps).
      shape: ``(B, ..., C)`` of the samples; may be None when ``x_T`` is given.
      x_T: optional ``[B, ..., C]`` starting latent (default: drawn from ``N(0, I)``).
      num_steps: respace to this many evenly spaced steps (iDDPM, spec 2.12); None = all T.
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      variance: ``"fixed_small"`` (beta tilde), ``"fixed_large"`` (beta) or ``"learned"``.
      clip_x0: clip the predicted ``x0`` to [-1, 1] before forming the posterior mean
        (iDDPM/NASDM; for pixel data in [-1, 1]).

    Returns:
      ``[B, ..., C]`` samples.

    Raises:
      ValueError: for unknown options or mismatched ``shape``/``x_T``.

    >>> from gensynth.diffusion import gaussian_eps_fn, linear_betas, vp_schedule
    >>> s = vp_schedule(linear_betas(100))
    >>> ddpm_sample(jax.random.key(0), gaussian_eps_fn(0.0, 1.0, s), s, (8, 2)).shape
    (8, 2)

    References:
      Ho et al. 2020, Algorithm 2; Nichol & Dhariwal 2021 (learned variance, respacing).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    shape = sample_shape(shape, x_T)
    T = schedule.num_timesteps
    tau = None if num_steps is None else tuple(spaced_timesteps(T, num_steps).tolist())
    return _ddpm_sample(key, x_T, schedule, model_fn, shape, tau, prediction, variance, clip_x0)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _ddpm_sample(key, x_T, schedule, model_fn, shape, tau, prediction, variance, clip_x0):
    if tau is not None:
        schedule = respace(schedule, tau)

    def update_fn(key_i, x, t, eps, x0, r):
        return ddpm_step(key_i, x, x0, t, schedule, reverse_log_variance(t, schedule, variance, r))

    return reverse_chain(key, x_T, shape, schedule, model_fn, prediction, clip_x0, update_fn)
