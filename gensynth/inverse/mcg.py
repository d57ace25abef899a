"""Manifold-constrained gradient (MCG), VP/DDPM form: ancestral step, a likelihood gradient
through the network at the Tweedie estimate, then a projection onto the (noised) data.

Per step (spec ch. 7, Sect. 5.2.3, the inpainting/general form of the reference code)::

  x0_hat = Tweedie(x_i);   g = weight * grad_{x_i} ||y - A x0_hat||
  x'     = mu_tilde(x_i, x0_hat) + sqrt(beta_tilde_i) z - g
  y_{i-1} = sqrt(a_{i-1}) y + sqrt(1 - a_{i-1}) A z'                    # y noised to level i-1
  x_{i-1} = P(x', y_{i-1})                                              # op.project

The first two lines are :func:`gensynth.inverse.dps.dps_step` with ``scale = weight``, so MCG
is DPS's step followed by a projection. ``P`` is the exact projection onto ``{A x = y_{i-1}}``
when ``op.AAH_is_identity`` (else the operator's own data-consistency step, e.g. one Landweber
step for SENSE, E10). At the last step ``a_{-1} = 1``, so the result is consistent with ``y``
itself. ``W`` of the paper is the identity here. Prop. 7.1: on an affine data manifold the
gradient through the network equals a projected gradient on ``x0_hat`` (tested in
``tests/inverse/test_mcg.py``).

:func:`mcg_ct` is the reference's sparse-view / limited-angle CT script (spec Sect. 5.2.3): a
VE predictor-corrector base (score-MRI's :func:`~gensynth.inverse.score_mri.ve_pc_step`) whose
corrector carries the gradient, from the same network call as its Langevin step, and the data
consistency (normalised back-projection, :func:`gensynth.inverse.dc.normalized_backprojection`)::

  x0_hat = x_i + sigma_i^2 s_theta(x_i);   g = weight * grad_{x_i} ||A^dagger (y - A x0_hat)||
  g <- A_full^dagger((A_full g) * (1 - view_mask))          # A^dagger, A_full^dagger: FBP
  x' = Langevin(x_i);   x' <- x' + lam_i A^T (y - A x') / A^T A 1 - g       # corrector (M times)
  x_{i+1} = predictor(x')          # t_i -> t_{i+1}; its noise-free mean at the last step

with ``lam_i`` linear from 1.0 to 0.6 over the N steps. The gradient is DPS's
(:func:`gensynth.inverse.dps.likelihood_grad` with the ``"pinv"`` weighting). The reference
script runs the predictor first and then the corrector with the same ``t_i`` (so its corrector
sees the predicted state with the previous level's score and its run ends on a DC); here the
corrector runs at the level of its state, as score-MRI's code. The view-mask
filter does NOT make ``A g = 0`` on the measured views: since the ramp filter and the
back-projection act view by view, it equals ``fbp(A_full, A_full g) - (V / V_full) fbp(A, A g)``
exactly, and for views as redundant as 180 over a small image it mostly scales ``g`` by about
``1 - V / V_full`` on measured and unmeasured views alike (measured at 16 px, 30 of 180 views:
both projections shrink to 0.64).

NFE: T network calls, each with a VJP (:func:`mcg`); ``N (1 + M)`` calls of which ``N M`` with a
VJP (:func:`mcg_ct`).

References:
  Chung et al. 2022, "Improving Diffusion Models for Inverse Problems using Manifold
  Constraints", Eq. 14 and code (``get_pc_radon_MCG``); book ch. 7, Prop. 7.1 (Eqs. 7.35-7.36,
  erratum E14).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import VESDE, VPSchedule, broadcast_coef, langevin_step, respace
from gensynth.inverse.ct import Radon, fbp, sparse_view_angles
from gensynth.inverse.dc import normalized_backprojection
from gensynth.inverse.dps import dps_step, likelihood_grad, per_net_sample
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.score_mri import SCORE_MRI_SDE, ve_pc_step, ve_time_grid
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

ANGLE_TOL = 1e-5  # radians; a measured view matches a full-set view within this


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


def view_mask(full_op: Radon, op: Radon) -> jax.Array:
    """Which views of ``full_op`` the measured ``op`` has: ``[V_full]`` float32 in {0, 1}.

    Raises:
      ValueError: when a view of ``op`` is not one of ``full_op``'s (within 1e-5 rad) or the
        geometries (image size, detector bins) differ.
    """
    if (op.image_size, op.n_det) != (full_op.image_size, full_op.n_det):
        raise ValueError(
            f"op: image_size/n_det {op.image_size}/{op.n_det} differ from the full view set's "
            f"{full_op.image_size}/{full_op.n_det}"
        )
    hits = np.abs(np.asarray(full_op.angles)[:, None] - np.asarray(op.angles)[None]) < ANGLE_TOL
    if not hits.any(axis=0).all():
        raise ValueError(
            f"op: its {op.angles.shape[0]} view angles must lie on the full set of "
            f"{full_op.angles.shape[0]} views (k pi / {full_op.angles.shape[0]}); choose a "
            "full_views that the measured views divide"
        )
    return jnp.asarray(hits.any(axis=1), jnp.float32)


def unmeasured_view_part(full_op: Radon, mask: jax.Array, g: jax.Array) -> jax.Array:
    """MCG-CT's filter ``A_full^dagger((A_full g) * (1 - mask))`` of one image ``g [N, N]``.

    FBP (:func:`gensynth.inverse.ct.fbp`) of the full-view sinogram of ``g`` with the measured
    views zeroed. It equals ``fbp(A_full, A_full g) - (V / V_full) fbp(A, A g)`` (``A`` the
    measured views) -- not an image without measured-view content (module docstring).

    Args:
      full_op: the full view set.
      mask: ``[V_full]`` from :func:`view_mask`.
      g: image ``[N, N]`` float32.

    Returns:
      image ``[N, N]`` float32.
    """
    return fbp(full_op, full_op.A(g) * (1.0 - mask)[:, None])


def mcg_ct_lambdas(num_steps: int, start: float = 1.0, end: float = 0.6) -> jax.Array:
    """The DC relaxation ``lam_i`` of step ``i`` of :func:`mcg_ct`: linear from ``start`` to
    ``end`` over ``num_steps`` steps, ``[N]`` float32.

    >>> mcg_ct_lambdas(3).tolist()
    [1.0, 0.800000011920929, 0.6000000238418579]
    """
    return jnp.linspace(start, end, num_steps, dtype=jnp.float32)


def mcg_ct(
    key: jax.Array,
    score_fn: ModelFn,
    op: Radon,
    y: jax.Array,
    *,
    full_views: int = 180,
    sde: VESDE = SCORE_MRI_SDE,
    num_steps: int = 2000,
    n_corrector: int = 1,
    snr: float = 0.16,
    t_eps: float = 1e-5,
    weight: float = 0.1,
    lam_start: float = 1.0,
    lam_end: float = 0.6,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """MCG for sparse-view / limited-angle CT on a VE score prior (reference CT script).

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      score_fn: ``score_fn(x, t) -> [B', ...]`` in net layout, ``t [B']`` continuous in (0, 1].
      op: the measured :class:`~gensynth.inverse.ct.Radon` (its views on the full set).
      y: ``[B, V, D]`` sinograms.
      full_views: views of the full set, uniform over [0, pi) (180 = 1 degree).
      sde: the VE SDE of the prior (``sigma_max = 378``).
      num_steps: N predictor steps (2000).
      n_corrector: M corrector steps per predictor step, each with the gradient (1).
      snr: corrector SNR (0.16).
      t_eps: smallest time of the grid (1e-5).
      weight: step on ``grad ||A^dagger (y - A x0_hat)||`` (0.1).
      lam_start, lam_end: the DC relaxation, linear over the steps (1.0 -> 0.6).
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image after every predictor step.

    Returns:
      ``(x [B, N, N], info)`` with ``info["nfe"] = N (1 + M)`` and ``info["vjps"] = N M``.

    Raises:
      ValueError: for ``num_steps < 1``, ``n_corrector < 1`` or views of ``op`` not on the full
        set; TypeError for an ``op`` that is not a :class:`~gensynth.inverse.ct.Radon`.
    """
    if num_steps < 1 or n_corrector < 1:
        raise ValueError(
            f"need num_steps >= 1 and n_corrector >= 1 (the gradient is taken in the "
            f"corrector), got {num_steps}, {n_corrector}"
        )
    if not isinstance(op, Radon):
        raise TypeError(f"op: mcg_ct needs a Radon operator, got {type(op).__name__}")
    full_op = Radon.create(sparse_view_angles(full_views), op.image_size, op.n_det)
    mask = view_mask(full_op, op)
    lams = mcg_ct_lambdas(num_steps, lam_start, lam_end)
    layout = resolve_layout(layout, op, y)
    x, traj = _mcg_ct(
        key,
        op,
        full_op,
        mask,
        y,
        sde,
        snr,
        t_eps,
        weight,
        lams,
        score_fn,
        num_steps,
        n_corrector,
        layout,
        trajectory,
    )
    return x, solver_info(num_steps * (1 + n_corrector), num_steps * n_corrector, traj)


@functools.partial(jax.jit, static_argnums=(10, 11, 12, 13, 14))
def _mcg_ct(
    key, op, full_op, mask, y, sde, snr, t_eps, weight, lams, score_fn, N, M, layout, trajectory
):
    x, step_key = split_prior(key, net_struct(op, y, layout), sde.prior_sampling)
    ts, ts_next = ve_time_grid(N, t_eps, x.dtype)
    nbp = jax.vmap(normalized_backprojection, in_axes=(0, 0, None, None))
    view_filter = jax.vmap(lambda g: unmeasured_view_part(full_op, mask, g))

    def dc(x, lam):
        return layout.to_net(nbp(layout.to_image(x), y, op, lam))

    def step(i, x):
        def corrector(key, x, t, t_next):
            sigma2 = broadcast_coef(sde.sigma(t) ** 2, x)
            x0, r2, g = likelihood_grad(
                lambda x: x + sigma2 * score_fn(x, t), op, x, y, likelihood="pinv", layout=layout
            )
            score = (x0 - x) / sigma2  # the score of this call, recovered from its Tweedie
            x, _ = langevin_step(key, lambda *_: score, sde, x, t, t_next, snr)
            g = per_net_sample(weight / (2.0 * jnp.sqrt(r2) + 1e-12), x, layout) * g
            return dc(x, lams[i]) - layout.to_net(view_filter(layout.to_image(g)))

        k = jax.random.fold_in(step_key, i)
        return ve_pc_step(
            k, x, i, score_fn, sde, ts, ts_next, snr=snr, n_corrector=M, corrector=corrector
        )

    return run_net_steps(step, x, N, layout, trajectory)
