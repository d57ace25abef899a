"""DiffusionMBIR: 3D reconstruction from a 2D diffusion prior. Slice-wise VE predictor-corrector
updates (all slices of all volumes in one network call) and one ADMM iteration with TV along z
per diffusion step (spec ch. 7, Sect. 5.3)::

  x <- PC(x) on every slice
  x <- CG(v -> A^H A v + rho D_z^T D_z v,  A^H y + rho D_z^T (z - u),  x0 = x,  n_cg)
  z <- shrink(D_z x + u, lambda / rho);   u <- u + D_z x - z

for ``min_x 1/2 ||y - A x||^2 + lambda ||D_z x||_1`` (:func:`gensynth.inverse.dc.admm_tv_z`).
``D_z`` is the circular forward difference along the slice axis, ``(z, u)`` start at 0 and
persist across diffusion steps, and a final ``op.project``
per slice (CT: the normalised backprojection with ``lambda = 1``) ends the run. The PC update is
score-MRI's :func:`gensynth.inverse.score_mri.ve_pc_step` without its per-update DC.

NFE: ``N (1 + M)`` calls on ``B D`` slices, no VJP.

References:
  Chung, Ryu, McCann, Klasky & Ye 2023, "Solving 3D Inverse Problems using Pre-trained 2D
  Diffusion Models" (DiffusionMBIR), Algorithm 1 and code; book ch. 7, Sect. 7.5 ([9]).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VESDE
from gensynth.inverse.dc import ADMMState, admm_tv_z
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.score_mri import SCORE_MRI_SDE, ve_pc_step, ve_time_grid
from gensynth.inverse.solver_base import (
    ModelFn,
    batch_project,
    net_struct,
    resolve_layout,
    run_steps,
    slice_stack,
    solver_info,
    split_prior,
)


def diffusion_mbir(
    key: jax.Array,
    score_fn: ModelFn,
    op: Any,
    y: jax.Array,
    *,
    sde: VESDE = SCORE_MRI_SDE,
    num_steps: int = 2000,
    n_corrector: int = 1,
    snr: float = 0.16,
    t_eps: float = 1e-5,
    rho: float = 10.0,
    lam: float = 0.04,
    n_cg: int = 1,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """DiffusionMBIR reconstruction of volumes ``[B, D, H, W]`` from per-slice measurements.

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      score_fn: 2D score ``score_fn(x, t)`` on net-layout slices ``[B D, ...]``, ``t`` continuous.
      op: real operator on one slice ``[H, W]`` (e.g. sparse-view CT).
      y: ``[B, D, *meas_shape]``.
      sde: VE SDE of the prior (``sigma_max = 378``).
      num_steps: N predictor steps (2000).
      n_corrector: M corrector steps per predictor step (1).
      snr: corrector SNR (0.16).
      t_eps: smallest time (1e-5).
      rho: ADMM penalty (10).
      lam: TV-z weight (0.04).
      n_cg: CG iterations per ADMM x-update (1).
      layout: net/image layout of one slice.
      trajectory: also return the volumes after every step.

    Returns:
      ``(x [B, D, H, W], info)`` with ``info["nfe"] = N (1 + M)`` (calls on ``B D`` slices).

    Raises:
      ValueError: for ``num_steps < 1``, ``n_corrector < 0``, ``n_cg < 1`` or ``y`` with fewer
        than 2 axes.
    """
    if num_steps < 1 or n_corrector < 0 or n_cg < 1:
        raise ValueError(
            "need num_steps >= 1, n_corrector >= 0, n_cg >= 1; "
            f"got {num_steps}, {n_corrector}, {n_cg}"
        )
    layout = resolve_layout(layout, op, slice_stack(op, y)[0])
    x, traj = _mbir(
        key,
        op,
        y,
        sde,
        snr,
        t_eps,
        rho,
        lam,
        score_fn,
        num_steps,
        n_corrector,
        n_cg,
        layout,
        trajectory,
    )
    return x, solver_info(num_steps * (1 + n_corrector), 0, traj)


@functools.partial(jax.jit, static_argnums=(8, 9, 10, 11, 12, 13))
def _mbir(key, op, y, sde, snr, t_eps, rho, lam, score_fn, N, M, n_cg, layout, trajectory):
    flat_y, vol = slice_stack(op, y)

    def to_volume(x_net):
        return layout.to_image(x_net).reshape(vol.shape)

    def to_slices(x):
        return layout.to_net(x.reshape(flat_y.shape[:1] + vol.shape[2:]))

    x, step_key = split_prior(key, net_struct(op, flat_y, layout), sde.prior_sampling)
    ts, ts_next = ve_time_grid(N, t_eps, x.dtype)
    admm = jax.vmap(lambda x, y, state: admm_tv_z(x, y, op, state, rho, lam, n_cg))

    def step(i, carry):
        x, state = carry
        k = jax.random.fold_in(step_key, i)
        x = ve_pc_step(k, x, i, score_fn, sde, ts, ts_next, snr=snr, n_corrector=M)
        v, state = admm(to_volume(x), y, state)
        return to_slices(v), state

    zeros = jnp.zeros(vol.shape, vol.dtype)  # z = u = 0 at the start, as the reference code
    snapshot = (lambda c: to_volume(c[0])) if trajectory else None
    (x, _), traj = run_steps(step, (x, ADMMState(z=zeros, u=zeros)), N, snapshot)
    x = batch_project(op, layout.to_image(x), flat_y).reshape(vol.shape)
    return x, traj
