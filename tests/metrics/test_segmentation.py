"""Dice, the JAX distance transform and HD95: hand-computed cases and a float64 SciPy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from gensynth.metrics.segmentation import (
    dice,
    distance_to_mask,
    hausdorff_distance,
    hd95,
)


def _square(size=24, lo=8, side=8, shift=(0, 0)):
    mask = np.zeros((size, size), bool)
    mask[lo + shift[0] : lo + shift[0] + side, lo + shift[1] : lo + shift[1] + side] = True
    return mask


def _reference_hd(a, b, spacing, q):
    """MONAI's definition in float64: boundaries by SciPy erosion, distances by SciPy's EDT."""
    out = []
    for x, y in zip(a, b):
        bx, by = x & ~ndimage.binary_erosion(x), y & ~ndimage.binary_erosion(y)
        if not bx.any() or not by.any():
            out.append(math.nan if not (bx.any() or by.any()) else math.inf)
            continue
        d_xy = ndimage.distance_transform_edt(~by, sampling=spacing)[bx]
        d_yx = ndimage.distance_transform_edt(~bx, sampling=spacing)[by]
        out.append(max(np.percentile(d_xy, q), np.percentile(d_yx, q)))
    return np.array(out)


def _blobs(rng, shape, batch):
    noise = ndimage.gaussian_filter(rng.normal(size=(batch, *shape)), sigma=(0,) + (2.0,) * len(shape))
    return noise > 0.3 * noise.std()


# --- Dice -------------------------------------------------------------------------------------


def test_dice_binary_hand_values():
    g = np.zeros((3, 6, 6), int)
    g[:, 1:5, 1:5] = 1  # |G| = 16
    p = np.zeros_like(g)
    p[0, 1:5, 1:5] = 1  # identical
    p[1, 1:5, 1:3] = 1  # |P| = 8 inside G: 2*8 / 24
    p[2, 0, 0] = 7  # one voxel outside G (any non-zero label is foreground): 0
    np.testing.assert_allclose(dice(p, g), [1.0, 2 / 3, 0.0], rtol=1e-6)


def test_dice_empty_masks():
    empty, full = np.zeros((1, 4, 4, 4), int), np.ones((1, 4, 4, 4), int)
    assert float(dice(empty, empty)[0]) == 1.0
    assert float(dice(empty, full)[0]) == 0.0 and float(dice(full, empty)[0]) == 0.0


def test_dice_multiclass_per_class_columns():
    g = np.array([[[0, 1, 1, 2], [0, 1, 1, 2]]])  # [1, 2, 4]: |G0| = 2, |G1| = 4, |G2| = 2
    p = np.array([[[0, 1, 2, 2], [0, 0, 1, 2]]])  # |P0| = 3, |P1| = 2, |P2| = 3
    expected = [[2 * 2 / 5, 2 * 2 / 6, 2 * 2 / 5, 1.0]]  # class 3 absent from both
    np.testing.assert_allclose(dice(p, g, num_classes=4), expected, rtol=1e-6)
    # Binary Dice of label k equals the multi-class column k.
    np.testing.assert_allclose(dice(p == 1, g == 1), dice(p, g, num_classes=4)[:, 1], rtol=1e-6)


def test_dice_jits_and_checks_inputs():
    g = jnp.ones((2, 3, 3), jnp.int32)
    np.testing.assert_allclose(jax.jit(dice, static_argnames="num_classes")(g, g, num_classes=2), 1.0)
    with pytest.raises(ValueError, match="pred, target"):
        dice(g, g[:, :2])
    with pytest.raises(ValueError, match="num_classes"):
        dice(g, g, num_classes=1)


# --- distance transform -----------------------------------------------------------------------


@pytest.mark.parametrize("shape,spacing", [((17,), (0.5,)), ((13, 21), (1.7, 0.6)), ((9, 12, 10), (2.5, 0.7, 1.3))])
def test_distance_to_mask_matches_scipy(shape, spacing):
    rng = np.random.default_rng(0)
    mask = rng.random(shape) < 0.08
    mask.flat[0] = True  # never empty
    expected = ndimage.distance_transform_edt(~mask, sampling=spacing)
    np.testing.assert_allclose(distance_to_mask(mask, spacing), expected, rtol=2e-6, atol=1e-6)


def test_distance_to_empty_mask_is_inf():
    assert np.all(np.isinf(distance_to_mask(np.zeros((4, 5), bool))))


# --- Hausdorff distances: hand-computed cases -------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("axis", [0, 1])
def test_hd95_of_shifted_squares_is_the_shift_in_mm(k, axis):
    # Every boundary pixel is within k * spacing[axis] of the other square's boundary, and the whole
    # trailing edge (8 of 28 boundary pixels, > 5 %) is exactly that far: HD95 = HD = k * spacing.
    spacing = (2.0, 0.5)
    shift = (k, 0) if axis == 0 else (0, k)
    a, b = _square()[None], _square(shift=shift)[None]
    np.testing.assert_allclose(hd95(a, b, spacing), [k * spacing[axis]], rtol=1e-6)
    np.testing.assert_allclose(hausdorff_distance(a, b, spacing), [k * spacing[axis]], rtol=1e-6)


def test_hd95_of_square_and_its_one_pixel_dilation():
    # Outer boundary: 36 pixels, 32 at distance 1 from the inner one and 4 corners at sqrt(2);
    # rank 0.95 * 35 = 33.25 falls among the corners.
    a = _square()[None]
    b = _square(lo=7, side=10)[None]
    np.testing.assert_allclose(hd95(a, b), [math.sqrt(2)], rtol=1e-6)


@pytest.mark.parametrize("side,expected_hd95", [(8, 0.0), (3, 0.65)])
def test_one_extra_pixel(side, expected_hd95):
    # Adding a pixel e next to the middle p of the right edge makes p interior: each directed set
    # has one distance 1 (p -> e's neighbours, e -> p) and zeros elsewhere, over n = 4 side - 4
    # boundary pixels. Linear interpolation at rank 0.95 (n - 1) gives max(0, 1 - 0.05 (n - 1)).
    a = _square(side=side)
    b = a.copy()
    b[8 + side // 2, 8 + side] = True
    np.testing.assert_allclose(hd95(a[None], b[None]), [expected_hd95], atol=1e-6)
    np.testing.assert_allclose(hausdorff_distance(a[None], b[None]), [1.0], rtol=1e-6)


def test_hd95_3d_anisotropic_cube_shift():
    # A 6^3 cube moved one slice along z with 3 mm slices: its whole bottom face (36 of 152
    # boundary voxels) is 3 mm from the other boundary, nothing farther.
    a = np.zeros((1, 12, 10, 10), bool)
    a[0, 2:8, 2:8, 2:8] = True
    b = np.roll(a, 1, axis=1)
    np.testing.assert_allclose(hd95(a, b, (3.0, 1.0, 1.0)), [3.0], rtol=1e-6)
    np.testing.assert_allclose(hd95(a, b, (3.0, 1.0, 1.0)), _reference_hd(a, b, (3.0, 1.0, 1.0), 95), rtol=1e-6)


def test_empty_masks_give_inf_or_nan():
    empty, square = np.zeros((1, 24, 24), bool), _square()[None]
    assert np.isinf(hd95(empty, square)[0]) and np.isinf(hd95(square, empty)[0])
    assert np.isnan(hd95(empty, empty)[0])


def test_mask_touching_the_image_edge_keeps_its_edge_on_the_boundary():
    a = np.zeros((1, 6, 6), bool)
    a[0, :, :3] = True  # left half: column 0 lies on the image edge, hence on the boundary
    b = np.zeros_like(a)
    b[0, :, :1] = True
    # a's boundary: column 0, column 2 and rows 0/5; farthest from column 0 is column 2.
    np.testing.assert_allclose(hausdorff_distance(a, b), [2.0], rtol=1e-6)
    np.testing.assert_allclose(hausdorff_distance(a, b), _reference_hd(a, b, (1, 1), 100), rtol=1e-6)


def test_checks_inputs():
    a = np.zeros((1, 8, 8), bool)
    with pytest.raises(ValueError, match="pred, target"):
        hd95(a, a[:, :4])
    with pytest.raises(ValueError, match="pred, target"):
        hd95(a[0], a[0])
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 0.0))
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_distance(a, a, percentile=0.0)


# --- Hausdorff distances against SciPy on random blobs ---------------------------------------


@pytest.mark.parametrize(
    "shape,spacing,batch",
    [((32, 28), (1.0, 1.0), 4), ((32, 28), (0.8, 2.3), 4), ((14, 16, 12), (2.5, 0.9, 1.1), 3)],
)
def test_hd_matches_scipy_on_random_blobs(shape, spacing, batch):
    rng = np.random.default_rng(1)
    a, b = _blobs(rng, shape, batch), _blobs(rng, shape, batch)
    hd95_fn = jax.jit(lambda x, y: hd95(x, y, spacing))
    got = hd95_fn(a, b)
    np.testing.assert_allclose(got, _reference_hd(a, b, spacing, 95), rtol=1e-5)
    np.testing.assert_allclose(got, hd95_fn(b, a), rtol=1e-6)  # symmetric
    for q in (50.0, 100.0):
        np.testing.assert_allclose(
            hausdorff_distance(a, b, spacing, percentile=q), _reference_hd(a, b, spacing, q), rtol=1e-5
        )
