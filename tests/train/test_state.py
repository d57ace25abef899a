"""Train state: born replicated (or FSDP-sharded) on the mesh, only Params, typed keys."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gensynth.train import TrainState, create_train_state, make_mesh, param_sharding, replicated

from .train_testkit import OPTIMIZER, TinyNet, init_model, init_wide_model, mesh_and_fresh_state


def test_fresh_state_is_replicated_on_the_mesh():
    mesh, graphdef, state = mesh_and_fresh_state()  # create_train_state(key(1), ..., mesh=mesh)
    assert isinstance(state, TrainState)
    for leaf in jax.tree.leaves(state):
        assert leaf.sharding == replicated(mesh)
    assert int(state.step) == 0 and state.step.dtype == jnp.int32
    assert state.key.dtype == jnp.uint32
    assert jnp.array_equal(jax.random.key_data(state.rng_key), jax.random.key_data(jax.random.key(1)))
    for p, e in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.ema_params), strict=True):
        np.testing.assert_array_equal(p, e)
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert state.params["conv1"]["kernel"][...].shape == (3, 3, 1, 8)
    assert np.std(np.asarray(state.params["conv1"]["kernel"][...])) > 0  # initialised, not zeros
    model = nnx.merge(graphdef, state.params)
    assert isinstance(model, TinyNet)


def test_state_is_born_fsdp_sharded_with_the_values_of_one_device():
    mesh = make_mesh(8, fsdp=4)
    _, state = create_train_state(jax.random.key(1), init_wide_model, OPTIMIZER, mesh=mesh)
    _, state_1 = create_train_state(jax.random.key(1), init_wide_model, OPTIMIZER)
    for leaf, expected in zip(jax.tree.leaves(state), jax.tree.leaves(param_sharding(state, mesh)), strict=True):
        assert leaf.sharding == expected
    kernel = state.params["conv1"]["kernel"][...]  # [3, 3, 1, 128]: each device holds 32 output channels
    assert kernel.sharding.spec == jax.P(None, None, None, "fsdp")
    assert {shard.data.shape for shard in kernel.addressable_shards} == {(3, 3, 1, 32)}
    assert state.params["conv1"]["bias"][...].sharding.is_fully_replicated
    assert state.step.sharding.is_fully_replicated and state.key.sharding.is_fully_replicated
    for leaf, leaf_1 in zip(jax.tree.leaves(state), jax.tree.leaves(state_1), strict=True):
        np.testing.assert_array_equal(leaf, leaf_1)  # partitionable threefry: the same draws on any mesh


def test_state_works_under_eval_shape():
    abstract = jax.eval_shape(lambda: create_train_state(jax.random.key(0), init_model, optax.adam(1e-3))[1])
    assert abstract.params["conv1"]["kernel"].shape == (3, 3, 1, 8)
    assert isinstance(abstract.step, jax.ShapeDtypeStruct)


def test_refuses_models_with_non_param_state_and_raw_keys():
    with pytest.raises(ValueError, match="only nnx.Param"):
        create_train_state(jax.random.key(0), lambda: nnx.BatchNorm(4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
    with pytest.raises(ValueError, match="typed key"):
        create_train_state(jax.random.PRNGKey(0), init_model, optax.sgd(0.1))
