"""Manifold-constrained gradient (MCG), VP/DDPM form: ancestral step, a likelihood gradient
through the network at the Tweedie estimate, then a projection onto the (noised) data.

Per step (spec ch. 7, Sect. 5.2.3, the inpainting/general form of the reference code)::

  x0_hat = Tweedie(x_i);   g = weight * grad_{x_i} ||y - A x0_hat||
  x'     = mu_tilde(x_i, x0_hat) + sqrt(beta_tilde_i) z - g
  y_{i-1} = sqrt(a_{i-1}) y + sqrt(1 - a_{i-1}) A z'                    # y noised to level i-1
  x_{i-1} = P(x', y_{i-1})                                              # op.project

The first two lines are :func:`gensynth.inverse.dps.dps_step` with ``scale = weight``, so MCG
is DPS's step followed by a projection. ``P`` is the exact projection onto ``{A x = y_{i-1}}``
when ``op.AAH_is_identity`` (else the operator's own data-consistency step, e.g. one Landweber step for SENSE, E10). At the last step ``a_{-1} = 1``, so the result is consistent with ``y``
itself. ``W`` of the paper is the identity here (CT's ``W = A^dagger`` filtering is left to
the operator). Prop. 7.1: on an affine data manifold the gradient through the network equals a
projected gradient on ``x0_hat`` (tested in ``tests/inverse/test_mcg.py``).

NFE: T network calls, each with a VJP.

References:
  Chung et al. 2022, "Improving Diffusion Models for Inverse Problems using Manifold
  Constraints", Eq. 14 and code; book ch. 7, Prop. 7.1 (Eqs. 7.35-7.36, erratum E14).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VPSchedule, respace
from gensynth.inverse.dps import dps_step
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.solver_base import (
    ModelFn,
    batch_A,
    batch_project,
    net_struct,
    resolve_layout,
    respaced_tau,
    run_net_steps,
    solver_info,
    split_prior,
)


def mcg(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    op: Any,
    y: jax.Array,
    *,
    weight: float = 0.1,
    num_steps: int | None = None,
    prediction: str = "eps",
    clip_x0: bool = False,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """MCG reconstruction of ``x`` from ``y = A x + n`` with a VP (DDPM) prior.

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      model_fn: ``model_fn(x, t) -> out`` in net layout, ``t [B']`` int32 original timesteps.
      schedule: the training VP schedule.
      op: operator on one image.
      y: ``[B, *meas_shape]``.
      weight: step on ``grad ||y - A x0_hat||`` (reference CT script: 0.1).
      num_steps: respaced steps (None: all T).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0_hat`` to [-1, 1].
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image-layout state after every step.

    Returns:
      ``(x [B, *image_shape], info)`` with ``info["nfe"] = info["vjps"] = num_steps``.
    """
    tau = respaced_tau(schedule, num_steps)
    layout = resolve_layout(layout, op, y)
    x, traj = _mcg(
        key, schedule, op, y, weight, model_fn, tau, prediction, clip_x0, layout, trajectory
    )
    return x, solver_info(len(tau), len(tau), traj)


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10))
def _mcg(key, schedule, op, y, weight, model_fn, tau, prediction, clip_x0, layout, trajectory):
    sched = respace(schedule, tau)
    K = sched.num_timesteps
    x, step_key = split_prior(key, net_struct(op, y, layout))

    def step(i, x):
        k = K - 1 - i
        ddpm_key, y_key = jax.random.split(jax.random.fold_in(step_key, i))
        x_prime = dps_step(
            ddpm_key,
            x,
            k,
            model_fn,
            sched,
            op,
            y,
            scale=weight,
            likelihood="gaussian",
            prediction=prediction,
            clip_x0=clip_x0,
            layout=layout,
        )
        a_prev = sched.alpha_bar_prev[k]
        z = layout.to_image(jax.random.normal(y_key, x.shape, x.dtype))
        y_prev = jnp.sqrt(a_prev) * y + jnp.sqrt(1.0 - a_prev) * batch_A(op, z)
        return layout.to_net(batch_project(op, layout.to_image(x_prime), y_prev))

    return run_net_steps(step, x, K, layout, trajectory)
