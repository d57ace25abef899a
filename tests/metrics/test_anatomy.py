"""Anatomical-plausibility measures against hand-computed values (spec ch16 Sect. 4.2-4.3, 6.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.data._smooth import gaussian_filter
from gensynth.metrics.anatomy import (
    betti0,
    cohens_d,
    regional_volumes,
    stripe_ratio,
    stripe_score,
)


def test_cohens_d_hand_computed():
    # Equal sizes: means 3 and 5, both variances 2.5 -> d = 2 / sqrt(2.5).
    a, b = jnp.arange(1.0, 6.0), jnp.arange(3.0, 8.0)
    np.testing.assert_allclose(cohens_d(a, b), 2.0 / np.sqrt(2.5), rtol=1e-6)
    # Unequal sizes: means 2 and 5, variances 1 and 20/3 -> s_p = sqrt((2 * 1 + 3 * 20/3) / 5) = sqrt(4.4).
    np.testing.assert_allclose(cohens_d(jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 4.0, 6.0, 8.0])),
                               3.0 / np.sqrt(4.4), rtol=1e-6)


def test_cohens_d_per_region_symmetric_and_zero_for_identical_groups():
    rng = np.random.default_rng(0)
    s, r = rng.normal(0.0, 1.0, (7, 3)), rng.normal(1.0, 2.0, (9, 3))  # [n, regions]
    d = cohens_d(s, r)
    assert d.shape == (3,)
    np.testing.assert_allclose(d, cohens_d(r, s), rtol=1e-6)
    for j in range(3):
        np.testing.assert_allclose(d[j], cohens_d(s[:, j], r[:, j]), rtol=1e-6)
    np.testing.assert_allclose(cohens_d(s, s), 0.0, atol=1e-7)
    assert float(cohens_d(jnp.ones(3), jnp.ones(4))) == 0.0
    assert float(cohens_d(jnp.ones(3), 2 * jnp.ones(4))) == np.inf


def test_cohens_d_rejects_bad_groups():
    with pytest.raises(ValueError, match="synthetic, real"):
        cohens_d(jnp.ones((1, 2)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="synthetic, real"):
        cohens_d(jnp.ones((3, 2)), jnp.ones((4, 3)))


def test_regional_volumes_anisotropic_spacing():
    labels = np.zeros((2, 4, 5, 6), np.int32)  # batch of 2
    labels[0, :2] = 1  # 2 * 5 * 6 = 60 voxels
    labels[0, 3, 0, 0] = 2
    labels[1] = 2
    volumes = regional_volumes(labels, (1.0, 2.0, 3.0), 3)  # voxel = 6 mm^3
    expected = np.array([[120 - 60 - 1, 60, 1], [0, 0, 120]]) * 6.0 / 1000.0
    np.testing.assert_allclose(volumes, expected, rtol=1e-6)
    # 2D maps give areas in cm^2: 4 pixels of 0.5 x 2 mm = 4 mm^2 = 0.04 cm^2.
    np.testing.assert_allclose(regional_volumes(np.ones((2, 2), np.int32), (0.5, 2.0), 2), [0.0, 0.04], rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        regional_volumes(np.ones((4, 4, 4)), (1.0, 1.0, 1.0), 2)  # float labels


def _balls(centres, radius=2.0, size=16):
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    return np.any([np.linalg.norm(grid - np.asarray(c), axis=-1) <= radius for c in centres], axis=0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_betti0_counts_separate_balls(n):
    mask = _balls([(4, 4, 4), (11, 11, 11), (4, 11, 4)][:n])
    assert betti0(mask) == n
    assert betti0(mask, connectivity=6) == n


def test_betti0_connectivity_and_empty():
    corner = np.zeros((3, 3, 3), bool)
    corner[0, 0, 0] = corner[1, 1, 1] = True  # touch at a corner only
    assert betti0(corner, 26) == 1
    assert betti0(corner, 18) == 2
    assert betti0(corner, 6) == 2
    edge = np.zeros((3, 3, 3), bool)
    edge[0, 0, 0] = edge[1, 1, 0] = True  # touch along an edge
    assert (betti0(edge, 26), betti0(edge, 18), betti0(edge, 6)) == (1, 1, 2)
    assert betti0(np.zeros((4, 4, 4))) == 0
    assert (betti0(np.eye(4), 8), betti0(np.eye(4), 4)) == (1, 4)
    with pytest.raises(ValueError, match="connectivity"):
        betti0(np.eye(4), 26)


def _smooth_noise(key, shape, sigma):
    return gaussian_filter(jax.random.normal(key, shape), sigma, range(len(shape)))


def test_stripe_score_isotropic_vs_slicewise():
    shape = (24, 24, 24)
    smooth = _smooth_noise(jax.random.key(0), shape, [1.5, 1.5, 1.5])[..., None]  # [D, H, W, 1]
    # Independent slices along axis 0: each slice is smooth in-plane, no correlation across slices.
    slices = _smooth_noise(jax.random.key(1), shape, [0.0, 1.5, 1.5])[..., None]
    for axis in range(3):
        np.testing.assert_allclose(stripe_score(smooth, axis), 1.0, atol=0.15)
    assert float(stripe_score(slices, 0)) > 3.0
    assert float(stripe_score(slices, 1)) < 1.0  # across-slice differences inflate the other axes' mean
    reference = _smooth_noise(jax.random.key(2), (2,) + shape, [0.0, 1.5, 1.5, 1.5])[..., None]  # [2, D, H, W, 1]
    np.testing.assert_allclose(stripe_ratio(smooth[None], reference, 0), 1.0, atol=0.2)
    assert float(stripe_ratio(slices[None], reference, 0)) > 3.0


def test_stripe_score_counts_only_pairs_inside_the_mask():
    # Inside the mask the volume is a linear ramp along W (|d_W| = 1, d_D = d_H = 0 plus tiny
    # stripes); outside it is wild noise that must not count.
    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 100.0, (8, 8, 8, 1)).astype(np.float32)
    mask = np.zeros((8, 8, 8, 1), bool)
    mask[2:6, 2:6, 2:6] = True
    ramp = np.arange(8, dtype=np.float32)[None, None, :, None] + 0.5 * (np.arange(8) % 2)[:, None, None, None]
    volume[mask] = np.broadcast_to(ramp, volume.shape)[mask]
    # mean|d_D| = 0.5 (alternating offset), mean|d_H| = 0, mean|d_W| = 1 -> S_D = 0.5 / 0.5 = 1.
    np.testing.assert_allclose(stripe_score(volume, 0, mask), 1.0, rtol=1e-6)
    np.testing.assert_allclose(stripe_score(volume, 2, mask), 1.0 / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        stripe_score(volume, 3)
