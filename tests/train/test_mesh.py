"""Mesh and shardings on 8 fake CPU devices."""

import jax
import numpy as np
import pytest

from gensynth.train import data_sharding, make_mesh, replicated, shard_batch


def test_mesh_uses_all_devices_on_the_data_axis():
    mesh = make_mesh()
    assert dict(mesh.shape) == {"data": jax.device_count()} == {"data": 8}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    assert dict(make_mesh(4, ("data", "fsdp")).shape) == {"data": 4, "fsdp": 1}
    with pytest.raises(ValueError, match="num_devices"):
        make_mesh(9)


def test_shard_batch_splits_the_batch_axis_and_keeps_values():
    mesh = make_mesh()
    batch = {
        "image": np.arange(16 * 2 * 2 * 1, dtype=np.float32).reshape(16, 2, 2, 1),
        "label": np.arange(16, dtype=np.int32),
    }
    sharded = shard_batch(batch, mesh)
    for name, array in sharded.items():
        assert array.sharding.is_equivalent_to(data_sharding(mesh, array.ndim), array.ndim)
        np.testing.assert_array_equal(np.asarray(array), batch[name])
        # Each of the 8 devices holds 2 consecutive examples.
        shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start)
        assert [s.data.shape[0] for s in shards] == [2] * 8
        np.testing.assert_array_equal(np.asarray(shards[3].data), batch[name][6:8])


def test_shard_batch_with_fused_leading_axis():
    mesh = make_mesh()
    batch = {"image": np.zeros((3, 8, 4, 4, 1), np.float32)}
    array = shard_batch(batch, mesh, batch_axis=1)["image"]
    assert array.sharding.spec == jax.P(None, "data", None, None, None)
    assert array.addressable_shards[0].data.shape == (3, 1, 4, 4, 1)


def test_shard_batch_refuses_bad_batches():
    mesh = make_mesh()
    with pytest.raises(ValueError, match="not divisible"):
        shard_batch({"image": np.zeros((12, 4, 4, 1))}, mesh)
    with pytest.raises(ValueError, match="one batch size"):
        shard_batch({"image": np.zeros((8, 4, 4, 1)), "label": np.zeros(16)}, mesh)
    with pytest.raises(ValueError, match="at least 2 axes"):
        shard_batch({"label": np.zeros(8)}, mesh, batch_axis=1)


def test_replicated_places_a_full_copy_everywhere():
    mesh = make_mesh()
    x = jax.device_put(np.ones(5), replicated(mesh))
    assert x.sharding.is_fully_replicated
    assert len(x.addressable_shards) == 8
