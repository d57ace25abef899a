"""The reverse-chain loop shared by the discrete VP samplers (DDPM, DDIM, DPM-Solver++).

Each step reads the network output as ``(eps, x0, r)`` (``r`` the learned-variance half or
None), clips ``x0`` to [-1, 1] when asked and recomputes ``eps`` from it (as iDDPM does), and
hands them to the sampler's own update. The whole walk is one ``lax.fori_loop``; step ``i``
draws its noise from ``jax.random.fold_in(key, i)``. Multistep samplers carry a state (their
earlier ``x0`` estimates) through the loop with :func:`reverse_chain_with_state`.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion.parameterization import model_output_to_eps_x0, vp_s_sigma, x0_to_eps
from gensynth.diffusion.schedules import VPSchedule, spaced_timesteps

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
# update_fn(key, x_t, t, eps, x0, r) -> x_{t-1}; t is [B] int32 on the (respaced) schedule.
UpdateFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array | None], jax.Array]
# step_fn(key, x_t, t, eps, x0, r, state) -> (x_{t-1}, state); state is any pytree.
StepFn = Callable[..., tuple[jax.Array, Any]]


def sample_shape(shape: Sequence[int] | None, x_T: jax.Array | None) -> tuple[int, ...]:
    """The static sample shape, from ``shape`` or ``x_T`` (which must agree when both are given)."""
    if x_T is None:
        if shape is None:
            raise ValueError("give the sample shape (B, ..., C) or a starting latent x_T")
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (B, ..., C) with positive sizes, got {shape}")
        return shape
    if shape is not None and tuple(shape) != tuple(x_T.shape):
        raise ValueError(f"shape {tuple(shape)} does not match x_T.shape {tuple(x_T.shape)}")
    return tuple(x_T.shape)


def chosen_steps(T: int, num_steps: int | None, timesteps: Sequence[int] | None) -> tuple[int, ...]:
    """The static (hashable) step subset from either ``num_steps`` (evenly spaced,
    ``round(linspace(0, T-1, K))``; None: all T) or explicit ``timesteps`` (sorted here);
    :func:`~gensynth.diffusion.respace` checks that the steps are distinct and in range."""
    if num_steps is not None and timesteps is not None:
        raise ValueError("give num_steps or timesteps, not both")
    if timesteps is None:
        return tuple(spaced_timesteps(T, T if num_steps is None else num_steps).tolist())
    return tuple(sorted(int(s) for s in timesteps))


def reverse_chain(
    key: jax.Array,
    x_T: jax.Array | None,
    shape: tuple[int, ...],
    schedule: VPSchedule,
    model_fn: ModelFn,
    prediction: str,
    clip_x0: bool,
    update_fn: UpdateFn,
) -> jax.Array:
    """Walks ``x_T -> x_0`` over every step of ``schedule`` (already respaced), largest t first.

    Args:
      key: PRNG key; split into the prior draw and the per-step noise keys.
      x_T: ``[B, ..., C]`` starting latent, or None to draw ``N(0, I)`` of ``shape``.
      shape: ``(B, ..., C)``.
      schedule: the K-step schedule; the model is called with ``schedule.timesteps[t]``.
      model_fn: ``model_fn(x, t) -> out`` (eps, x0 or v; 2C channels with learned variance).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0`` to [-1, 1] and recompute ``eps`` from it.
      update_fn: the sampler's step.

    Returns:
      ``[B, ..., C]`` samples.
    """

    def step_fn(key_i, x, t, eps, x0, r, state):
        return update_fn(key_i, x, t, eps, x0, r), state

    return reverse_chain_with_state(key, x_T, shape, schedule, model_fn, prediction, clip_x0, step_fn, lambda x: ())


def reverse_chain_with_state(
    key: jax.Array,
    x_T: jax.Array | None,
    shape: tuple[int, ...],
    schedule: VPSchedule,
    model_fn: ModelFn,
    prediction: str,
    clip_x0: bool,
    step_fn: StepFn,
    init_state_fn: Callable[[jax.Array], Any],
) -> jax.Array:
    """:func:`reverse_chain` for samplers that carry a state from step to step (multistep ones).

    Args:
      key: PRNG key; split into the prior draw and the per-step noise keys.
      x_T: ``[B, ..., C]`` starting latent, or None to draw ``N(0, I)`` of ``shape``.
      shape: ``(B, ..., C)``.
      schedule: the K-step schedule; the model is called with ``schedule.timesteps[t]``.
      model_fn: ``model_fn(x, t) -> out`` (eps, x0 or v; 2C channels with learned variance).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0`` to [-1, 1] and recompute ``eps`` from it.
      step_fn: the sampler's step, ``(key, x_t, t, eps, x0, r, state) -> (x_{t-1}, state)``.
      init_state_fn: the state before the first step, from the starting latent ``[B, ..., C]``.

    Returns:
      ``[B, ..., C]`` samples.
    """
    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, shape) if x_T is None else x_T
    K = schedule.num_timesteps

    def body(i, carry):
        x, state = carry
        t = jnp.full((shape[0],), K - 1 - i, jnp.int32)
        out = model_fn(x, schedule.timesteps[t]).astype(x.dtype)
        eps, x0, r = model_output_to_eps_x0(out, x, t, schedule, prediction)
        if clip_x0:
            x0 = jnp.clip(x0, -1.0, 1.0)
            eps = x0_to_eps(x0, x, *vp_s_sigma(schedule.alpha_bar[t]))
        return step_fn(jax.random.fold_in(step_key, i), x, t, eps, x0, r, state)

    return jax.lax.fori_loop(0, K, body, (x, init_state_fn(x)))[0]
