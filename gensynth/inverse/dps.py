"""Diffusion posterior sampling (DPS): an ancestral VP step followed by a gradient step on the
likelihood evaluated at the Tweedie estimate, with the gradient taken through the network.

Per step (spec ch. 7, Sect. 5.2.2; DPS Algorithms 1-2)::

  x0_hat = (x_i - sqrt(1 - a_i) eps_theta(x_i, i)) / sqrt(a_i)          # Eq. 7.22
  x'     = mu_tilde(x_i, x0_hat) + sqrt(beta_tilde_i) z                  # DDPM posterior form
  x_{i-1} = x' - zeta_i grad_{x_i} r^2,   r^2 = ||y - A x0_hat||^2_Lambda, zeta_i = zeta' / r

Gaussian noise: ``Lambda = I``. Poisson noise: ``Lambda = diag(1 / (2 max(y_j, 1e-3)))`` (the
Gaussian approximation of Poisson counts, variance ~ y_j; spec [impl]). The reference code
steps with ``scale * grad ||y - A x0_hat||``; since ``grad r = grad r^2 / (2 r)`` that is
``zeta' = scale / 2`` here, and the solver takes the code's ``scale``.

NFE: T network calls, each with a VJP through the network (``needs_vjp``).

References:
  Chung et al. 2023, "Diffusion Posterior Sampling for General Noisy Inverse Problems",
  Algorithms 1-2 and code; book ch. 7, Eqs. 7.32-7.33.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VPSchedule, broadcast_coef, ddpm_step, respace
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.solver_base import (
    ModelFn,
    batch_A,
    net_struct,
    resolve_layout,
    respaced_tau,
    run_net_steps,
    solver_info,
    split_prior,
    sq_norm,
    vp_tweedie,
)

LIKELIHOODS = ("gaussian", "poisson")
RESIDUAL_WEIGHTS = (*LIKELIHOODS, "pinv")  # "pinv": MCG-CT's W = A^dagger, not a noise model
POISSON_FLOOR = 1e-3


def residual_sq_norm(
    op: Any, x0: jax.Array, y: jax.Array, likelihood: str = "gaussian"
) -> jax.Array:
    """Per-sample ``r^2 = ||y - A x0||^2_Lambda`` -> ``[B]``.

    Args:
      op: operator on one image.
      x0: ``[B, *image_shape]`` image estimate.
      y: ``[B, *meas_shape]`` measurements (counts for ``"poisson"``).
      likelihood: ``"gaussian"`` (``Lambda = I``), ``"poisson"``
        (``Lambda = diag(1 / (2 max(y, 1e-3)))``) or ``"pinv"`` (``||A^dagger (y - A x0)||^2``,
        ``Lambda = A^dagger^H A^dagger``: MCG's ``W = A^dagger`` weighting, FBP for CT;
        needs ``op.A_dagger``).

    Returns:
      ``[B]`` weighted squared residual norms.
    """
    r = y - batch_A(op, x0)
    if likelihood == "gaussian":
        return sq_norm(r)
    if likelihood == "poisson":
        return sq_norm(r / jnp.sqrt(2.0 * jnp.maximum(jnp.real(y), POISSON_FLOOR)))
    if likelihood == "pinv":
        return sq_norm(jax.vmap(op.A_dagger)(r))
    raise ValueError(f"likelihood must be one of {RESIDUAL_WEIGHTS}, got {likelihood!r}")


def likelihood_grad(
    x0_fn: Callable[[jax.Array], jax.Array],
    op: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    likelihood: str = "gaussian",
    layout: ImageLayout | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``grad_{x_t} ||y - A x0_fn(x_t)||^2_Lambda`` per sample, through ``x0_fn`` (one VJP).

    For a linear Tweedie map with Jacobian J and ``Lambda = I`` this is
    ``2 J^T Re(A^H (A x0 - y))`` (spec Sect. 10.2 item 12).

    Args:
      x0_fn: ``x [B', ...] -> x0_hat [B', ...]`` in net layout (the network inside).
      op: operator on one image.
      x: ``[B', ...]`` state in net layout.
      y: ``[B, *meas_shape]``.
      likelihood: ``"gaussian"``, ``"poisson"`` or ``"pinv"`` (:func:`residual_sq_norm`).
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).

    Returns:
      ``(x0_hat [B', ...], r^2 [B], grad [B', ...])``.
    """

    def loss(x):
        x0 = x0_fn(x)
        r2 = residual_sq_norm(op, layout.to_image(x0), y, likelihood)
        return jnp.sum(r2), (x0, r2)

    g, (x0, r2) = jax.grad(loss, has_aux=True)(x)
    return x0, r2, g


def per_net_sample(v: jax.Array, x: jax.Array, layout: ImageLayout) -> jax.Array:
    """Broadcasts a per-image ``[B]`` value to net-layout ``x [B', ...]`` (``B' = 2B`` for
    :data:`~gensynth.inverse.layout.COMPLEX_BATCH`)."""
    v = jnp.tile(v, x.shape[0] // v.shape[0])
    return broadcast_coef(v, x)


def dps_step(
    key: jax.Array,
    x: jax.Array,
    k: jax.Array,
    model_fn: ModelFn,
    sched: VPSchedule,
    op: Any,
    y: jax.Array,
    *,
    scale: float | jax.Array,
    likelihood: str,
    prediction: str,
    clip_x0: bool,
    layout: ImageLayout,
) -> jax.Array:
    """One DPS update ``x_i -> x_{i-1}``: the ancestral step minus ``zeta_i grad r^2``.

    Args:
      key: PRNG key of this step (the ancestral noise).
      x: ``[B', ...]`` state in net layout.
      k: scalar int32 index into the respaced ``sched``.
      model_fn: ``model_fn(x, t) -> out`` in net layout.
      sched: the respaced VP schedule.
      op: operator on one image.
      y: ``[B, *meas_shape]``.
      scale: the code's step on ``grad ||y - A x0_hat||`` (``zeta_i = scale / (2 r)``).
      likelihood: ``"gaussian"`` or ``"poisson"``.
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0_hat`` to [-1, 1] before the likelihood.
      layout: net/image layout.

    Returns:
      ``x_{i-1} [B', ...]`` in net layout.
    """

    def x0_fn(x):
        return vp_tweedie(model_fn, x, k, sched, prediction, clip_x0)[1]

    x0, r2, g = likelihood_grad(x0_fn, op, x, y, likelihood=likelihood, layout=layout)
    t = jnp.full((x.shape[0],), k, jnp.int32)
    x_prime = ddpm_step(key, x, x0, t, sched, sched.posterior_log_variance_clipped[t])
    zeta = scale / (2.0 * jnp.sqrt(r2) + 1e-12)
    return x_prime - per_net_sample(zeta, x, layout) * g


def dps(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: VPSchedule,
    op: Any,
    y: jax.Array,
    *,
    scale: float = 0.5,
    likelihood: str = "gaussian",
    num_steps: int | None = None,
    prediction: str = "eps",
    clip_x0: bool = False,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """DPS reconstruction of ``x`` from ``y = A x + n`` with a VP (DDPM) prior.

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      model_fn: ``model_fn(x, t) -> out`` in net layout, ``t [B']`` int32 original timesteps.
      schedule: the training VP schedule (T = 1000, linear betas in the book).
      op: operator on one image.
      y: ``[B, *meas_shape]``.
      scale: the code's step ``scale`` on ``grad ||y - A x0_hat||`` (``zeta' = scale / 2``):
        0.3 super-resolution / deblur, 0.5 inpainting (FFHQ configs).
      likelihood: ``"gaussian"`` or ``"poisson"``.
      num_steps: respaced steps (None: all T, the book's setting).
      prediction: what the network predicts (``"eps"``, ``"x0"``, ``"v"``).
      clip_x0: clip ``x0_hat`` to [-1, 1] (the data range) before the likelihood.
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image-layout state after every step.

    Returns:
      ``(x [B, *image_shape], info)`` with ``info["nfe"] = info["vjps"] = num_steps``.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    tau = respaced_tau(schedule, num_steps)
    layout = resolve_layout(layout, op, y)
    x, traj = _dps(
        key,
        schedule,
        op,
        y,
        scale,
        model_fn,
        tau,
        likelihood,
        prediction,
        clip_x0,
        layout,
        trajectory,
    )
    return x, solver_info(len(tau), len(tau), traj)


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10, 11))
def _dps(
    key, schedule, op, y, scale, model_fn, tau, likelihood, prediction, clip_x0, layout, trajectory
):
    sched = respace(schedule, tau)
    K = sched.num_timesteps
    x, step_key = split_prior(key, net_struct(op, y, layout))

    def step(i, x):
        return dps_step(
            jax.random.fold_in(step_key, i),
            x,
            K - 1 - i,
            model_fn,
            sched,
            op,
            y,
            scale=scale,
            likelihood=likelihood,
            prediction=prediction,
            clip_x0=clip_x0,
            layout=layout,
        )

    return run_net_steps(step, x, K, layout, trajectory)
