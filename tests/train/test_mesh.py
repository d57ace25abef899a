"""Mesh, batch sharding and the FSDP parameter-sharding rule on 8 fake CPU devices."""

import jax
import numpy as np
import pytest

from gensynth.train import data_sharding, make_mesh, param_sharding, replicated, shard_batch


def test_mesh_uses_all_devices_on_the_data_axis_by_default():
    mesh = make_mesh()
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1} == {"data": 8, "fsdp": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    fsdp_mesh = make_mesh(8, fsdp=4)
    assert dict(fsdp_mesh.shape) == {"data": 2, "fsdp": 4}
    assert fsdp_mesh.devices.flatten().tolist() == jax.devices()  # row-major: fsdp groups are neighbours
    assert dict(make_mesh(4, fsdp=4).shape) == {"data": 1, "fsdp": 4}
    with pytest.raises(ValueError, match="num_devices"):
        make_mesh(9)
    with pytest.raises(ValueError, match="fsdp"):
        make_mesh(8, fsdp=3)


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
    assert array.sharding.spec == jax.P(None, ("data", "fsdp"), None, None, None)
    assert array.addressable_shards[0].data.shape == (3, 1, 4, 4, 1)


def test_under_fsdp_the_batch_is_still_split_over_every_device():
    mesh = make_mesh(8, fsdp=4)
    image = shard_batch({"image": np.arange(8, dtype=np.float32).reshape(8, 1, 1, 1)}, mesh)["image"]
    # Device i of the row-major (data, fsdp) grid holds example i.
    assert {int(s.data[0, 0, 0, 0]): s.device for s in image.addressable_shards} == dict(enumerate(jax.devices()))
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        shard_batch({"image": np.zeros((4, 1, 1, 1))}, mesh)


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


def _spec(shape, mesh, **kwargs):
    return param_sharding(jax.ShapeDtypeStruct(shape, np.float32), mesh, **kwargs).spec


def test_param_sharding_rule_by_hand():
    fsdp4 = make_mesh(8, fsdp=4)
    assert _spec((3, 3, 48, 32), fsdp4) == jax.P(None, None, "fsdp")  # largest divisible axis
    assert _spec((3, 3, 32, 32), fsdp4) == jax.P(None, None, None, "fsdp")  # ties: the last axis
    assert _spec((64, 256), fsdp4) == jax.P(None, "fsdp")
    assert _spec((1026, 3), fsdp4) == jax.P()  # no axis divisible by 4
    assert _spec((3, 3, 4, 28), fsdp4, min_size=1008) == jax.P(None, None, None, "fsdp")  # 1008 elements ...
    assert _spec((3, 3, 4, 28), fsdp4, min_size=1009) == jax.P()  # ... below min_size
    assert _spec((32,), fsdp4) == jax.P()  # biases and norm scales (below FSDP_MIN_SIZE)
    assert _spec((), fsdp4) == jax.P()  # step counters
    assert _spec((3, 3, 48, 32), make_mesh(8)) == jax.P()  # fsdp axis of size 1: data parallel
    assert _spec((3, 3, 48, 32), make_mesh(8, fsdp=8)) == jax.P(None, None, "fsdp")
    with pytest.raises(ValueError, match="min_size"):
        param_sharding({}, fsdp4, min_size=0)


def test_param_sharding_places_arrays_in_pieces():
    mesh = make_mesh(8, fsdp=8)
    tree = {"w": np.arange(64 * 32, dtype=np.float32).reshape(64, 32), "b": np.ones(32, np.float32)}
    placed = jax.device_put(tree, param_sharding(tree, mesh))
    assert {s.data.shape for s in placed["w"].addressable_shards} == {(8, 32)}
    assert placed["b"].sharding.is_fully_replicated
    np.testing.assert_array_equal(np.asarray(placed["w"]), tree["w"])
