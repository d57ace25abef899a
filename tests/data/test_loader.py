"""Tests for gensynth.data.loader: ArraySource and the grain loader."""

import grain
import numpy as np
import pytest

from gensynth.data.loader import ArraySource, make_loader

N = 20


def _source(n=N):
    # Pixel value = record index, so batches reveal which records they hold.
    images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
    return ArraySource(images, labels=np.arange(n))


def _labels(loader, count=None):
    it = iter(loader)
    batches = [next(it) for _ in range(count)] if count else list(it)
    return [b["label"].tolist() for b in batches]


def test_array_source_records():
    src = _source()
    rec = src[7]
    assert len(src) == N
    assert rec["image"].shape == (4, 4, 1) and rec["image"].dtype == np.float32
    assert rec["label"].dtype == np.int32 and int(rec["label"]) == 7
    assert np.all(rec["image"] == 7.0)
    assert "label" not in ArraySource(np.zeros((2, 4, 4, 1)))[0]


@pytest.mark.parametrize(
    "images, labels, match",
    [(np.zeros((4, 4)), None, "images"), (np.zeros((0, 4, 4, 1)), None, "images"),
     (np.zeros((3, 4, 4, 1)), np.arange(2), "labels"), (np.zeros((3, 4, 4, 1)), np.ones(3) * 0.5, "labels")],
)
def test_array_source_rejects_bad_input(images, labels, match):
    with pytest.raises(ValueError, match=match):
        ArraySource(images, labels)


def test_batches_have_the_right_shape_and_match_labels():
    batch = next(iter(make_loader(_source(), batch_size=6, seed=0)))
    assert batch["image"].shape == (6, 4, 4, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (6,)
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["label"])


def test_seed_determines_order():
    a = _labels(make_loader(_source(), batch_size=5, seed=1), count=8)
    b = _labels(make_loader(_source(), batch_size=5, seed=1), count=8)
    c = _labels(make_loader(_source(), batch_size=5, seed=2), count=8)
    assert a == b
    assert a != c


def test_one_epoch_covers_every_example_once():
    batches = _labels(make_loader(_source(), batch_size=4, seed=0, num_epochs=1))
    flat = sum(batches, [])
    assert len(batches) == N // 4
    assert sorted(flat) == list(range(N))
    assert flat != list(range(N))  # shuffled


def test_no_shuffle_is_in_order_and_remainder_kept():
    batches = _labels(make_loader(_source(), batch_size=6, seed=0, shuffle=False, num_epochs=1, drop_remainder=False))
    assert batches == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17], [18, 19]]


def test_iterator_state_resumes_exactly():
    loader = make_loader(_source(), batch_size=3, seed=5)
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = it.get_state()
    assert isinstance(state, bytes)  # UTF-8 JSON, storable as is
    expected = [next(it)["label"].tolist() for _ in range(5)]  # crosses an epoch boundary
    resumed = iter(loader)
    resumed.set_state(state)
    assert [next(resumed)["label"].tolist() for _ in range(5)] == expected


def test_iterator_checkpoints_with_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    loader = make_loader(_source(), batch_size=4, seed=3)
    it = iter(loader)
    next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(1, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = [next(it)["label"].tolist() for _ in range(3)]
        resumed = iter(loader)
        mngr.restore(1, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(resumed)))
    assert [next(resumed)["label"].tolist() for _ in range(3)] == expected


def test_shards_are_disjoint_and_cover_the_data():
    shards = [
        sum(_labels(make_loader(_source(), batch_size=2, seed=4, num_epochs=1,
                                shard_options=grain.sharding.ShardOptions(shard_index=i, shard_count=2))), [])
        for i in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == N // 2
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(N))


def test_default_sharding_is_by_jax_process():
    # One JAX process: the default shard is everything.
    flat = sum(_labels(make_loader(_source(), batch_size=5, seed=0, num_epochs=1)), [])
    assert sorted(flat) == list(range(N))


@pytest.mark.parametrize("kwargs, match", [({"batch_size": 0, "seed": 0}, "batch_size"),
                                           ({"batch_size": 2, "seed": -1}, "seed")])
def test_make_loader_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_loader(_source(), **kwargs)


def test_each_epoch_is_a_new_permutation():
    batches = _labels(make_loader(_source(), batch_size=5, seed=0, num_epochs=2))
    first, second = sum(batches[:4], []), sum(batches[4:], [])
    assert sorted(first) == sorted(second) == list(range(N))
    assert first != second
