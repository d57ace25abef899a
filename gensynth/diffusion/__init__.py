"""Diffusion core: schedules, SDEs, forward processes, parameterisations, losses, guidance and
samplers (DDPM, DDIM, DPM-Solver++, predictor-corrector), plus exact Gaussian denoisers for tests.

Conventions:
  - Discrete VP steps are integers ``t in {0..T-1}`` (code convention; book ``t = t + 1``).
  - Continuous SDE time ``t`` is a float in [0, 1].
  - A *model function* is ``model_fn(x, t) -> out``: ``x`` ``[B, ..., C]``, ``t`` ``[B]`` int32;
    ``out`` predicts eps, x0 or v (``[B, ..., C]``), with C more channels for a learned variance.
  - A *score function* is ``score_fn(x, t) -> [B, ...]`` with ``t`` ``[B]`` continuous.
"""

from gensynth.diffusion.analytic import gaussian_eps_fn, gaussian_score_fn
from gensynth.diffusion.ddim import ddim_invert, ddim_sample, ddim_step
from gensynth.diffusion.ddpm import ddpm_sample, ddpm_step
from gensynth.diffusion.dpm_solver import (
    dpm_solver_pp_sample,
    dpm_solver_pp_step,
    half_log_snr,
    logsnr_timesteps,
)
from gensynth.diffusion.forward import q_sample, ve_perturb
from gensynth.diffusion.guidance import (
    cfg_combine,
    classifier_guided_mean,
    drop_labels,
    make_cfg_model_fn,
    make_classifier_guided_eps_fn,
)
from gensynth.diffusion.latent import (
    Condition,
    decode_from_latents,
    drop_condition,
    encode_to_latents,
    estimate_latent_scale,
    make_conditional_model_fn,
    null_condition,
)
from gensynth.diffusion.likelihood import discretized_gaussian_log_likelihood, normal_kl
from gensynth.diffusion.losses import diffusion_loss, dsm_loss_ve
from gensynth.diffusion.parameterization import (
    broadcast_coef,
    eps_to_score,
    eps_to_x0,
    model_output_to_eps_x0,
    score_to_eps,
    split_output,
    tweedie_x0,
    v_target,
    v_to_eps_x0,
    vp_s_sigma,
    x0_to_eps,
)
from gensynth.diffusion.pc import langevin_step, pc_sample, reverse_diffusion_step
from gensynth.diffusion.posterior import q_posterior_mean_variance, reverse_log_variance
from gensynth.diffusion.schedules import (
    VPSchedule,
    cosine_betas,
    linear_betas,
    respace,
    spaced_timesteps,
    ve_sigma,
    ve_sigmas,
    vp_schedule,
)
from gensynth.diffusion.sde import VESDE, VPSDE

__all__ = [
    "VESDE",
    "VPSDE",
    "Condition",
    "VPSchedule",
    "broadcast_coef",
    "cfg_combine",
    "classifier_guided_mean",
    "cosine_betas",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "decode_from_latents",
    "diffusion_loss",
    "discretized_gaussian_log_likelihood",
    "dpm_solver_pp_sample",
    "dpm_solver_pp_step",
    "drop_condition",
    "drop_labels",
    "dsm_loss_ve",
    "encode_to_latents",
    "eps_to_score",
    "eps_to_x0",
    "estimate_latent_scale",
    "gaussian_eps_fn",
    "gaussian_score_fn",
    "half_log_snr",
    "langevin_step",
    "linear_betas",
    "logsnr_timesteps",
    "make_cfg_model_fn",
    "make_classifier_guided_eps_fn",
    "make_conditional_model_fn",
    "model_output_to_eps_x0",
    "normal_kl",
    "null_condition",
    "pc_sample",
    "q_posterior_mean_variance",
    "q_sample",
    "respace",
    "reverse_diffusion_step",
    "reverse_log_variance",
    "score_to_eps",
    "spaced_timesteps",
    "split_output",
    "tweedie_x0",
    "v_target",
    "v_to_eps_x0",
    "ve_perturb",
    "ve_sigma",
    "ve_sigmas",
    "vp_s_sigma",
    "vp_schedule",
    "x0_to_eps",
]
