"""The MNI152 brain population: determinism, value ranges, the age/sex laws and the E2 manipulations.

One compiled renderer (the 32^3 CPU grid, batches of 32) serves a noisy population (the laws must
show through the individual variability) and controlled subjects without variability (the laws'
sizes and the manipulations, which are then exact up to interpolation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

from gensynth.data import brain_population as bp
from gensynth.data._preprocess import display_slices
from gensynth.data.brain_template import brain_template

SHAPE, SPACING = bp.GRIDS["cpu"]
VOXEL_ML = SPACING**3 / 1000.0
N = 32
MALE_VOLUME_RATIO = 1.04**3  # head scale 1 + 0.04 s


@pytest.fixture(scope="module")
def population():
    return bp.make_population(0, N, batch_size=N, with_probs=True)


@pytest.fixture(scope="module")
def exact_render():
    return jax.vmap(bp.make_render_fn(SHAPE, SPACING, bp.PopulationConfig().without_variability()))


@pytest.fixture(scope="module")
def controlled():
    """N subjects without variability: (age, sex) = (20, F), (80, F), (20, M), (80, M), (50, F), (50, M), ..."""
    config = bp.PopulationConfig().without_variability()
    params = bp.population_params(0, np.arange(N), config)
    sex = jnp.tile(jnp.array([0, 0, 1, 1, 0, 1, 0, 1], jnp.float32), N // 8)
    age = jnp.tile(jnp.array([20, 80, 20, 80, 50, 50, 50, 50], jnp.float32), N // 8)
    return params.replace(age=age, sex=sex, morph_sex=sex)


@pytest.fixture(scope="module")
def controlled_subjects(exact_render, controlled):
    return exact_render(controlled)


def _soft_volumes(probs):
    return np.asarray(probs).sum(axis=(-4, -3, -2)) * VOXEL_ML  # [..., 5] mL


def _brain(volumes):
    return volumes[..., 1:].sum(-1)


def test_same_seed_and_index_give_the_same_subject(population):
    # Subjects 0..15 rendered in a padded batch of N equal the first 16 of the population.
    again = bp.make_population(0, N // 2, batch_size=N)
    np.testing.assert_array_equal(again["image"], population["image"][: N // 2])
    np.testing.assert_array_equal(again["labels"], population["labels"][: N // 2])
    other = bp.make_population(1, N // 2, batch_size=N)
    assert np.abs(other["image"] - again["image"]).mean() > 0.05
    # Parameters depend on the index only, not on the batch they are drawn in.
    order = np.random.default_rng(0).permutation(N)
    shuffled = bp.population_params(0, order)
    full = bp.population_params(0, np.arange(N))
    for leaf_shuffled, leaf_full in zip(jax.tree.leaves(shuffled), jax.tree.leaves(full)):
        if jnp.issubdtype(leaf_shuffled.dtype, jax.dtypes.prng_key):
            leaf_shuffled, leaf_full = jax.random.key_data(leaf_shuffled), jax.random.key_data(leaf_full)
        np.testing.assert_array_equal(leaf_shuffled, np.asarray(leaf_full)[order])


def test_shapes_ranges_and_labels(population):
    image, labels, probs = population["image"], population["labels"], population["probs"]
    assert image.shape == (N, *SHAPE, 1) and image.dtype == np.float32
    assert labels.shape == (N, *SHAPE) and probs.shape == (N, *SHAPE, 5)
    assert image.min() >= -1.0 and image.max() <= 1.0
    assert (image[..., 0][labels == 0] == -1.0).all()  # background exactly -1
    assert (image[..., 0][labels > 0] > -1.0).mean() > 0.99  # only the darkest 0.5 % of the brain clip
    assert probs.min() >= 0.0
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    assert all(set(np.unique(s)) == {0, 1, 2, 3, 4} for s in labels)
    assert (20.0 <= population["age"]).all() and (population["age"] <= 80.0).all()
    assert set(np.unique(population["sex"])) == {0, 1}
    # The field of view holds every brain: no tissue on the outer faces of the grid.
    assert probs[:, [0, -1], :, :, 1:].max() < 0.01 and probs[:, :, [0, -1], :, 1:].max() < 0.01
    # T1 contrast: WM brighter than GM brighter than CSF.
    means = [image[..., 0][labels == c].mean() for c in (1, 2, 3)]
    assert means[0] < means[1] < means[2]


def test_laws_show_through_the_noisy_population(population):
    volumes = _soft_volumes(population["probs"])
    age, sex = population["age"], population["sex"]
    brain = _brain(volumes)
    # Head size: males larger, by roughly the law's 12.5 % in volume.
    ratio = brain[sex == 1].mean() / brain[sex == 0].mean()
    assert 1.04 < ratio < 1.22
    # Ventricles and extra-ventricular CSF grow with age, GM shrinks (relative to the brain).
    assert spearmanr(age, volumes[:, 4] / brain).statistic > 0.7
    assert np.polyfit(age, volumes[:, 4], 1)[0] > 0.0
    assert spearmanr(age, volumes[:, 1] / brain).statistic > 0.7
    assert spearmanr(age, volumes[:, 2] / brain).statistic < -0.7


def test_law_sizes_without_variability(controlled_subjects):
    volumes = _soft_volumes(controlled_subjects.probs)[:8]  # [8, 5]
    brain = _brain(volumes)
    # Sex: isotropic scale 1.04 -> volume x 1.04^3, at every age.
    np.testing.assert_allclose(brain[[2, 3, 5, 7]] / brain[[0, 1, 4, 6]], MALE_VOLUME_RATIO, rtol=5e-3)
    # Age keeps the brain volume (warps preserve it, thinning moves GM to CSF).
    np.testing.assert_allclose(brain[1] / brain[0], 1.0, rtol=3e-3)
    # Ventricles scale by s^3, s = 1 + A / r_w, A = 0.05 mm/year * 60 years.
    r_w = float(brain_template(3).ventricle_radius_mm)
    np.testing.assert_allclose(volumes[[1, 3], 4] / volumes[[0, 2], 4], (1.0 + 3.0 / r_w) ** 3, rtol=0.03)
    # Thinning moves at most 0.004 * 60 = 24 % of the GM, and visibly some of it.
    gm_loss = 1.0 - volumes[1, 2] / volumes[0, 2]
    assert 0.03 < gm_loss < 0.24
    assert volumes[1, 1] > volumes[0, 1]
    # Noise-free subjects of equal covariates are identical.
    np.testing.assert_allclose(volumes[4], volumes[6], rtol=1e-6)
    np.testing.assert_allclose(_soft_volumes(controlled_subjects.probs)[8:16], volumes, rtol=1e-6)


def test_enlarge_ventricles(exact_render, controlled, controlled_subjects):
    base = controlled_subjects
    big = exact_render(bp.enlarge_ventricles(controlled, 2.0))
    v0, v1 = _soft_volumes(base.probs), _soft_volumes(big.probs)
    np.testing.assert_allclose(v1[:, 4] / v0[:, 4], 2.0, rtol=0.02)
    np.testing.assert_allclose(_brain(v1), _brain(v0), rtol=1e-5)  # tissue turned into CSF, outline kept
    hard = lambda s: (np.asarray(s.labels) == 4).sum((1, 2, 3))
    assert (1.6 < hard(big) / hard(base)).all() and (hard(big) / hard(base) < 2.4).all()
    with pytest.raises(ValueError, match="factor"):
        bp.enlarge_ventricles(controlled, 0.5)


def test_asymmetric_scale_and_sex_swap(exact_render, controlled, controlled_subjects):
    def right_left(probs):
        brain = 1.0 - np.asarray(probs)[..., 0]
        half = SHAPE[0] // 2  # the grid is centred on the midline x = 0
        return brain[:, half:].sum((1, 2, 3)) / brain[:, :half].sum((1, 2, 3))

    np.testing.assert_allclose(right_left(controlled_subjects.probs), 1.0, atol=2e-3)
    np.testing.assert_allclose(right_left(exact_render(bp.asymmetric_scale(controlled, 0.15)).probs), 1.15,
                               rtol=5e-3)
    swapped = bp.swap_sex_morphology(controlled)
    np.testing.assert_array_equal(swapped.sex, controlled.sex)  # the label stays
    ratio = _brain(_soft_volumes(exact_render(swapped).probs)) / _brain(_soft_volumes(controlled_subjects.probs))
    expected = np.where(np.asarray(controlled.sex) == 1, 1.0 / MALE_VOLUME_RATIO, MALE_VOLUME_RATIO)
    np.testing.assert_allclose(ratio, expected, rtol=5e-3)


def test_blur(population):
    image = jnp.asarray(population["image"][:2])
    sharpness = lambda x: float(jnp.abs(jnp.diff(x, axis=1)).mean())
    assert sharpness(bp.blur(image, 1.5)) < 0.6 * sharpness(image)
    np.testing.assert_array_equal(bp.blur(image, 0.0), image)
    np.testing.assert_allclose(bp.blur(jnp.full((6, 6, 6, 1), 0.3), 2.0), 0.3, rtol=1e-6)
    assert bp.blur(image[:, :, :, 16], 1.0, spatial_dims=2).shape == image[:, :, :, 16].shape


def test_axial_slices_match_the_mni152_display_convention(population):
    volume = population["image"][0]
    np.testing.assert_array_equal(bp.axial_slices(volume), display_slices(volume, 2))
    assert bp.axial_slices(population["labels"][:2, ..., None]).shape == (2, SHAPE[2], SHAPE[1], SHAPE[0], 1)


def test_render_t1_on_a_2d_slice():
    probs = np.zeros((12, 12, 4), np.float32)
    probs[..., 0] = 1.0
    for c, rows in ((1, slice(2, 4)), (2, slice(4, 7)), (3, slice(7, 10))):
        probs[rows, 2:10, 0], probs[rows, 2:10, c] = 0.0, 1.0
    image = bp.render_t1(jax.random.key(0), probs, jnp.array([0.0, 0.1, 0.45, 0.75]), noise_std=0.01)
    assert image.shape == (12, 12, 1)
    assert (image[..., 0][probs[..., 0] == 1] == -1).all()
    csf, gm, wm = (float(image[rows, 2:10].mean()) for rows in (slice(2, 4), slice(4, 7), slice(7, 10)))
    assert csf < gm < wm
    with pytest.raises(ValueError, match="means"):
        bp.render_t1(jax.random.key(0), probs, jnp.zeros(3))


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match="shape"):
        bp.make_render_fn((32, 32), 6.5)
    with pytest.raises(ValueError, match="spacing_mm"):
        bp.make_render_fn((32, 32, 32), 0.0)
