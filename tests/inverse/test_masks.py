"""Sampling masks (spec ch. 7, Sect. 10.2 item 5): effective R within 10 %, ACS present,
deterministic under a seed, variable density falls with radius."""

import numpy as np
import pytest

from gensynth import inverse as gi

SEEDED = [gi.random1d, gi.gaussian1d, gi.gaussian2d, gi.poisson_vd, gi.radial]
ALL = [gi.uniform1d, *SEEDED]


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("accel", [4, 8])
@pytest.mark.parametrize("shape", [(32, 32), (48, 40)])
def test_effective_acceleration(fn, accel, shape):
    mask, r = fn(shape, accel)
    assert mask.shape == shape and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert r == pytest.approx(mask.size / mask.sum())
    assert abs(r - accel) <= 0.1 * accel, r


@pytest.mark.parametrize("fn", [gi.uniform1d, gi.random1d, gi.gaussian1d], ids=lambda f: f.__name__)
def test_1d_masks_have_acs_and_full_columns(fn):
    mask, _ = fn((32, 64), 8, acs_fraction=0.08)
    n_acs = round(64 * 0.08)
    centre = mask[:, 32 - n_acs // 2 : 32 - n_acs // 2 + n_acs]
    assert centre.all()
    assert np.all((mask == mask[:1]).all(axis=0))  # whole phase-encode columns


@pytest.mark.parametrize("fn", SEEDED, ids=lambda f: f.__name__)
def test_deterministic_under_seed(fn):
    a, _ = fn((32, 32), 4, seed=3)
    b, _ = fn((32, 32), 4, seed=3)
    c, _ = fn((32, 32), 4, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fn", [gi.poisson_vd, gi.gaussian2d], ids=lambda f: f.__name__)
def test_variable_density_falls_with_radius(fn):
    mask, _ = fn((48, 48), 4, seed=0)
    yy, xx = np.mgrid[:48, :48]
    radius = np.hypot(yy - 24, xx - 24)
    rings = [mask[(radius >= lo) & (radius < hi)].mean() for lo, hi in [(0, 4), (6, 12), (14, 24)]]
    assert rings[0] == 1.0  # fully sampled centre
    assert rings[0] > rings[1] > rings[2]


def test_bad_arguments():
    with pytest.raises(ValueError, match="accel"):
        gi.random1d((16, 16), 0.5)
    with pytest.raises(ValueError, match="shape"):
        gi.uniform1d((16,), 4)
