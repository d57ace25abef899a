"""Tests for gensynth.data.phantoms."""

import numpy as np
import pytest
import skimage.data

from gensynth.data.phantoms import random_ellipse_phantoms, shepp_logan


def test_shepp_logan_range_and_full_size():
    small = shepp_logan(64)
    assert small.shape == (64, 64, 1) and small.dtype == np.float32
    assert small.min() == -1.0 and small.max() <= 1.0
    full = shepp_logan(400)[..., 0]
    np.testing.assert_allclose(full, skimage.data.shepp_logan_phantom() * 2.0 - 1.0, atol=1e-6)


def test_random_phantoms_shape_and_range():
    x = random_ellipse_phantoms(0, 6, 32)
    assert x.shape == (6, 32, 32, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() <= 1.0
    assert np.all(x[:, 0, 0] == -1.0)  # corners are background
    assert np.all(x.max(axis=(1, 2, 3)) == 1.0)  # every phantom has its skull


def test_random_phantoms_deterministic_per_seed():
    a = random_ellipse_phantoms(3, 4, 32)
    np.testing.assert_array_equal(a, random_ellipse_phantoms(3, 4, 32))
    np.testing.assert_array_equal(a[:2], random_ellipse_phantoms(3, 2, 32))  # phantom i depends on (seed, i)
    assert not np.array_equal(a, random_ellipse_phantoms(4, 4, 32))
    assert not np.array_equal(a[0], a[1])


def test_lesion_probability_changes_images():
    without = random_ellipse_phantoms(1, 8, 32, lesion_prob=0.0)
    with_lesions = random_ellipse_phantoms(1, 8, 32, lesion_prob=1.0)
    assert not np.array_equal(without, with_lesions)


def test_random_phantoms_3d():
    v = random_ellipse_phantoms(0, 2, 16, spatial_dims=3)
    assert v.shape == (2, 16, 16, 16, 1)
    assert v.min() == -1.0 and v.max() == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n"), ({"n_ellipses": (5, 2)}, "n_ellipses"), ({"lesion_prob": 2.0}, "lesion_prob"),
     ({"spatial_dims": 4}, "spatial_dims")],
)
def test_random_phantoms_reject_bad_arguments(kwargs, match):
    args = {"seed": 0, "n": 2, "size": 16} | kwargs
    with pytest.raises(ValueError, match=match):
        random_ellipse_phantoms(**args)
