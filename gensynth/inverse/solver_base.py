"""Pieces shared by the inverse-problem solvers: the step loop, batched operator calls, the VP
Tweedie call and the ``info`` record every solver returns.

Batching: a solver takes ``y [B, *meas_shape]`` and one key; the operator acts on one image
(no batch axis) and is vmapped over the batch here, the network sees the whole batch at once.
Under a mesh, shard ``y`` on ``'data'`` (:func:`gensynth.train.data_sharding`); the noise is
drawn for the whole batch from one key (partitionable threefry), so results do not depend on
the number of devices. Per-sample keys instead:
``jax.vmap(lambda k, y: solver(k, ..., y[None])[0][0])(keys, y)`` (each call solves a batch of one;
batch-coupled steps such as the Langevin step size then become per-sample).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VPSchedule, model_output_to_eps_x0, spaced_timesteps
from gensynth.inverse.layout import ImageLayout, default_layout

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


def run_steps(
    body: Callable[[jax.Array, Any], Any],
    carry: Any,
    num_steps: int,
    snapshot: Callable[[Any], jax.Array] | None = None,
) -> tuple[Any, jax.Array | None]:
    """Runs ``carry = body(i, carry)`` for ``i = 0..num_steps-1`` as one loop.

    Args:
      body: the solver step.
      carry: the initial loop state (a pytree).
      num_steps: static number of steps.
      snapshot: None for a ``lax.fori_loop`` without a trajectory; else ``snapshot(carry)`` after
        every step is stacked by a ``lax.scan`` into ``[num_steps, ...]``.

    Returns:
      ``(final carry, trajectory or None)``.
    """
    if snapshot is None:
        return jax.lax.fori_loop(0, num_steps, body, carry), None

    def scan_body(carry, i):
        carry = body(i, carry)
        return carry, snapshot(carry)

    return jax.lax.scan(scan_body, carry, jnp.arange(num_steps))


def run_net_steps(
    body: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    num_steps: int,
    layout: ImageLayout,
    trajectory: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """:func:`run_steps` on a net-layout state ``x [B', ...]``, returned in image layout.

    Returns:
      ``(x [B, *image_shape], trajectory [num_steps, B, *image_shape] or None)``.
    """
    x, traj = run_steps(body, x, num_steps, layout.to_image if trajectory else None)
    return layout.to_image(x), traj


def batch_A(op: Any, x: jax.Array) -> jax.Array:
    """``A x`` for each image of ``x [B, *image_shape]`` -> ``[B, *meas_shape]``."""
    return jax.vmap(op.A)(x)


def batch_AH(op: Any, y: jax.Array) -> jax.Array:
    """``A^H y`` for each measurement of ``y [B, *meas_shape]`` -> ``[B, *image_shape]``."""
    return jax.vmap(op.A_adjoint)(y)


def batch_project(op: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """``op.project(x_b, y_b)`` per image: exact projection onto ``{A x = y}`` when
    ``op.AAH_is_identity``, else the operator's own data-consistency step (erratum E10; see
    :mod:`gensynth.inverse`). Shapes as ``x``."""
    return jax.vmap(op.project)(x, y)


def slice_stack(op: Any, y: jax.Array) -> tuple[jax.Array, jax.ShapeDtypeStruct]:
    """Volumes as a batch of slices for the 3D solvers (a slice operator, a 2D prior).

    Args:
      op: operator on one slice.
      y: ``[B, D, *meas_shape]``, B volumes of D slices.

    Returns:
      ``(y_slices [B D, *meas_shape], volume)``: ``volume`` is the shape and dtype
      ``[B, D, *image_shape]`` of the reconstruction (nothing computed).

    Raises:
      ValueError: for ``y`` with fewer than 2 axes.
    """
    if y.ndim < 2:
        raise ValueError(f"y must be [B, D, *meas_shape], got shape {y.shape}")
    slices = y.reshape((-1,) + y.shape[2:])
    image = jax.eval_shape(lambda y: batch_AH(op, y), slices)
    return slices, jax.ShapeDtypeStruct(y.shape[:2] + image.shape[1:], image.dtype)


def resolve_layout(layout: ImageLayout | None, op: Any, y: jax.Array) -> ImageLayout:
    """``layout``, or when None the :func:`~gensynth.inverse.layout.default_layout` for the
    dtype of ``A^H y`` (``y [B, *meas_shape]``)."""
    if layout is not None:
        return layout
    return default_layout(jax.eval_shape(lambda y: batch_AH(op, y), y).dtype)


def respaced_tau(
    schedule: VPSchedule, num_steps: int | None, kind: str = "linspace"
) -> tuple[int, ...]:
    """The ``K`` training steps a respaced solver visits (static, for ``jit``), increasing.

    Args:
      schedule: the training VP schedule (T steps).
      num_steps: K (None: all T).
      kind: :func:`gensynth.diffusion.spaced_timesteps` spacing (``"linspace"`` or ``"uniform"``).

    >>> from gensynth.diffusion import linear_betas, vp_schedule
    >>> respaced_tau(vp_schedule(linear_betas(1000)), 4)
    (0, 333, 666, 999)
    """
    T = schedule.num_timesteps
    K = T if num_steps is None else num_steps
    return tuple(spaced_timesteps(T, K, kind).tolist())


def net_struct(op: Any, y: jax.Array, layout: ImageLayout) -> jax.ShapeDtypeStruct:
    """Shape and dtype of the net-layout state ``layout.to_net(A^H y)`` (``y [B, *meas_shape]``),
    without computing it."""
    return jax.eval_shape(lambda y: layout.to_net(batch_AH(op, y)), y)


def split_prior(
    key: jax.Array,
    net: Any,
    prior_sampling: Callable[[jax.Array, tuple[int, ...]], jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Splits ``key`` into a prior draw and the key of the step loop.

    Args:
      key: the solver's PRNG key.
      net: anything with ``shape`` and ``dtype`` (e.g. :func:`net_struct`), ``[B', ...]``.
      prior_sampling: ``prior_sampling(key, shape)`` (e.g. ``sde.prior_sampling``), cast to
        ``net.dtype``; None: a standard normal draw in ``net.dtype``.

    Returns:
      ``(x [B', ...], step_key)``; step ``i`` of the loop uses ``fold_in(step_key, i)``.

    >>> net = jax.ShapeDtypeStruct((2, 4, 4, 1), jnp.float32)
    >>> split_prior(jax.random.key(0), net)[0].shape
    (2, 4, 4, 1)
    """
    init_key, step_key = jax.random.split(key)
    if prior_sampling is None:
        return jax.random.normal(init_key, net.shape, net.dtype), step_key
    return prior_sampling(init_key, net.shape).astype(net.dtype), step_key


def vp_tweedie(
    model_fn: ModelFn,
    x: jax.Array,
    k: jax.Array,
    schedule: VPSchedule,
    prediction: str,
    clip_x0: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """One network call on the respaced VP schedule: ``(eps_hat, x0_hat)`` of ``x [B, ...]``.

    Args:
      model_fn: ``model_fn(x, t) -> out`` with ``t [B]`` int32 original timesteps.
      x: ``[B, ...]`` state in net layout.
      k: scalar int32 index into the respaced ``schedule``.
      schedule: respaced schedule (its ``timesteps`` map back to the network's steps).
      prediction: ``"eps"``, ``"x0"`` or ``"v"``.
      clip_x0: clip ``x0`` to [-1, 1] (the data range); ``eps`` is left as predicted.

    Returns:
      ``(eps, x0)``, each like ``x``; ``x0 = (x - sqrt(1 - a) eps) / sqrt(a)`` (Eq. 7.22).
    """
    t = jnp.full((x.shape[0],), k, jnp.int32)
    out = model_fn(x, schedule.timesteps[t]).astype(x.dtype)
    eps, x0, _ = model_output_to_eps_x0(out, x, t, schedule, prediction)
    return eps, jnp.clip(x0, -1.0, 1.0) if clip_x0 else x0


def solver_info(nfe: int, vjps: int, trajectory: jax.Array | None) -> dict[str, Any]:
    """The ``info`` dict of a solve.

    Keys: ``nfe`` (network calls, each on the whole batch), ``vjps`` (backward passes through
    the network), ``needs_vjp`` (``vjps > 0``), ``trajectory`` (``[num_steps, B, ...]`` in
    image layout, or None).
    """
    return {"nfe": int(nfe), "vjps": int(vjps), "needs_vjp": vjps > 0, "trajectory": trajectory}


def sq_norm(r: jax.Array) -> jax.Array:
    """Per-sample ``||r_b||^2`` of ``r [B, ...]`` (real or complex) -> ``[B]``."""
    return jnp.sum(jnp.abs(r.reshape(r.shape[0], -1)) ** 2, axis=-1)
