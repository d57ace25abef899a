"""The jitted train step: loss, gradients, optimiser update and EMA in one program.

Mixed precision keeps float32 master parameters in the state and casts a copy to
the compute dtype (bf16 on accelerators) for the forward and backward pass; the
cast sits inside the differentiated function, so gradients arrive in float32.
With ``fuse_steps=k`` the step runs k optimiser steps in one ``lax.scan`` (one
dispatch, one host round trip per k steps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from gensynth.train.mesh import data_sharding, param_sharding, replicated
from gensynth.train.state import TrainState

LossFn = Callable[[nnx.Module, jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: float = 0.999,
    compute_dtype: jnp.dtype = jnp.float32,
    mesh: jax.sharding.Mesh | None = None,
    fuse_steps: int = 1,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds the jitted ``train_step_fn(state, batch) -> (state, metrics)``.

    One step, with ``s = state.step`` and ``d = ema_decay``:

    .. math::

        k_s = \\mathrm{fold\\_in}(k, s), \\quad
        (L, g) = \\nabla_\\theta\\, \\mathrm{loss\\_fn}(\\theta, k_s, \\mathrm{batch}), \\quad
        \\theta \\leftarrow \\mathrm{opt}(\\theta, g), \\quad
        \\bar\\theta \\leftarrow d\\, \\bar\\theta + (1 - d)\\, \\theta

    where ``k`` is ``state.key``, ``theta`` is ``state.params`` and ``theta_bar`` is
    ``state.ema_params``; any step replays from its index alone.

    Args:
        graphdef: the model graph from ``create_train_state``.
        loss_fn: ``loss_fn(model, key, batch) -> (loss, metrics)``; ``model`` is the
            merged ``nnx`` module with parameters in ``compute_dtype``, ``key`` a typed
            key for this step, ``batch`` a dict of arrays ``[B, ...]``; ``loss`` a scalar
            and ``metrics`` a dict of scalars.
        optimizer: optax transformation whose state is ``state.opt_state``.
        ema_decay: EMA decay ``d`` in [0, 1]; 0 makes ``ema_params`` track ``params``.
        compute_dtype: dtype the parameters are cast to for the forward/backward pass
            (``jnp.bfloat16`` for mixed precision); the model's own compute ``dtype``
            should match.
        mesh: device mesh; if given, the batch is split over ``("data", "fsdp")``,
            the metrics are replicated, and the state is held to
            ``param_sharding(state, mesh)`` on entry and exit (a sharding constraint
            from the shapes, so no template state is needed; replicated when the
            ``"fsdp"`` axis has size 1, FSDP otherwise). None jits without sharding
            annotations.
        fuse_steps: k >= 1 steps per call; for k > 1 every batch leaf has a leading
            ``[k]`` axis (``[k, B, ...]``) and the k steps run in one ``lax.scan``.

    Returns:
        ``train_step_fn(state, batch) -> (state, metrics)``, jitted with the state
        donated; ``metrics`` holds float32 scalars (averaged over the k fused steps):
        ``loss``, ``grad_norm`` (global L2 norm before clipping) and ``loss_fn``'s own.

    Raises:
        ValueError: for ``ema_decay`` outside [0, 1] or ``fuse_steps < 1``.

    Example:
        >>> from gensynth.train.state import create_train_state
        >>> graphdef, state = create_train_state(
        ...     jax.random.key(0), lambda: nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
        >>> loss_fn = lambda model, key, b: (jnp.mean(model(b["x"]) ** 2), {})
        >>> train_step_fn = make_train_step(graphdef, loss_fn, optax.sgd(0.1))
        >>> state, metrics = train_step_fn(state, {"x": jnp.ones((4, 2))})
        >>> int(state.step), sorted(metrics)
        (1, ['grad_norm', 'loss'])
    """
    if not 0.0 <= ema_decay <= 1.0:
        raise ValueError(f"ema_decay: expected a float in [0, 1], got {ema_decay}")
    if fuse_steps < 1:
        raise ValueError(f"fuse_steps: expected an int >= 1, got {fuse_steps}")

    def constrain(state: TrainState) -> TrainState:
        return state if mesh is None else jax.lax.with_sharding_constraint(state, param_sharding(state, mesh))

    def single_step(state: TrainState, batch: Mapping[str, jax.Array]):
        state = constrain(state)
        key = jax.random.fold_in(state.rng_key, state.step)

        def loss_of_params(params):
            model = nnx.merge(graphdef, _cast_floats(params, compute_dtype))
            loss, metrics = loss_fn(model, key, batch)
            return loss.astype(jnp.float32), metrics

        (loss, metrics), grads = jax.value_and_grad(loss_of_params, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = optax.incremental_update(params, state.ema_params, 1.0 - ema_decay)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        metrics = _cast_floats(metrics, jnp.float32)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params)
        return constrain(new_state), metrics

    def fused_step(state: TrainState, batches: Mapping[str, jax.Array]):
        leading = {name: x.shape[:1] for name, x in batches.items()}
        if any(shape != (fuse_steps,) for shape in leading.values()):
            raise ValueError(
                f"batch: expected a leading [{fuse_steps}] axis (fuse_steps) on every leaf, got {leading}"
            )
        state, metrics = jax.lax.scan(single_step, state, batches)
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    train_step_fn = single_step if fuse_steps == 1 else fused_step
    if mesh is None:
        return jax.jit(train_step_fn, donate_argnums=(0,))
    batch_axis = 0 if fuse_steps == 1 else 1
    batch_sharding = data_sharding(mesh, batch_axis + 1, batch_axis=batch_axis)
    # The state's in/out shardings are None: `constrain` fixes them from the shapes.
    return jax.jit(
        train_step_fn,
        in_shardings=(None, batch_sharding),
        out_shardings=(None, replicated(mesh)),
        donate_argnums=(0,),
    )
