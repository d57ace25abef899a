"""MS-like lesions: they stay in the white matter, keep the maps a partition, have the ellipsoids'
volume, prefer their sites, and lesion loads / brainSPADE conditioning match hand counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from gensynth.data.lesions import (
    LesionConfig,
    add_ms_lesions,
    lesion_conditioning,
    lesion_load,
)

SPACING = (2.0, 2.0, 2.0)


def _phantom(size: int = 24, spatial_dims: int = 3) -> np.ndarray:
    """Concentric tissue maps `[*spatial, 5]` (bg, CSF, GM, WM, ventricles): ventricles r < 4 voxels,
    WM to 9, GM to 11, CSF to 11.5, background outside."""
    centre = (size - 1) / 2.0
    grid = np.stack(np.meshgrid(*[np.arange(size)] * spatial_dims, indexing="ij"), -1)
    r = np.linalg.norm(grid - centre, axis=-1)
    label = np.select([r < 4, r < 9, r < 11, r < 11.5], [4, 3, 2, 1], 0)
    return np.eye(5, dtype=np.float32)[label], r


@pytest.fixture(scope="module")
def phantom():
    return _phantom()


@pytest.fixture(scope="module")
def lesioned(phantom):
    probs, _ = phantom
    keys = jax.random.split(jax.random.key(0), 4)
    return jax.vmap(lambda k: add_ms_lesions(k, probs, SPACING, LesionConfig(count=(10, 25))))(keys)


def test_lesions_replace_white_matter_only(phantom, lesioned):
    probs, _ = phantom
    lesion, tissue = (np.asarray(a) for a in lesioned)
    assert lesion.shape == (4, 24, 24, 24, 1) and tissue.shape == (4, 24, 24, 24, 5)
    wm = probs[..., 3]
    assert lesion.min() >= 0.0 and (lesion[..., 0] <= wm + 1e-6).all()
    assert (lesion[..., 0][:, wm == 0] == 0).all()
    np.testing.assert_allclose(tissue[..., 3] + lesion[..., 0], np.broadcast_to(wm, lesion.shape[:-1]), atol=1e-6)
    others = [0, 1, 2, 4]
    np.testing.assert_array_equal(tissue[..., others], np.broadcast_to(probs[..., others], (4, 24, 24, 24, 4)))
    full = np.concatenate([tissue, lesion], axis=-1)
    np.testing.assert_allclose(full.sum(-1), 1.0, atol=1e-6)
    hard_lesion = full.argmax(-1) == 5
    assert hard_lesion.any(axis=(1, 2, 3)).all()  # 10-25 lesions of 1.5-6 mm show up at 2 mm
    assert (probs.argmax(-1)[np.nonzero(hard_lesion)[1:]] == 3).all()  # lesion voxels were WM voxels


def test_same_key_same_lesions_and_keys_differ(phantom, lesioned):
    probs, _ = phantom
    again = add_ms_lesions(jax.random.split(jax.random.key(0), 4)[1], probs, SPACING, LesionConfig(count=(10, 25)))
    np.testing.assert_array_equal(again[0], lesioned[0][1])
    assert np.abs(np.asarray(lesioned[0][0] - lesioned[0][1])).sum() > 1.0


def test_no_lesions_leaves_the_maps_unchanged(phantom):
    probs, _ = phantom
    lesion, tissue = add_ms_lesions(jax.random.key(3), probs, SPACING, LesionConfig(count=(0, 0)))
    assert float(jnp.abs(lesion).max()) == 0.0
    np.testing.assert_array_equal(tissue, probs)


def test_one_lesion_has_the_ellipsoid_volume():
    # WM >= 0.5 only in the interior, so the centre is >= 5 voxels from the faces; the 0.49 WM
    # border lets us undo the WM masking (union = lesion / WM) and read the raw ellipsoid's volume.
    size = 24
    probs = np.zeros((size, size, size, 5), np.float32)
    probs[..., 3], probs[..., 2] = 0.49, 0.51
    probs[5:-5, 5:-5, 5:-5, 3], probs[5:-5, 5:-5, 5:-5, 2] = 1.0, 0.0
    config = LesionConfig(count=(1, 1), radius_mm=(3.0, 3.0), elongation=(0.5, 0.5))
    for spacing in (1.0, 4.0):  # the voxel from a third of the radius to larger than the lesion
        lesion, _ = add_ms_lesions(jax.random.key(1), probs, (spacing,) * 3, config)
        union = lesion[..., 0] / probs[..., 3]
        expected = 4.0 / 3.0 * np.pi * 3.0 * 1.5 * 1.5 / 1000.0  # mL, semi-axes 3, 1.5, 1.5 mm
        np.testing.assert_allclose(lesion_load(union[..., None], (spacing,) * 3), [expected], rtol=1e-3)


def test_periventricular_lesions_are_centred_next_to_the_ventricles(phantom):
    probs, r = phantom
    # The periventricular zone per the module docstring, with scipy: WM >= 0.5 where the ventricle map
    # blurred with sigma 5 mm (2.5 voxels) is >= 0.1; here radii 4 to about 7 of the 4-9 WM shell.
    zone = (probs[..., 3] >= 0.5) & (ndi.gaussian_filter(probs[..., 4], 2.5, truncate=4.0) >= 0.1)
    assert 0.2 < zone.sum() / (probs[..., 3] >= 0.5).sum() < 0.8
    near = ndi.binary_dilation(zone)  # the centre is jittered by up to half a voxel
    config = LesionConfig(count=(1, 1), radius_mm=(2.0, 2.0), site_probs=(1.0, 0.0, 0.0))
    keys = jax.random.split(jax.random.key(2), 16)
    lesion = np.asarray(jax.vmap(lambda k: add_ms_lesions(k, probs, SPACING, config)[0])(keys)[..., 0])
    peaks = [np.unravel_index(np.argmax(m), m.shape) for m in lesion]
    assert all(near[p] for p in peaks)
    assert np.mean([r[p] for p in peaks]) < (probs[..., 3] * r).sum() / probs[..., 3].sum()


def test_two_dimensional_slice():
    probs, _ = _phantom(spatial_dims=2)
    lesion, tissue = add_ms_lesions(jax.random.key(4), probs, (1.0, 1.0), LesionConfig(count=(5, 5)))
    assert lesion.shape == (24, 24, 1) and tissue.shape == (24, 24, 5)
    lesion = np.asarray(lesion)
    assert lesion.max() > 0.5
    assert (lesion[..., 0] <= probs[..., 3] + 1e-6).all()
    load = float(lesion_load(lesion, (1.0, 1.0))[0])  # cm^2
    np.testing.assert_allclose(load, lesion.sum() / 100.0, rtol=1e-5)


def test_lesion_load_is_voxel_count_times_voxel_volume():
    rng = np.random.default_rng(0)
    mask = rng.random((3, 10, 12, 14, 2)) < 0.1  # [B, D, H, W, L], two lesion types
    spacing = (0.8, 1.2, 3.0)
    expected = mask.sum(axis=(1, 2, 3)) * (0.8 * 1.2 * 3.0) / 1000.0
    np.testing.assert_allclose(lesion_load(mask, spacing), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="spacing_mm"):
        lesion_load(np.ones((4, 4, 1)), (1.0, 1.0, 1.0))


def test_lesion_conditioning_eq_1_3():
    loads = jnp.array([[2.0, 0.0, 1.0], [8.0, 0.0, 0.5], [4.0, 0.0, 0.0]])  # [N subjects, L types]
    dc, normaliser = lesion_conditioning(loads)
    np.testing.assert_allclose(normaliser, [8.0, 0.0, 1.0])
    np.testing.assert_allclose(dc, [[0.25, 0.0, 1.0], [1.0, 0.0, 0.5], [0.5, 0.0, 0.0]])
    np.testing.assert_allclose(lesion_conditioning(3.0 * loads)[0], dc)  # scale-free
    new, _ = lesion_conditioning(jnp.array([[4.0, 1.0, 2.0]]), normaliser)  # frozen normaliser
    np.testing.assert_allclose(new, [[0.5, 0.0, 2.0]])
    with pytest.raises(ValueError, match="normaliser"):
        lesion_conditioning(loads, jnp.ones(2))


def test_bad_inputs_are_refused(phantom):
    probs, _ = phantom
    with pytest.raises(ValueError, match="spacing_mm"):
        add_ms_lesions(jax.random.key(0), probs, (2.0, 2.0))
    with pytest.raises(ValueError, match="config.count"):
        add_ms_lesions(jax.random.key(0), probs, SPACING, LesionConfig(count=(3, 1)))
    with pytest.raises(ValueError, match="config.site_probs"):
        add_ms_lesions(jax.random.key(0), probs, SPACING, LesionConfig(site_probs=(0.0, 0.0, 0.0)))
