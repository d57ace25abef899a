"""Checkpointer: exact round trip of state (with shardings), data position and config."""

import jax
import numpy as np
import pytest

from gensynth.data import ArraySource, make_loader
from gensynth.train import Checkpointer, replicated, resolve_resume, shard_batch

from .train_testkit import example_images, fresh_copy, mesh_and_fresh_state, tiny_train_step


def _loader():
    return make_loader(ArraySource(example_images(32), labels=np.arange(32)), batch_size=8, seed=5)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.device_get(jax.tree.leaves(tree))]


def test_round_trip_restores_state_shardings_data_position_and_config(tmp_path):
    mesh, _, fresh_state = mesh_and_fresh_state()
    train_step = tiny_train_step()
    data_iterator = iter(_loader())
    state = fresh_copy(fresh_state)
    for _ in range(2):
        state, _ = train_step(state, shard_batch(next(data_iterator), mesh))
    saved_leaves = _leaves(state)
    reference = iter(_loader())
    expected_labels = [next(reference)["label"] for _ in range(4)][2:]

    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(2, state, data_iterator, config={"lr": 0.01, "name": "tiny"})
    # Keep training at once: the async save must not see the donated buffers change.
    state, _ = train_step(state, shard_batch(next(data_iterator), mesh))
    assert checkpointer.latest_step() == 2
    checkpointer.close()

    new_iterator = iter(_loader())
    with Checkpointer(tmp_path / "ckpt") as reopened:
        restored, config = reopened.restore(fresh_state, new_iterator)
    assert config == {"lr": 0.01, "name": "tiny"}
    assert int(restored.step) == 2
    for got, want in zip(_leaves(restored), saved_leaves, strict=True):
        np.testing.assert_array_equal(got, want)
    for leaf in jax.tree.leaves(restored):
        assert leaf.sharding == replicated(mesh)
    for want in expected_labels:
        np.testing.assert_array_equal(next(new_iterator)["label"], want)


def test_restore_onto_abstract_template(tmp_path):
    _, _, state = mesh_and_fresh_state()
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(0, state)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    with Checkpointer(tmp_path) as checkpointer:
        restored, config = checkpointer.restore(abstract)
    assert config is None
    for got, want in zip(_leaves(restored), _leaves(state), strict=True):
        np.testing.assert_array_equal(got, want)


def test_keeps_newest_refuses_overwrite_and_missing_items(tmp_path):
    _, _, state = mesh_and_fresh_state()
    with Checkpointer(tmp_path, max_to_keep=2) as checkpointer:
        for step in (1, 2, 3):
            checkpointer.save(step, state)
        checkpointer.wait()
        assert checkpointer.all_steps() == [2, 3]
        with pytest.raises(ValueError, match="already exists"):
            checkpointer.save(3, state)
        with pytest.raises(ValueError, match="data_iterator"):
            checkpointer.restore(state, iter(_loader()))
        with pytest.raises(FileNotFoundError, match="no checkpoint 1"):
            checkpointer.restore(state, step=1)


def test_resolve_resume_starts_fresh_in_an_empty_directory(tmp_path):
    _, _, state = mesh_and_fresh_state()
    data_iterator = iter(_loader())
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(FileNotFoundError, match="no checkpoint at all"):
            checkpointer.restore(state)
        resumed, config = resolve_resume(checkpointer, state, data_iterator)
    assert resumed is state and config is None
    np.testing.assert_array_equal(next(data_iterator)["label"], next(iter(_loader()))["label"])
