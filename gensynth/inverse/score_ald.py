"""Score-ALD: annealed Langevin dynamics on the VE noise levels, with the likelihood of the noisy
state approximated by inflating the measurement noise (book ch. 7, Sect. 7.3.2.1, Eq. 7.31 with
the sign of erratum E11; spec Sect. 5.2.1)::

  grad log p(y | x_t) ~ A^H (y - A x_t) / (sigma_y^2 + gamma_t^2)
  for each level t_i of score-MRI's grid (t_i = linspace(1, t_eps, N)), M times:
      x <- x + eps_i (s_theta(x, t_i) + A^H (y - A x) / (sigma_y^2 + gamma_i^2)) + sqrt(2 eps_i) z

with ``sigma_i = sigma(t_i)`` of the VE SDE, ``gamma_i = gamma_scale sigma_i`` (the chapter gives
no values; ``gamma_t = sigma_t`` is the noise of ``x_t`` seen through an operator with
``||A|| = 1``, so use ``gamma_scale = ||A||`` otherwise) and ``eps_i = step_size sigma_i^2``
(Jalal et al.'s ``step_lr (sigma_i / sigma_N)^2``; ``step_size = 0.5`` is their
``step_lr = 5e-5`` at ``sigma_N = 0.01``). With ``||A|| <= gamma_scale`` the two terms have
curvature at most ``1 / sigma_i^2`` each, so ``step_size < 1`` keeps every step stable. The
result is the state after the last step (no final denoising).

The prior starts at ``x ~ N(0, sigma_max^2 I)``; the network works in net layout and the
likelihood term in image layout (complex MRI: the 2-channel real/imaginary view of
``A^H (y - A x)``).

NFE: ``N M`` network calls on the whole batch, no VJP; plus 2 operator calls per call.

References:
  Jalal, Arvinte, Daras, Price, Dimakis & Tamir 2021, "Robust Compressed Sensing MRI with Deep
  Generative Priors", Algorithm 1 and code (``n_steps_each = 3``, ``step_lr = 5e-5``); book
  ch. 7, Eq. 7.31 (erratum E11).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VESDE
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.score_mri import SCORE_MRI_SDE, ve_time_grid
from gensynth.inverse.solver_base import (
    ModelFn,
    batch_A,
    batch_AH,
    net_struct,
    resolve_layout,
    run_net_steps,
    solver_info,
    split_prior,
)


def ald_likelihood_score(
    op: Any,
    x: jax.Array,
    y: jax.Array,
    sigma_y: float | jax.Array,
    gamma: float | jax.Array,
) -> jax.Array:
    """The Score-ALD likelihood score ``A^H (y - A x) / (sigma_y^2 + gamma^2)`` per image.

    The gradient of ``log N(y; A x, (sigma_y^2 + gamma^2) I)`` in ``x`` (Eq. 7.31 with E11's
    sign: the printed ``A^T (A x - y)`` points downhill).

    Args:
      op: operator on one image.
      x: ``[B, *image_shape]`` current state (image layout).
      y: ``[B, *meas_shape]``.
      sigma_y: measurement noise std (>= 0).
      gamma: the noise inflation ``gamma_t`` (> 0 when ``sigma_y = 0``).

    Returns:
      ``[B, *image_shape]``, dtype of ``x``.
    """
    return (batch_AH(op, y - batch_A(op, x)) / (sigma_y**2 + gamma**2)).astype(x.dtype)


def score_ald(
    key: jax.Array,
    score_fn: ModelFn,
    op: Any,
    y: jax.Array,
    *,
    sde: VESDE = SCORE_MRI_SDE,
    num_steps: int = 1000,
    n_langevin: int = 3,
    step_size: float = 0.5,
    sigma_y: float = 0.0,
    gamma_scale: float | jax.Array = 1.0,
    t_eps: float = 1e-5,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """Score-ALD reconstruction of ``x`` from ``y = A x + n`` with a VE score prior.

    Args:
      key: PRNG key (prior draw, then ``fold_in(fold_in(key, i), j)`` for step j of level i).
      score_fn: ``score_fn(x, t) -> [B', ...]`` in net layout, ``t [B']`` continuous in (0, 1].
      op: operator on one image (``A``, ``A_adjoint``).
      y: ``[B, *meas_shape]`` measurements.
      sde: the VE SDE of the prior (score-MRI's ``sigma_min = 0.01``, ``sigma_max = 378``).
      num_steps: N noise levels (1000 [impl]; Jalal et al. run 1156 of 2311).
      n_langevin: M Langevin steps per level (3).
      step_size: ``eps_i / sigma_i^2`` in (0, 1) (0.5, see the module docstring).
      sigma_y: measurement noise std >= 0 in the units of ``y``.
      gamma_scale: ``gamma_i / sigma_i`` > 0 (1: ``gamma_t = sigma_t``; ``||A||`` for an
        operator of norm other than 1, e.g. CT).
      t_eps: smallest time of the grid (1e-5).
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image after every level, ``[N, B, *image_shape]``.

    Returns:
      ``(x [B, *image_shape], info)`` with ``info["nfe"] = N M`` and ``info["vjps"] = 0``.

    Raises:
      ValueError: for ``num_steps < 1``, ``n_langevin < 1``, ``step_size`` outside (0, 1),
        ``sigma_y < 0`` or ``gamma_scale <= 0``.
    """
    if num_steps < 1 or n_langevin < 1:
        raise ValueError(f"need num_steps >= 1 and n_langevin >= 1, got {num_steps}, {n_langevin}")
    if not 0 < step_size < 1:
        raise ValueError(f"step_size must be in (0, 1), got {step_size}")
    concrete_gamma = not isinstance(gamma_scale, jax.core.Tracer)  # traced under an outer jit
    if not sigma_y >= 0 or (concrete_gamma and not gamma_scale > 0):
        raise ValueError(
            f"need sigma_y >= 0 and gamma_scale > 0, got sigma_y={sigma_y}, "
            f"gamma_scale={gamma_scale}"
        )
    layout = resolve_layout(layout, op, y)
    x, traj = _score_ald(
        key,
        op,
        y,
        sde,
        step_size,
        sigma_y,
        gamma_scale,
        t_eps,
        score_fn,
        num_steps,
        n_langevin,
        layout,
        trajectory,
    )
    return x, solver_info(num_steps * n_langevin, 0, traj)


@functools.partial(jax.jit, static_argnums=(8, 9, 10, 11, 12))
def _score_ald(
    key, op, y, sde, step_size, sigma_y, gamma_scale, t_eps, score_fn, N, M, layout, trajectory
):
    x, step_key = split_prior(key, net_struct(op, y, layout), sde.prior_sampling)
    ts, _ = ve_time_grid(N, t_eps, x.dtype)

    def level(i, x):
        t = jnp.full((x.shape[0],), ts[i])
        sigma = sde.sigma(ts[i])
        eps = step_size * sigma**2
        level_key = jax.random.fold_in(step_key, i)

        def langevin(j, x):
            likelihood = ald_likelihood_score(
                op, layout.to_image(x), y, sigma_y, gamma_scale * sigma
            )
            z = jax.random.normal(jax.random.fold_in(level_key, j), x.shape, x.dtype)
            drift = score_fn(x, t) + layout.to_net(likelihood)
            return x + eps * drift + jnp.sqrt(2.0 * eps) * z

        return jax.lax.fori_loop(0, M, langevin, x)

    return run_net_steps(level, x, N, layout, trajectory)
