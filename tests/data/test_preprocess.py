"""Tests for gensynth.data._preprocess: scaling, display orientation, resize index maps."""

import numpy as np

from gensynth.data._preprocess import display_slices, fit_to_size, scale_to_unit_range


def test_scale_to_unit_range_window_and_percentiles():
    x = np.array([-2000.0, -1000.0, 0.0, 500.0, 3000.0])
    np.testing.assert_allclose(scale_to_unit_range(x, (-1000.0, 1000.0)), [-1, -1, 0, 0.5, 1])
    ramp = scale_to_unit_range(np.arange(1001.0))
    assert ramp.dtype == np.float32 and ramp[0] == -1 and ramp[-1] == 1
    np.testing.assert_allclose(ramp[500], 0.0, atol=1e-6)
    assert np.all(scale_to_unit_range(np.full(5, 3.0)) == -1.0)


def test_display_slices_axial_is_nose_up():
    vol = np.zeros((3, 4, 5))  # [X, Y, Z]
    vol[0, 3, 2] = 1.0  # patient left (x=0), most anterior (y=3), slice z=2
    s = display_slices(vol, axis=2)
    assert s.shape == (5, 4, 3)
    assert s[2, 0, 0] == 1.0  # top row (anterior), left column (patient left)


def test_fit_to_size_index_map_is_exact_for_a_ramp():
    ramp = np.arange(6, dtype=np.float32)[None, :, None, None] * np.ones((1, 6, 4, 1), np.float32)
    out, index_map = fit_to_size(ramp, 12, fill=-1.0)
    assert out.shape == (1, 12, 12, 1) and index_map.shape == (3, 3)
    o = np.arange(12)
    source_row = index_map[0, 0] * o + index_map[0, 2]  # input row sampled by output row o
    inner = (source_row >= 0) & (source_row <= 5)
    # Linear interpolation of a linear ramp returns the sampled coordinate itself.
    np.testing.assert_allclose(out[0, inner, 6, 0], source_row[inner], atol=1e-5)
    # Columns were padded by 1 on each side (4 -> 6): output column o samples (o + .5) / 2 - .5 - 1.
    np.testing.assert_allclose(index_map[1], [0.0, 0.5, -1.25])
