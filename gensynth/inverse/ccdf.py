"""Come-closer-diffuse-faster (CCDF): start the reverse process from a forward-diffused initial
reconstruction at ``t0 < T`` instead of pure noise, with data consistency at every step.

::

  x_{t0} = sqrt(a_{t0}) x_init + sqrt(1 - a_{t0}) z          # x_init: zero-filled, FBP, a net
  for t = t0 ... 0:  x0_hat = Tweedie(x_t);  x0_hat <- P(x0_hat, y);  DDIM/DDPM step

``P`` is ``op.project`` (exact when ``A A^H = I``). ``eta = 1`` in the ``"ddim"`` convention is
the DDPM ancestral step of the paper; the walk is :func:`gensynth.inverse.dds.dc_ddim_chain`.
Stochastic contraction keeps the error from ``x_init`` bounded, so ``t0 / T`` of 0.1-0.5
(book [7]; spec [impl] parameter) replaces the full ``T`` steps.

NFE: the number of steps (``t0 + 1`` by default), no VJP.

References:
  Chung, Sim & Ye 2022, "Come-Closer-Diffuse-Faster: Accelerating Conditional Diffusion Models
  for Inverse Problems through Stochastic Contraction"; book ch. 7, Sect. 7.5.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import VPSchedule, respace
from gensynth.inverse.dds import dc_ddim_chain
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.solver_base import (
    ModelFn,
    batch_project,
    resolve_layout,
    solver_info,
    split_prior,
)


def ccdf(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    op: Any,
    y: jax.Array,
    x_init: jax.Array,
    *,
    t0_fraction: float = 0.2,
    num_steps: int | None = None,
    eta: float = 1.0,
    eta_mode: str = "ddim",
    prediction: str = "eps",
    clip_x0: bool = False,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """CCDF reconstruction from an initial estimate.

    Args:
      key: PRNG key (forward diffusion of ``x_init``, then ``fold_in(key, i)`` per step).
      model_fn: ``model_fn(x, t) -> out`` in net layout, ``t [B']`` int32 original timesteps.
      schedule: the training VP schedule (T steps).
      op: operator on one image.
      y: ``[B, *meas_shape]``.
      x_init: ``[B, *image_shape]`` initial reconstruction (e.g. ``A^H y``).
      t0_fraction: ``t0 / T`` in (0, 1]; ``t0 = round(t0_fraction T) - 1``.
      num_steps: steps between ``t0`` and 0 (``round(linspace(0, t0, K))``); None: all ``t0 + 1``.
      eta: stochasticity (1 with ``"ddim"``: DDPM ancestral).
      eta_mode: ``"ddim"`` or ``"dds"``.
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0_hat`` to [-1, 1] before DC.
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image-layout state after every step.

    Returns:
      ``(x [B, *image_shape], info)`` with ``info["nfe"]`` the number of steps, no VJP.

    Raises:
      ValueError: for ``t0_fraction`` outside (0, 1] or ``num_steps`` outside [1, t0 + 1].
    """
    T = schedule.num_timesteps
    if not 0.0 < t0_fraction <= 1.0:
        raise ValueError(f"t0_fraction must be in (0, 1], got {t0_fraction}")
    t0 = max(int(round(t0_fraction * T)) - 1, 0)
    K = t0 + 1 if num_steps is None else num_steps
    if not 1 <= K <= t0 + 1:
        raise ValueError(f"num_steps must be in [1, {t0 + 1}] for t0 = {t0}, got {num_steps}")
    tau = tuple(sorted({int(s) for s in np.round(np.linspace(0, t0, K))}))
    layout = resolve_layout(layout, op, y)
    x, traj = _ccdf(
        key,
        schedule,
        op,
        y,
        x_init,
        eta,
        model_fn,
        tau,
        eta_mode,
        prediction,
        clip_x0,
        layout,
        trajectory,
    )
    return x, solver_info(len(tau), 0, traj)


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10, 11, 12))
def _ccdf(
    key,
    schedule,
    op,
    y,
    x_init,
    eta,
    model_fn,
    tau,
    eta_mode,
    prediction,
    clip_x0,
    layout,
    trajectory,
):
    sched = respace(schedule, tau)
    x0 = layout.to_net(x_init)
    z, step_key = split_prior(key, x0)
    a = sched.alpha_bar[-1]
    x = jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * z
    return dc_ddim_chain(
        step_key,
        x,
        sched,
        model_fn,
        lambda x0: batch_project(op, x0, y),
        eta=eta,
        eta_mode=eta_mode,
        prediction=prediction,
        clip_x0=clip_x0,
        layout=layout,
        trajectory=trajectory,
    )
