"""Tests for gensynth.data.tumour_procedural (the hand-crafted tumour synthesiser)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from gensynth.data.tumour_procedural import (
    ProceduralTumourConfig,
    deformed_ellipsoid,
    mass_effect_warp,
    procedural_tumour,
    random_elastic_grids,
    sample_tumour_centre,
)

SIZE = 48
_yy, _xx = np.mgrid[:SIZE, :SIZE]
ORGAN = ((_yy - 24) / 20) ** 2 + ((_xx - 24) / 17) ** 2 <= 1
HU = np.where(ORGAN, 110.0, -100.0).astype(np.float32) + np.random.default_rng(0).normal(0, 5, (SIZE, SIZE)).astype(
    np.float32
)
# Small tumours (tiny/small classes) so that several fit in the 48 x 48 organ.
SMALL = ProceduralTumourConfig(class_probs=(0.5, 0.5, 0.0, 0.0, 0.0))


@functools.cache
def _batched(cfg):
    return jax.jit(jax.vmap(functools.partial(procedural_tumour, cfg=cfg), in_axes=(0, None, None)))


def _run(cfg, n, hu=HU, organ=ORGAN, seed=0):
    out, tumour = _batched(cfg)(jax.random.split(jax.random.key(seed), n), hu, organ)
    return np.asarray(out), np.asarray(tumour)


_ellipsoid = jax.jit(deformed_ellipsoid, static_argnums=0)


def test_ellipsoid_matches_closed_form():
    centre, radii = np.array([12, 12, 12]), np.array([8.0, 9.0, 10.0])
    mask = np.asarray(_ellipsoid((25, 25, 25), centre, radii))
    z, y, x = np.indices((25, 25, 25))
    expected = ((z - 12) / 8.0) ** 2 + ((y - 12) / 9.0) ** 2 + ((x - 12) / 10.0) ** 2 <= 1
    np.testing.assert_array_equal(mask, expected)
    assert abs(mask.sum() / (4 / 3 * np.pi * 8 * 9 * 10) - 1) < 0.03
    np.testing.assert_array_equal(mask, mask[::-1, ::-1, ::-1])  # symmetric about the centre voxel
    # Zero displacements are the identity.
    zero = jnp.zeros((3, 2, 3, 3))
    np.testing.assert_array_equal(_ellipsoid((25, 25, 25), centre, radii, zero), mask)


def test_elastic_deformation_keeps_volume_for_small_sigma():
    grids = random_elastic_grids(jax.random.key(1), 2.0, 2, n=8)
    masks = jax.jit(jax.vmap(lambda g: deformed_ellipsoid((40, 40), jnp.array([20, 20]), jnp.array([8.0, 8.0]), g)))(grids)
    areas = np.asarray(masks.sum(axis=(1, 2)))
    assert np.all(np.abs(areas / (np.pi * 64) - 1) < 0.3)
    assert len(set(areas.tolist())) > 1  # the grids do deform


_pick_2d = jax.jit(jax.vmap(lambda k, o, a: sample_tumour_centre(k, o, avoid=a), (0, None, None)))


def test_centre_2d_inside_eroded_organ_and_away_from_vessels():
    vessel = np.zeros_like(ORGAN)
    vessel[22:25, :] = True
    centres = np.asarray(_pick_2d(jax.random.split(jax.random.key(2), 64), ORGAN, vessel & ORGAN))
    allowed = ndi.binary_erosion(ORGAN & ~vessel, np.ones((5, 5)), border_value=0)
    assert np.all(allowed[centres[:, 0], centres[:, 1]])
    assert len({tuple(c) for c in centres.tolist()}) > 32  # spread out, not one voxel
    tiny = np.zeros_like(ORGAN)
    tiny[7:10, 7:10] = True  # erodes to nothing: falls back to the organ itself
    centres = np.asarray(_pick_2d(jax.random.split(jax.random.key(4), 64), tiny, np.zeros_like(tiny)))
    assert np.all(tiny[centres[:, 0], centres[:, 1]])


def test_centre_3d_in_central_band():
    organ = np.zeros((20, 24, 24), bool)
    organ[4:16, 4:20, 4:20] = True  # z extent [4, 15]
    pick = jax.jit(jax.vmap(sample_tumour_centre, (0, None)))
    centres = np.asarray(pick(jax.random.split(jax.random.key(3), 64), organ))
    z_lo, z_hi = 4 + round(0.3 * 11), 4 + round(0.7 * 11)
    assert np.all((centres[:, 0] >= z_lo) & (centres[:, 0] <= z_hi))
    assert np.all((centres[:, 1:] >= 6) & (centres[:, 1:] <= 17))  # the 5 x 5 erosion removes 2 voxels
    assert len(set(centres[:, 0].tolist())) > 1


def test_tumours_stay_in_organ_darken_and_leave_the_rest_unchanged():
    out, tumour = _run(SMALL, 6)
    blur_radius = 8  # ceil(4 * max edge-blur sigma 2)
    assert tumour.any(axis=(1, 2)).all()
    for image, mask in zip(out, tumour):
        assert not np.any(mask & ~ORGAN)
        np.testing.assert_array_equal(image[~ORGAN], HU[~ORGAN])  # bit-for-bit outside the organ
        far = ~ndi.binary_dilation(mask, np.ones((2 * blur_radius + 1,) * 2))
        np.testing.assert_array_equal(image[far], HU[far])  # and beyond the blur zone
        drop = HU - image
        assert drop.min() >= 0 and drop.max() <= 145.0 + 1e-3  # hypo-attenuating, at most Delta_max
        core = ndi.binary_erosion(mask, iterations=2)
        if core.any():
            assert 0.3 * 65 <= drop[core].mean() <= 0.6 * 145


def test_size_class_radii_and_capsule_rim():
    # One "small" tumour (r = 8), no deformation, no darkening, a 20 HU capsule: the tumour is an
    # exact ellipsoid with radii in [6, 10], and the image changes by exactly 20 HU on its rim.
    cfg = dataclasses.replace(
        SMALL,
        class_probs=(0.0, 1.0, 0.0, 0.0, 0.0),
        counts=((1, 1),) * 4,
        elastic_sigma=((0.0, 0.0),) * 4,
        contrast_hu=(0.0, 0.0),
        capsule_hu=20.0,
    )
    organ = np.ones((SIZE, SIZE), bool)
    out, tumour = _run(cfg, 8, organ=organ)
    lo, hi = 2 * 6 + 1, 2 * 10 + 1  # extent 2 r_i + 1 voxels
    for image, mask in zip(out, tumour):
        assert ndi.label(mask)[1] == 1  # count (1, 1)
        for idx in np.nonzero(mask):
            assert idx.max() - idx.min() + 1 <= hi
            if idx.min() > 0 and idx.max() < SIZE - 1:  # not cut by the image border
                assert idx.max() - idx.min() + 1 >= lo
        rim = mask & ~ndi.binary_erosion(mask, np.ones((3, 3)), border_value=0)
        np.testing.assert_allclose(image - HU, np.where(rim, 20.0, 0.0), atol=1e-4)


def test_mass_effect_warp():
    yy, xx = np.mgrid[:32, :32]
    disc = (np.hypot(yy - 16, xx - 16) <= 5).astype(np.float32)
    centre, radii = jnp.array([16, 16]), jnp.array([6.0, 6.0])
    np.testing.assert_allclose(mass_effect_warp(disc, centre, radii, 0.0), disc, atol=1e-6)  # S = 0: identity
    warped = np.asarray(mass_effect_warp(disc, centre, radii, 30.0))
    outside = np.hypot(yy - 16, xx - 16) >= 1.3 * 6
    np.testing.assert_allclose(warped[outside], disc[outside], atol=1e-6)
    assert (warped > 0.5).sum() > disc.sum()  # tissue pushed outwards: the disc grows


def test_mass_effect_pushes_tissue_near_tumours_only():
    cfg = dataclasses.replace(SMALL, contrast_hu=(0.0, 0.0), mass_effect=30.0)
    hu = HU.copy()
    hu[:, 22:26] = 180.0  # a bright vertical band to push
    out, tumour = _run(cfg, 4, hu=hu)
    # 1.3 x the largest "small" radius, + 1 for bilinear support, + 5 for the elastic shift of the
    # mask relative to the undeformed centre.
    reach = int(np.ceil(1.3 * 10)) + 6
    changed_any = False
    for image, mask in zip(out, tumour):
        changed = np.abs(image - hu) > 1e-3
        near = ndi.binary_dilation(mask, np.ones((2 * reach + 1,) * 2))
        assert not np.any(changed & ~near) and not np.any(mask & ~ORGAN)
        changed_any |= changed.any()
    assert changed_any


def test_3d_and_jit_vmap_determinism():
    cfg = dataclasses.replace(SMALL, class_probs=(1.0, 0.0, 0.0, 0.0, 0.0))
    organ = np.zeros((16, 24, 24), bool)
    organ[2:14, 3:21, 3:21] = True
    hu = np.where(organ, 110.0, -100.0).astype(np.float32)
    keys = jax.random.split(jax.random.key(5), 2)
    out, tumour = _batched(cfg)(keys, hu, organ)
    assert out.shape == (2, 16, 24, 24) and tumour.dtype == jnp.bool_
    assert not np.any(np.asarray(tumour) & ~organ) and np.asarray(tumour).any()
    np.testing.assert_array_equal(np.asarray(out)[:, ~organ], np.broadcast_to(hu[~organ], (2, int((~organ).sum()))))
    again, _ = _batched(cfg)(keys, hu, organ)
    np.testing.assert_array_equal(out, again)  # same key, same result
    assert not np.array_equal(out[0], out[1])  # per-example keys differ


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="hu"):
        procedural_tumour(jax.random.key(0), jnp.zeros(8), jnp.ones(8, bool))
    with pytest.raises(ValueError, match="organ"):
        procedural_tumour(jax.random.key(0), jnp.zeros((8, 8)), jnp.ones((8, 9), bool))
    with pytest.raises(ValueError, match="class_probs"):
        ProceduralTumourConfig(class_probs=(0.5, 0.5, 0.5, 0.0, 0.0))
