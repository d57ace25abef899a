"""Training objectives: DDPM/iDDPM losses for VP models and denoising score matching for VE.

References:
  Ho et al. 2020 (``L_simple``); Nichol & Dhariwal 2021 (``L_hybrid``, learned variance);
  Salimans & Ho 2022 (v-prediction); Song et al. 2021 (DSM with ``lambda(sigma) = sigma^2``);
  book ch. 2, Eqs. 2.27-2.30; book ch. 7, Eq. 7.12.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion.forward import q_sample, ve_perturb
from gensynth.diffusion.likelihood import discretized_gaussian_log_likelihood, normal_kl
from gensynth.diffusion.parameterization import (
    PREDICTIONS,
    broadcast_coef,
    model_output_to_eps_x0,
    split_output,
    v_target,
)
from gensynth.diffusion.posterior import q_posterior_mean_variance, reverse_log_variance
from gensynth.diffusion.schedules import VPSchedule
from gensynth.diffusion.sde import VESDE

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
LOSS_TYPES = ("l2", "l1")  # the norm of L_simple: squared error (DDPM) or absolute error (ch. 4, Eq. 4.7)


def diffusion_loss(
    key: jax.Array,
    model_fn: ModelFn,
    x0: jax.Array,
    schedule: VPSchedule,
    *,
    prediction: str = "eps",
    hybrid: bool = False,
    vlb_weight: float = 1.0,
    loss_type: str = "l2",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """VP diffusion loss with one uniformly drawn step per example.

    ``L_simple`` is the per-pixel mean squared error of the prediction in its own
    parameterisation (eps, x0 or v; Eq. 2.27). With ``hybrid=True`` the network also outputs
    the variance coefficient ``r`` (2C channels) and the loss adds the VLB term of its step:

    .. math::
      L = L_{simple} + w\\, L_{vlb}(t),\\qquad
      L_{vlb}(t) = \\begin{cases}
        KL(q(x_{t-1}|x_t, x_0)\\,\\|\\,p_\\theta(x_{t-1}|x_t)) & t > 0 \\\\
        -\\log p_\\theta(x_0 | x_1) \\text{ (discretised decoder)} & t = 0
      \\end{cases}

    in bits per dimension, where ``p_theta``'s mean is built from ``stop_gradient`` of the
    prediction, so ``L_vlb`` trains only the variance channels and ``L_simple`` only the mean
    (Eq. 2.29). ``w = vlb_weight`` is ``lambda * T``: iDDPM's ``lambda = 0.001`` multiplies the VLB
    *summed over all T terms*, whose one-step Monte Carlo estimate is ``T * L_vlb(t)``; hence
    ``w = 0.001 * 1000 = 1`` for T = 1000 (spec ch. 2, Sect. 2.9 and erratum 13). Use
    ``vlb_weight = 0.001 * T`` for other T.

    With ``loss_type="l1"`` ``L_simple`` is the per-pixel mean *absolute* error instead,
    ``mean |eps - eps_theta|`` (book ch. 4, Eq. 4.7; brainSPADE's L1 flag, ch. 1 erratum 4).

    Args:
      key: PRNG key (split here for the step indices and the noise).
      model_fn: ``model_fn(x_t, t) -> out`` with ``x_t`` ``[B, ..., C]`` and ``t`` ``[B]`` int32
        (``schedule.timesteps`` of the drawn steps); ``out`` is ``[B, ..., C]``, or
        ``[B, ..., 2C]`` when ``hybrid``.
      x0: ``[B, ..., C]`` clean data, images in [-1, 1] (on the 8-bit grid for a meaningful
        decoder term).
      schedule: VP schedule with T steps.
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      hybrid: add ``L_vlb`` with a learned variance (iDDPM).
      vlb_weight: weight ``lambda * T`` of the one-step VLB term.
      loss_type: ``"l2"`` (mean squared error) or ``"l1"`` (mean absolute error) for ``L_simple``.

    Returns:
      ``(loss, metrics)``: scalar loss, and scalars ``"loss"``, ``"mse"`` (``"l2"``) or ``"mae"``
      (``"l1"``) and (hybrid) ``"vlb"`` (bits/dim).

    Raises:
      ValueError: for an unknown ``prediction`` or ``loss_type``, or an output with the wrong
        channel count.

    References:
      Ho et al. 2020, Eq. 14; Nichol & Dhariwal 2021, Sect. 3.1; book ch. 2, Eqs. 2.27-2.30.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    t_key, noise_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_timesteps)
    x_t, eps = q_sample(noise_key, x0, t, schedule)
    out = model_fn(x_t, schedule.timesteps[t]).astype(x0.dtype)
    pred, r = split_output(out, x_t)
    if hybrid != (r is not None):
        C = x0.shape[-1]
        raise ValueError(
            f"hybrid={hybrid} needs a model output with {2 * C if hybrid else C} channels "
            f"(C={C} data channels), got {out.shape[-1]}"
        )
    target = {"eps": eps, "x0": x0, "v": v_target(eps, x0, schedule.alpha_bar[t])}[prediction]
    err = pred - target
    simple = _mean_flat(err**2 if loss_type == "l2" else jnp.abs(err))  # [B]
    name = "mse" if loss_type == "l2" else "mae"
    if not hybrid:
        loss = jnp.mean(simple)
        return loss, {"loss": loss, name: loss}
    vlb = _vlb_bits_per_dim(jax.lax.stop_gradient(pred), r, x0, x_t, t, schedule, prediction)
    loss = jnp.mean(simple + vlb_weight * vlb)
    return loss, {"loss": loss, name: jnp.mean(simple), "vlb": jnp.mean(vlb)}


def _vlb_bits_per_dim(pred, r, x0, x_t, t, schedule, prediction) -> jax.Array:
    """Per-example ``L_vlb(t)`` in bits/dim for the reverse kernel (mean from ``pred``, variance from ``r``)."""
    _, x0_pred, _ = model_output_to_eps_x0(pred, x_t, t, schedule, prediction)
    model_mean, _, _ = q_posterior_mean_variance(x0_pred, x_t, t, schedule)
    model_log_var = reverse_log_variance(t, schedule, "learned", r)
    true_mean, _, true_log_var = q_posterior_mean_variance(x0, x_t, t, schedule)
    true_log_var = broadcast_coef(true_log_var, x0)
    kl = _mean_flat(normal_kl(true_mean, true_log_var, model_mean, model_log_var))
    nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var))
    return jnp.where(t == 0, nll, kl) / np.log(2.0)


def dsm_loss_ve(
    key: jax.Array,
    score_fn: Callable[[jax.Array, jax.Array], jax.Array],
    x0: jax.Array,
    sde: VESDE,
    *,
    t_eps: float = 1e-5,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Denoising score matching for a VE score model, ``lambda(sigma) = sigma^2`` weighting.

    .. math::
      L = \\mathbb E_{t, x_0, z}\\Big[\\sum_{pixels}
          \\big(\\sigma_t\\, s_\\theta(x_0 + \\sigma_t z, t) + z\\big)^2\\Big],
      \\quad t \\sim U(t_{eps}, 1)

    (the target ``grad log p(x_t|x_0) = -z/sigma_t`` of Eq. 7.12, times ``sigma_t``).

    Args:
      key: PRNG key (split here for ``t`` and ``z``).
      score_fn: ``score_fn(x_t, t) -> [B, ...]`` with ``t`` ``[B]`` continuous in (0, 1].
      x0: ``[B, ...]`` clean data.
      sde: the :class:`VESDE` giving ``sigma_t``.
      t_eps: smallest time drawn (score_sde: 1e-5).

    Returns:
      ``(loss, {"loss": loss})``: mean over the batch of the per-example sum over pixels.

    Raises:
      ValueError: if ``sde`` is not a :class:`VESDE`.

    References:
      Vincent 2011; Song et al. 2021, Eq. 7 and ``losses.py``; book ch. 7, Eq. 7.12.
    """
    if not isinstance(sde, VESDE):
        raise ValueError(f"sde must be a VESDE, got {type(sde).__name__}")
    t_key, noise_key = jax.random.split(key)
    t = jax.random.uniform(t_key, (x0.shape[0],), x0.dtype, minval=t_eps, maxval=1.0)
    sigma = sde.sigma(t)
    x_t, z = ve_perturb(noise_key, x0, sigma)
    residual = broadcast_coef(sigma, x0) * score_fn(x_t, t) + z
    loss = jnp.mean(jnp.sum(residual.reshape(x0.shape[0], -1) ** 2, axis=1))
    return loss, {"loss": loss}


def _mean_flat(x: jax.Array) -> jax.Array:
    """Mean over all but the leading (batch) axis: ``[B, ...] -> [B]``."""
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)
