"""Decomposed diffusion sampler (DDS): Tweedie estimate, a few conjugate-gradient steps on the
data term inside the Krylov subspace, then a DDIM step (book ch. 7, Sect. 7.3.2.3).

Per step on ``tau = [980, 960, ..., 0]`` (spec Sect. 5.2.4)::

  eps = eps_theta(x, t);   x0_hat = (x - sqrt(1 - a_t) eps) / sqrt(a_t)       # 1 NFE, no grad
  gamma None (noiseless):  x0' = CG(v -> A^H A v,           A^H y,              x0_hat, M)
  gamma > 0  (noisy):      x0' = CG(v -> v + gamma A^H A v, x0_hat + gamma A^H y, x0_hat, M)
  x = sqrt(a_next) x0' + sqrt(1 - a_next) (eta z + sqrt(1 - eta^2) eps)      # Eq. 7.39, "dds" eta

with ``a_next = 1`` after the last step, which returns ``x0'``. ``eps`` is the pre-CG estimate
(Eq. 7.39). CG started at ``x0_hat`` stays in ``x0_hat + K_M(A^H A, A^H (y - A x0_hat))``
(Eq. 7.37 corrected, E13), so the null-space content of the prior is kept. For complex MRI the
network works on 2 real channels and CG on the complex image (``layout``).

:func:`dc_ddim_chain` is the shared loop (also used by CCDF with a projection as DC);
:func:`stateful_dc_ddim_chain` is the same loop with a DC step that carries a state (DDS-3D's
ADMM variables, :mod:`gensynth.inverse.dds3d`).

NFE: K network calls, no VJP; plus ``2 M`` operator calls per step.

References:
  Chung, Lee & Ye 2024, "Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse
  Problems", Algorithm 1 and code; book ch. 7, Eqs. 7.34-7.40.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax

from gensynth.diffusion import VPSchedule, ddim_step, respace
from gensynth.inverse.dc import cg_data_consistency
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.solver_base import (
    ModelFn,
    net_struct,
    resolve_layout,
    respaced_tau,
    run_steps,
    solver_info,
    split_prior,
    vp_tweedie,
)

DcFn = Callable[[jax.Array], jax.Array]
StatefulDcFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def stateful_dc_ddim_chain(
    key: jax.Array,
    x: jax.Array,
    dc_state: Any,
    sched: VPSchedule,
    model_fn: ModelFn,
    dc_fn: StatefulDcFn,
    *,
    eta: float | jax.Array,
    eta_mode: str,
    prediction: str,
    clip_x0: bool,
    layout: ImageLayout,
    trajectory: bool,
) -> tuple[jax.Array, Any, jax.Array | None]:
    """:func:`dc_ddim_chain` with a data-consistency step that carries a state across the steps,
    ``(x0_hat, state) <- dc_fn(x0_hat, state)`` (DDS-3D: the ADMM split and dual variables).

    Args:
      key: PRNG key; step ``i`` uses ``fold_in(key, i)``.
      x: ``[B', ...]`` starting state (net layout) at the last step of ``sched``.
      dc_state: the initial state of ``dc_fn`` (a pytree).
      sched: the respaced schedule.
      model_fn: ``model_fn(x, t) -> out``.
      dc_fn: ``(x0_hat [B, *image_shape], state) -> (x0_hat, state)`` in image layout.
      eta, eta_mode, prediction, clip_x0, layout, trajectory: as :func:`dc_ddim_chain`.

    Returns:
      ``(x [B, *image_shape], final state, trajectory or None)``.
    """
    K = sched.num_timesteps

    def step(i, carry):
        x, state = carry
        k = K - 1 - i
        eps, x0 = vp_tweedie(model_fn, x, k, sched, prediction, clip_x0)
        x0, state = dc_fn(layout.to_image(x0), state)
        a, a_prev = sched.alpha_bar[k], sched.alpha_bar_prev[k]
        key_i = jax.random.fold_in(key, i)
        x = ddim_step(key_i, layout.to_net(x0), eps, a, a_prev, eta=eta, eta_mode=eta_mode)
        return x, state

    snapshot = (lambda carry: layout.to_image(carry[0])) if trajectory else None
    (x, state), traj = run_steps(step, (x, dc_state), K, snapshot)
    return layout.to_image(x), state, traj


def dc_ddim_chain(
    key: jax.Array,
    x: jax.Array,
    sched: VPSchedule,
    model_fn: ModelFn,
    dc_fn: DcFn,
    *,
    eta: float | jax.Array,
    eta_mode: str,
    prediction: str,
    clip_x0: bool,
    layout: ImageLayout,
    trajectory: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """DDIM walk over every step of ``sched`` with ``x0_hat <- dc_fn(x0_hat)`` at each step.

    Args:
      key: PRNG key; step ``i`` uses ``fold_in(key, i)``.
      x: ``[B', ...]`` starting state (net layout) at the last step of ``sched``.
      sched: the respaced schedule.
      model_fn: ``model_fn(x, t) -> out``.
      dc_fn: data consistency on ``x0_hat`` in image layout ``[B, *image_shape]``.
      eta: DDIM stochasticity.
      eta_mode: ``"ddim"`` (Eq. 7.21) or ``"dds"`` (DDS code).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0_hat`` to [-1, 1] before DC.
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: stack the image-layout state after every step.

    Returns:
      ``(x [B, *image_shape], trajectory or None)``.
    """
    x, _, traj = stateful_dc_ddim_chain(
        key,
        x,
        (),
        sched,
        model_fn,
        lambda x0, state: (dc_fn(x0), state),
        eta=eta,
        eta_mode=eta_mode,
        prediction=prediction,
        clip_x0=clip_x0,
        layout=layout,
        trajectory=trajectory,
    )
    return x, traj


def dds(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    op: Any,
    y: jax.Array,
    *,
    num_steps: int = 50,
    n_cg: int = 5,
    eta: float = 0.85,
    eta_mode: str = "dds",
    gamma: float | None = None,
    prediction: str = "eps",
    clip_x0: bool = False,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """DDS reconstruction of ``x`` from ``y = A x + n`` with a VP (DDPM) prior.

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      model_fn: ``model_fn(x, t) -> out`` in net layout, ``t [B']`` int32 original timesteps.
      schedule: the training VP schedule (T = 1000).
      op: operator on one image.
      y: ``[B, *meas_shape]``.
      num_steps: K sampling steps, ``tau = arange(0, T, T // K)`` (50: 0, 20, ..., 980).
      n_cg: M CG iterations per step (5).
      eta: stochasticity (0.85 in the "dds" convention).
      eta_mode: ``"dds"`` or ``"ddim"``.
      gamma: None for noiseless data (CG on ``A^H A x = A^H y``), else the weight of the noisy
        variant ``argmin gamma/2 ||y - A x||^2 + 1/2 ||x - x0_hat||^2`` (reference: 1.0).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0_hat`` to [-1, 1] before CG.
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image-layout state after every step.

    Returns:
      ``(x [B, *image_shape], info)`` with ``info["nfe"] = num_steps``, ``info["vjps"] = 0``.

    Raises:
      ValueError: for ``n_cg < 1``.
    """
    if n_cg < 1:
        raise ValueError(f"n_cg must be >= 1, got {n_cg}")
    tau = respaced_tau(schedule, num_steps, "uniform")
    layout = resolve_layout(layout, op, y)
    x, traj = _dds(
        key,
        schedule,
        op,
        y,
        eta,
        gamma,
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


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10, 11, 12, 13))
def _dds(
    key,
    schedule,
    op,
    y,
    eta,
    gamma,
    model_fn,
    tau,
    n_cg,
    eta_mode,
    prediction,
    clip_x0,
    layout,
    trajectory,
):
    x, step_key = split_prior(key, net_struct(op, y, layout))

    def dc_fn(x0):
        return jax.vmap(lambda x0, y: cg_data_consistency(x0, y, op, n_cg, gamma))(x0, y)

    return dc_ddim_chain(
        step_key,
        x,
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
