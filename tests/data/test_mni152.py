"""Tests for gensynth.data.mni152: the bundled MNI152 template, offline."""

import numpy as np
import pytest

from gensynth.data.mni152 import mni152_slices, mni152_volume


def test_volume_1mm_is_the_bundled_template():
    vol, affine = mni152_volume("t1")
    assert vol.shape == (197, 233, 189, 1) and vol.dtype == np.float32
    assert vol.min() == -1.0 and vol.max() == 1.0  # uint8 0 and 255
    np.testing.assert_array_equal(affine, [[1, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])


@pytest.mark.parametrize("spacing, shape", [(2, (98, 116, 94, 1)), (4, (49, 58, 47, 1))])
def test_volume_coarse_grids(spacing, shape):
    vol, affine = mni152_volume("t1", spacing_mm=spacing)
    fine, fine_affine = mni152_volume("t1")
    assert vol.shape == shape
    np.testing.assert_array_equal(np.diag(affine), [spacing] * 3 + [1])
    # Voxel 0 averages fine voxels 0..s-1 per axis: its centre is their mean position.
    np.testing.assert_allclose(affine[:3, 3], fine_affine[:3, 3] + (spacing - 1) / 2)
    s = spacing
    np.testing.assert_allclose(vol[10, 20, 30, 0], fine[10 * s:11 * s, 20 * s:21 * s, 30 * s:31 * s, 0].mean(), rtol=1e-5)


@pytest.mark.parametrize("kind", ["gm", "wm"])
def test_tissue_maps_in_range(kind):
    vol, _ = mni152_volume(kind, spacing_mm=4)
    assert vol.min() >= -1.0 and vol.max() <= 1.0 and vol.max() > 0.5


def test_volume_returns_a_copy():
    vol, _ = mni152_volume("t1", spacing_mm=4)
    vol[:] = 0.0
    assert mni152_volume("t1", spacing_mm=4)[0].min() == -1.0


@pytest.mark.parametrize("size", [64, 128])
def test_slices_shape_dtype_range(size):
    x = mni152_slices(size)
    assert x.ndim == 4 and x.shape[1:] == (size, size, 1) and x.dtype == np.float32
    assert 100 <= x.shape[0] <= 130  # ~113 axial slices with >= 15 % brain
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.all(x[:, 0, :] == -1.0) and np.all(x[:, :, 0] == -1.0)  # background border


def test_slices_are_upright_and_cover_the_brain():
    x = mni152_slices(64)[..., 0]
    mid = x[len(x) // 2]
    # Nose up: the brain's bounding box is taller than wide (233 mm A-P vs 197 mm L-R).
    rows, cols = np.nonzero(mid > -0.9)
    assert np.ptp(rows) > np.ptp(cols)
    # Inferior slices come first: brain area grows from the first slice to the middle.
    assert (x[0] > -0.9).sum() < (mid > -0.9).sum()


def test_slice_selection_and_channels():
    t1 = mni152_slices(64)
    stacked = mni152_slices(64, kind=("t1", "gm", "wm"))
    assert stacked.shape == t1.shape[:3] + (3,)
    np.testing.assert_array_equal(stacked[..., :1], t1)
    assert mni152_slices(64, min_foreground=0.3).shape[0] < t1.shape[0]
    assert mni152_slices(32, spacing_mm=2).shape[0] == pytest.approx(t1.shape[0] / 2, abs=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"kind": "pd"}, "kind"), ({"axis": "oblique"}, "axis"), ({"size": 0}, "size"),
     ({"min_foreground": 1.5}, "min_foreground"), ({"min_foreground": 0.99}, "min_foreground")],
)
def test_slices_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mni152_slices(**kwargs)
