"""Train step: sharded == single device, sharding kept, fused == repeated, EMA, bf16, keys."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gensynth.train import make_train_step, replicated, shard_batch

from .train_testkit import (
    EMA_DECAY,
    denoise_loss,
    example_images,
    fresh_copy,
    mesh_and_fresh_state,
    single_device_copy,
    tiny_train_step,
)

BATCH = 16


@pytest.fixture(scope="module")
def batches():
    images = example_images(3 * BATCH)
    return [{"image": images[i * BATCH : (i + 1) * BATCH]} for i in range(3)]


def _single_device_state():
    return single_device_copy(mesh_and_fresh_state()[2])


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.device_get(jax.tree.leaves(tree))]


def _assert_trees_close(a, b, atol):
    for leaf_a, leaf_b in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(leaf_a, leaf_b, atol=atol, rtol=0)


def test_eight_devices_match_one_device_and_keep_replicated_sharding(batches):
    mesh, _, fresh_state = mesh_and_fresh_state()
    sharded_step, single_step = tiny_train_step(), tiny_train_step(sharded=False)
    state_8, state_1 = fresh_copy(fresh_state), _single_device_state()
    for batch in batches[:2]:
        state_8, metrics_8 = sharded_step(state_8, shard_batch(batch, mesh))
        state_1, metrics_1 = single_step(state_1, batch)
        np.testing.assert_allclose(float(metrics_8["loss"]), float(metrics_1["loss"]), rtol=1e-5)
        for leaf in jax.tree.leaves(state_8):
            assert leaf.sharding == replicated(mesh)
    assert state_1.params["conv1"]["kernel"][...].sharding.device_set == {jax.devices()[0]}
    _assert_trees_close(state_8.params, state_1.params, atol=1e-5)
    _assert_trees_close(state_8.opt_state, state_1.opt_state, atol=1e-5)
    assert int(state_8.step) == 2
    assert state_8.params["conv1"]["kernel"][...].dtype == jnp.float32


def test_fused_steps_equal_separate_steps(batches):
    mesh, _, fresh_state = mesh_and_fresh_state()
    fused_step, separate_step = tiny_train_step(fuse_steps=2), tiny_train_step()
    stacked = {"image": np.stack([b["image"] for b in batches[:2]])}  # [2, B, H, W, C]

    fused_state, fused_metrics = fused_step(fresh_copy(fresh_state), shard_batch(stacked, mesh, batch_axis=1))
    state, losses = fresh_copy(fresh_state), []
    for batch in batches[:2]:
        state, metrics = separate_step(state, shard_batch(batch, mesh))
        losses.append(float(metrics["loss"]))

    assert int(fused_state.step) == int(state.step) == 2
    _assert_trees_close(fused_state.params, state.params, atol=1e-6)
    _assert_trees_close(fused_state.ema_params, state.ema_params, atol=1e-6)
    _assert_trees_close(fused_state.opt_state, state.opt_state, atol=1e-6)
    np.testing.assert_allclose(float(fused_metrics["loss"]), np.mean(losses), rtol=1e-6)
    for leaf in jax.tree.leaves(fused_state):
        assert leaf.sharding == replicated(mesh)
    with pytest.raises(ValueError, match="fuse_steps"):
        fused_step(fused_state, shard_batch({"image": np.zeros((3, 8, 8, 8, 1), np.float32)}, mesh, batch_axis=1))


def test_ema_is_decay_weighted_average_of_old_and_new(batches):
    train_step = tiny_train_step(sharded=False)
    state, _ = train_step(_single_device_state(), batches[0])  # step 0: warm-up lr is 0
    old_ema = _leaves(state.ema_params)
    state, _ = train_step(state, batches[1])  # the old state is donated
    for ema, old, new in zip(_leaves(state.ema_params), old_ema, _leaves(state.params), strict=True):
        assert not np.array_equal(new, old)
        np.testing.assert_allclose(ema, EMA_DECAY * old + (1 - EMA_DECAY) * new, rtol=1e-6, atol=1e-9)


def test_step_key_is_fold_in_of_state_key_and_step(batches):
    state = _single_device_state()
    key = jax.random.wrap_key_data(np.asarray(state.key))  # a copy: the state is donated
    for step in range(2):
        state, metrics = tiny_train_step(sharded=False)(state, batches[step])
        assert float(metrics["key_uniform"]) == float(jax.random.uniform(jax.random.fold_in(key, step)))
    assert jnp.array_equal(jax.random.key_data(state.rng_key), jax.random.key_data(key))


def test_bf16_compute_keeps_float32_master_params(batches):
    _, f32_metrics = tiny_train_step(sharded=False)(_single_device_state(), batches[0])
    state, metrics = tiny_train_step(sharded=False, compute_dtype=jnp.bfloat16)(_single_device_state(), batches[0])
    assert metrics["loss"].dtype == jnp.float32
    for tree in (state.params, state.ema_params, state.opt_state):
        assert {leaf.dtype for leaf in jax.tree.leaves(tree) if leaf.ndim} == {jnp.dtype(jnp.float32)}
    loss_bf16, loss_f32 = float(metrics["loss"]), float(f32_metrics["loss"])
    assert loss_bf16 != loss_f32  # the forward pass really ran in bf16 ...
    np.testing.assert_allclose(loss_bf16, loss_f32, rtol=2e-2)  # ... and stayed close


def test_model_sees_parameters_in_the_compute_dtype():
    _, graphdef, state = mesh_and_fresh_state()
    seen = []

    def recording_loss(model, key, batch):
        seen.append(model.conv1.kernel[...].dtype)
        return denoise_loss(model, key, batch)

    optimizer = optax.sgd(0.1)
    train_step = make_train_step(graphdef, recording_loss, optimizer, compute_dtype=jnp.bfloat16)
    abstract = jax.eval_shape(lambda s: s.replace(opt_state=optimizer.init(s.params)), state)
    train_step.trace(abstract, {"image": jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)})  # trace only
    assert seen == [jnp.bfloat16]


def test_bad_arguments_are_refused():
    _, graphdef, _ = mesh_and_fresh_state()
    with pytest.raises(ValueError, match="ema_decay"):
        make_train_step(graphdef, denoise_loss, optax.sgd(0.1), ema_decay=1.5)
    with pytest.raises(ValueError, match="fuse_steps"):
        make_train_step(graphdef, denoise_loss, optax.sgd(0.1), fuse_steps=0)
