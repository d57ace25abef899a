"""3D DDS: the decomposed diffusion sampler on a stack of slices with a 2D prior, where the
per-step CG data consistency becomes ONE ADMM iteration with total variation along z (spec
ch. 7, Sect. 5.2.4, last bullet; DDS Fig. 7.5b)::

  eps = eps_theta(x, t) on all B D slices;  x0_hat = Tweedie(x)          # 1 NFE, no grad
  x0' = CG(v -> A^H A v + rho D_z^T D_z v,  A^H y + rho D_z^T (z - u),  x0 = x0_hat,  M)
  z <- shrink(D_z x0' + u, lam / rho);   u <- u + D_z x0' - z
  x = sqrt(a_next) x0' + sqrt(1 - a_next) (eta n + sqrt(1 - eta^2) eps)  # as 2D DDS

per volume, for ``min 1/2 ||y - A x||^2 + lam ||D_z x||_1`` (:func:`gensynth.inverse.dc.admm_tv_z`).
``(z, u)`` start at 0 (as DiffusionMBIR's reference code) and persist across the diffusion
steps; the last step returns ``x0'``. The loop is 2D DDS's
(:func:`gensynth.inverse.dds.stateful_dc_ddim_chain`) with the ADMM iteration as its DC step.

Noisy variant (``gamma``, [impl], as 2D DDS's): the x-update also keeps DDS's proximal term
``1/(2 gamma) ||x - x0_hat||^2``, i.e. it solves
``(A^H A + I / gamma + rho D_z^T D_z) x = A^H y + x0_hat / gamma + rho D_z^T (z - u)``,
one ADMM iteration on ``gamma/2 ||y - A x||^2 + 1/2 ||x - x0_hat||^2 + gamma lam ||D_z x||_1``.
For one slice per volume (``D = 1``, where circular ``D_z`` is zero) this is 2D DDS exactly,
noiseless or noisy.

What holds exactly once the x-update is solved (``n_cg`` at least the number of unknowns of a
volume): its normal equations summed over the slices lose the ``D_z^T`` terms, so
``sum_d A^H (y_d - A x_d) = 0`` for any ``lam`` -- the slices are data-consistent on average
(for ``A A^H = I``: ``mean_d A x_d = mean_d y_d``), though each slice alone is not.

NFE: K calls on ``B D`` slices, no VJP; plus ``2 M`` slice-operator calls per slice and step.

References:
  Chung, Lee & Ye 2024, "Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse
  Problems", Sect. 4 (3D) and code; Chung et al. 2023 (DiffusionMBIR) for the ADMM-TV-z step;
  book ch. 7, Fig. 7.5b.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VPSchedule, respace
from gensynth.inverse.dc import ADMMState, admm_tv_z
from gensynth.inverse.dds import stateful_dc_ddim_chain
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.solver_base import (
    ModelFn,
    net_struct,
    resolve_layout,
    respaced_tau,
    slice_stack,
    solver_info,
    split_prior,
)


def dds_3d(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    op: Any,
    y: jax.Array,
    *,
    num_steps: int = 50,
    n_cg: int = 5,
    rho: float = 10.0,
    lam: float = 0.04,
    eta: float = 0.85,
    eta_mode: str = "dds",
    gamma: float | None = None,
    prediction: str = "eps",
    clip_x0: bool = False,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """3D DDS reconstruction of volumes ``[B, D, *image_shape]`` from per-slice measurements.

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      model_fn: 2D ``model_fn(x, t) -> out`` on net-layout slices ``[B D, ...]``, ``t [B D]``
        int32 original timesteps.
      schedule: the training VP schedule (T = 1000).
      op: operator on one slice.
      y: ``[B, D, *meas_shape]``.
      num_steps: K sampling steps, ``tau = arange(0, T, T // K)`` (50).
      n_cg: CG iterations of the ADMM x-update per step (5).
      rho: ADMM penalty > 0 (10).
      lam: TV-z weight >= 0 (0.04 sparse-view CT; the DDS script uses 0.4 for limited angle).
      eta: stochasticity (0.85 in the "dds" convention).
      eta_mode: ``"dds"`` or ``"ddim"``.
      gamma: None for noiseless data, else the data weight > 0 of the noisy variant (see the
        module docstring; 2D DDS's reference value 1.0).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0_hat`` to [-1, 1] before the ADMM step.
      layout: net/image layout of one slice (None:
        :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the volumes after every step, ``[K, B, D, *image_shape]``.

    Returns:
      ``(x [B, D, *image_shape], info)`` with ``info["nfe"] = num_steps`` (calls on ``B D``
      slices) and ``info["vjps"] = 0``.

    Raises:
      ValueError: for ``n_cg < 1``, ``rho <= 0``, ``lam < 0``, ``gamma <= 0`` or ``y`` with
        fewer than 2 axes.
    """
    if n_cg < 1:
        raise ValueError(f"n_cg must be >= 1, got {n_cg}")
    if not rho > 0 or not lam >= 0:
        raise ValueError(f"need rho > 0 and lam >= 0, got rho={rho}, lam={lam}")
    if gamma is not None and not gamma > 0:
        raise ValueError(f"gamma must be None or > 0, got {gamma}")
    tau = respaced_tau(schedule, num_steps, "uniform")
    layout = resolve_layout(layout, op, slice_stack(op, y)[0])
    x, traj = _dds_3d(
        key,
        schedule,
        op,
        y,
        eta,
        gamma,
        rho,
        lam,
        model_fn,
        tau,
        n_cg,
        eta_mode,
        prediction,
        clip_x0,
        layout,
        trajectory,
    )
    return x, solver_info(len(tau), 0, traj)


@functools.partial(jax.jit, static_argnums=(8, 9, 10, 11, 12, 13, 14, 15))
def _dds_3d(
    key,
    schedule,
    op,
    y,
    eta,
    gamma,
    rho,
    lam,
    model_fn,
    tau,
    n_cg,
    eta_mode,
    prediction,
    clip_x0,
    layout,
    trajectory,
):
    flat_y, vol = slice_stack(op, y)
    x, step_key = split_prior(key, net_struct(op, flat_y, layout))
    admm = jax.vmap(lambda x, y, state: admm_tv_z(x, y, op, state, rho, lam, n_cg, gamma))

    def dc_fn(x0, state):  # x0 [B D, *image_shape]; one ADMM iteration per volume
        x0, state = admm(x0.reshape(vol.shape), y, state)
        return x0.reshape(flat_y.shape[:1] + vol.shape[2:]), state

    zeros = jnp.zeros(vol.shape, vol.dtype)
    x, _, traj = stateful_dc_ddim_chain(
        step_key,
        x,
        ADMMState(z=zeros, u=zeros),
        respace(schedule, tau),
        model_fn,
        dc_fn,
        eta=eta,
        eta_mode=eta_mode,
        prediction=prediction,
        clip_x0=clip_x0,
        layout=layout,
        trajectory=trajectory,
    )
    return x.reshape(vol.shape), None if traj is None else traj.reshape((-1,) + vol.shape)
