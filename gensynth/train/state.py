"""The train state: one pytree holding everything a training run needs to resume.

Parameters are born on the mesh: the model is built, split and the optimiser and
EMA initialised inside one ``jax.jit`` whose outputs are placed by
``param_sharding`` (replicated, or split over ``"fsdp"`` under FSDP), so no full
copy is first materialised on a single device.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from gensynth.train.mesh import param_sharding


@struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree (checkpointed whole).

    Attributes:
        step: int32 ``[]``, number of optimiser steps taken so far.
        params: ``nnx.State`` of the model's ``nnx.Param`` leaves, float32 (master copy).
        opt_state: the optax state for ``params``.
        ema_params: ``nnx.State`` like ``params``, float32 exponential moving average.
        key: uint32 raw key data (``jax.random.key_data``, ``[2]`` for threefry) of the
            run's base training key; step ``i`` uses ``fold_in(key, i)``. Stored raw so
            Orbax can save it; ``rng_key`` gives the typed key.
    """

    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState
    ema_params: nnx.State
    key: jax.Array

    @property
    def rng_key(self) -> jax.Array:
        """The typed base training key (``jax.random.wrap_key_data(self.key)``)."""
        return jax.random.wrap_key_data(self.key)


def create_train_state(
    key: jax.Array,
    init_model: Callable[[], nnx.Module],
    optimizer: optax.GradientTransformation,
    *,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[nnx.GraphDef, TrainState]:
    """Builds the model under ``jit`` and returns its graph and a fresh train state.

    Args:
        key: typed PRNG key (``jax.random.key(seed)``), the run's base training key.
        init_model: zero-argument callable that builds the model, e.g.
            ``lambda: UNet(1, 1, rngs=nnx.Rngs(0))``; it is traced under ``jit`` so the
            parameters are created directly on the mesh. The model must hold only
            ``nnx.Param`` state (no batch statistics or RNG streams).
        optimizer: the optax transformation (``make_optimizer``).
        mesh: device mesh; each state leaf is placed by ``param_sharding(state, mesh)``
            (all replicated when the mesh's ``"fsdp"`` axis has size 1). None keeps
            them on the default device.

    Returns:
        ``(graphdef, state)``: the static model graph for ``nnx.merge`` and a
        ``TrainState`` at step 0 with ``ema_params == params``.

    Raises:
        ValueError: if ``key`` is not a typed key, or the model holds state other
            than ``nnx.Param``.

    Example:
        >>> graphdef, state = create_train_state(
        ...     jax.random.key(0), lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
        >>> int(state.step), state.params["kernel"][...].shape
        (0, (2, 3))
    """
    if not (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(f"key: expected a typed key from jax.random.key(seed), got {key!r}")
    graphdef, _, other = nnx.split(nnx.eval_shape(init_model), nnx.Param, ...)
    if jax.tree.leaves(other):
        raise ValueError(
            f"init_model: expected a model whose state is only nnx.Param, also found {other}; "
            "keep batch statistics and RNG streams off the trained model"
        )

    def init_fn(key_data: jax.Array) -> TrainState:
        params = nnx.state(init_model(), nnx.Param)
        state = TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            ema_params=params,
            key=key_data,
        )
        return state if mesh is None else jax.lax.with_sharding_constraint(state, param_sharding(state, mesh))

    return graphdef, jax.jit(init_fn)(jax.random.key_data(key))
