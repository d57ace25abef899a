"""Tests for gensynth.data.builtin: built-in sets by name."""

import numpy as np
import pytest

from gensynth.data.builtin import BUILTIN_DATASETS, builtin_dataset, holdout_indices
from gensynth.data.mni152 import mni152_slices
from gensynth.data.phantoms import random_ellipse_phantoms


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_every_builtin_set_is_square_and_in_range(name):
    x = builtin_dataset(name, 32, n=3)
    assert x.ndim == 4 and x.shape[1:3] == (32, 32) and x.shape[0] >= 1 and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_builtin_sets_match_their_functions():
    np.testing.assert_array_equal(builtin_dataset("mni152", 32), mni152_slices(32))
    np.testing.assert_array_equal(builtin_dataset("phantoms", 32, n=3, seed=5), random_ellipse_phantoms(5, 3, 32))
    assert builtin_dataset("mni152_tissue", 32).shape[-1] == 3
    mixed = builtin_dataset("mni152_phantoms", 32, n=3, seed=5)
    np.testing.assert_array_equal(mixed, np.concatenate([mni152_slices(32), random_ellipse_phantoms(5, 3, 32)]))


@pytest.mark.parametrize("n, every", [(113, 7), (10, 2), (5, 0), (3, 5)])
def test_holdout_indices_partition_and_spacing(n, every):
    train, held = holdout_indices(n, every)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(n))
    assert np.intersect1d(train, held).size == 0
    if every:
        assert len(held) == len(range(every // 2, n, every)) and np.all(np.diff(held) == every)
    else:
        assert held.size == 0


@pytest.mark.parametrize("every", [-1, 1])
def test_holdout_indices_rejects_bad_every(every):
    with pytest.raises(ValueError, match="every"):
        holdout_indices(10, every)


def test_unknown_name():
    with pytest.raises(ValueError, match="name"):
        builtin_dataset("imagenet", 32)
