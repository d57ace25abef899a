"""Distribution metrics against float64 SciPy/NumPy references, closed forms and hand-computed values."""

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from gensynth.metrics.distribution import (
    MS_SSIM_WEIGHTS,
    frechet_distance,
    frechet_distance_from_stats,
    kid,
    mmd,
    ms_ssim,
    ms_ssim_diversity,
    precision_recall_coverage,
)

_SMALL = {"weights": (0.2, 0.3, 0.5), "filter_size": 5}  # three scales fit 32 px


def _fid_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    """The pytorch-fid formula in float64: scipy.linalg.sqrtm of C_a C_b."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def _correlated(seed: int, n: int, f: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(f, f)) / np.sqrt(f)
    return (rng.normal(size=(n, f)) @ mix + shift).astype(np.float32)


def test_fid_matches_scipy_sqrtm_reference():
    a, b = _correlated(0, 300, 12, 0.0), _correlated(1, 200, 12, 0.3)
    reference = _fid_sqrtm(a, b)
    np.testing.assert_allclose(frechet_distance(a, b), reference, rtol=2e-5)
    stats = [(x.mean(0, dtype=np.float64), np.cov(x, rowvar=False)) for x in (a, b)]
    np.testing.assert_allclose(frechet_distance_from_stats(*stats[0], *stats[1]), reference, rtol=2e-5)
    with jax.enable_x64(True):
        stats64 = [jnp.asarray(v, jnp.float64) for pair in stats for v in pair]
        value = frechet_distance_from_stats(*stats64)
        assert value.dtype == jnp.float64
        np.testing.assert_allclose(value, reference, rtol=1e-11)
    # symmetric, and 0 for a set with itself
    np.testing.assert_allclose(frechet_distance(b, a), reference, rtol=2e-5)
    np.testing.assert_allclose(frechet_distance(a, a), 0.0, atol=1e-5)


def test_fid_rank_deficient_features_stay_accurate_in_float32():
    # N < F: singular covariances, where sqrtm-style float32 roots of tiny eigenvalues go wrong
    a, b = _correlated(2, 20, 64, 0.0), _correlated(3, 30, 64, 0.1)
    cov_a, cov_b = np.cov(a.astype(np.float64), rowvar=False), np.cov(b.astype(np.float64), rowvar=False)
    lam, vec = np.linalg.eigh(cov_a)
    sqrt_a = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a), 0, None)).sum()
    diff = a.mean(0).astype(np.float64) - b.mean(0)
    reference = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    np.testing.assert_allclose(frechet_distance(a, b), reference, rtol=1e-5)


def test_frechet_closed_forms_for_gaussians():
    mu1, mu2 = jnp.array([0.0, 1.0, -2.0]), jnp.array([1.0, 1.0, 0.0])
    # equal covariances: only the mean term remains
    cov = jnp.asarray(np.cov(_correlated(4, 50, 3, 0.0), rowvar=False))
    np.testing.assert_allclose(frechet_distance_from_stats(mu1, cov, mu2, cov), 5.0, rtol=1e-5, atol=1e-5)
    # diagonal (commuting) covariances: sum of (sqrt(s1) - sqrt(s2))^2 plus the mean term
    s1, s2 = jnp.array([1.0, 4.0, 9.0]), jnp.array([4.0, 1.0, 0.25])
    expected = 5.0 + float(jnp.sum((jnp.sqrt(s1) - jnp.sqrt(s2)) ** 2))
    np.testing.assert_allclose(frechet_distance_from_stats(mu1, jnp.diag(s1), mu2, jnp.diag(s2)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="cov2"):
        frechet_distance_from_stats(mu1, jnp.diag(s1), mu2, jnp.eye(2))
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="feats_a"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))


def test_kid_hand_computed_and_expectation():
    # F = 1: k(x, y) = (xy + 1)^3; a = {0, 1}, b = {1, 2}
    # within a: k(0,1) = 1; within b: k(1,2) = 27; across: (1 + 1 + 8 + 27) / 4 = 9.25 -> 1 + 27 - 18.5
    a, b = jnp.array([[0.0], [1.0]]), jnp.array([[1.0], [2.0]])
    mean, std = kid(jax.random.key(0), a, b, num_subsets=4, subset_size=2)
    np.testing.assert_allclose([mean, std], [9.5, 0.0], atol=1e-5)
    # same distribution: unbiased, mean near 0 (well inside the subset spread); a shift is detected
    x, y = (jax.random.normal(jax.random.key(s), (400, 16)) for s in (1, 2))
    same, same_std = kid(jax.random.key(3), x, y, num_subsets=50, subset_size=100)
    assert abs(float(same)) < 0.5 * float(same_std) + 1e-3
    shifted, _ = kid(jax.random.key(3), x, y + 0.5, num_subsets=50, subset_size=100)
    assert float(shifted) > 20 * abs(float(same)) and float(shifted) > 0.01
    with pytest.raises(ValueError, match="subset_size"):
        kid(jax.random.key(0), a, b, num_subsets=2, subset_size=3)


def test_mmd_hand_computed_and_expectation():
    # sigma = 1, a = {0, 1}, b = {0, 2}: within a e^-1/2, within b e^-2, across (1 + e^-2 + 2 e^-1/2) / 4
    e = np.exp
    expected = e(-0.5) + e(-2.0) - (1 + e(-2.0) + 2 * e(-0.5)) / 2
    np.testing.assert_allclose(mmd(jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [2.0]]), 1.0), expected, rtol=1e-6)
    # unbiased: over many independent pairs of samples from one distribution the mean is ~0
    draws = jax.random.normal(jax.random.key(5), (60, 2, 20, 3))
    values = np.asarray(jax.vmap(lambda d: mmd(d[0], d[1], 1.5))(draws))
    assert abs(values.mean()) < 3 * values.std() / np.sqrt(len(values))
    assert float(mmd(draws[0, 0], draws[0, 1] + 1.0, 1.5)) > 5 * values.std()
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(draws[0, 0], draws[0, 1], 0.0)


def test_precision_recall_density_coverage_known_answers():
    real = jax.random.normal(jax.random.key(6), (40, 5))
    same = precision_recall_coverage(real, real, k=5)
    # fake == real: each fake sits at the centre of its own ball; distinct distances -> density exactly 1
    np.testing.assert_allclose([same[m] for m in ("precision", "recall", "density", "coverage")], 1.0, rtol=1e-6)
    far = precision_recall_coverage(real, real + 100.0, k=5)
    np.testing.assert_allclose([far[m] for m in ("precision", "recall", "density", "coverage")], 0.0)
    # 1-D by hand, k = 1: real 0..4 (radius 1), fake {0.5, 10} (radius 9.5)
    line = precision_recall_coverage(jnp.arange(5.0)[:, None], jnp.array([[0.5], [10.0]]), k=1)
    # precision: only 0.5 lies in a real ball; recall: 0.5's ball holds every real point;
    # density: 0.5 lies in the balls of 0 and 1 -> (2 + 0) / 2 / k; coverage: reals 0 and 1 of 5
    np.testing.assert_allclose(
        [line["precision"], line["recall"], line["density"], line["coverage"]], [0.5, 1.0, 1.0, 0.4]
    )
    with pytest.raises(ValueError, match="feats_b"):
        precision_recall_coverage(real, real[:5], k=5)


def test_ms_ssim_single_scale_is_dm_pix_ssim_and_closed_form():
    ref = jax.random.uniform(jax.random.key(7), (2, 16, 16, 2), minval=-1.0, maxval=1.0)
    x = ref + 0.2 * jax.random.normal(jax.random.key(8), ref.shape)
    np.testing.assert_allclose(ms_ssim(x, ref, 2.0, weights=(1.0,)), pix.ssim(x, ref, max_val=2.0), rtol=1e-5)
    # identity gives 1; more noise, lower MS-SSIM
    noisier = ref + 0.5 * jax.random.normal(jax.random.key(8), ref.shape)
    values = ms_ssim(jnp.stack([ref, x, noisier]), jnp.stack([ref] * 3), 2.0, weights=(0.5, 0.5), filter_size=7)
    np.testing.assert_allclose(values[0], 1.0, atol=1e-6)
    assert np.all(np.asarray(values[1]) < 0.95) and np.all(np.asarray(values[2]) < np.asarray(values[1]))
    # constant images: cs = 1 at every scale, the coarsest SSIM is the luminance term l; MS-SSIM = l^w_M
    c1, c2, C1 = 0.5, 0.25, (0.01 * 2.0) ** 2
    lum = (2 * c1 * c2 + C1) / (c1**2 + c2**2 + C1)
    value = ms_ssim(jnp.full((2, 32, 32, 1), c1), jnp.full((2, 32, 32, 1), c2), 2.0, **_SMALL)
    np.testing.assert_allclose(value, lum**0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(ref, ref, 2.0)  # 24 px cannot hold 5 scales of an 11-px window
    assert len(MS_SSIM_WEIGHTS) == 5 and abs(sum(MS_SSIM_WEIGHTS) - 1.0) < 1e-3


def test_ms_ssim_3d_of_depth_constant_volumes_equals_2d():
    ref = jax.random.uniform(jax.random.key(9), (2, 32, 32, 1), minval=-1.0, maxval=1.0)
    x = ref + 0.3 * jax.random.normal(jax.random.key(10), ref.shape)
    flat = ms_ssim(x, ref, 2.0, **_SMALL)
    volume = ms_ssim(*(jnp.repeat(v[:, None], 20, axis=1) for v in (x, ref)), 2.0, spatial_dims=3, **_SMALL)
    np.testing.assert_allclose(volume, flat, rtol=1e-5)
    assert np.all((np.asarray(flat) > 0.0) & (np.asarray(flat) < 0.9))


def test_ms_ssim_diversity():
    options = {"data_range": 2.0, "weights": (0.5, 0.5), "filter_size": 7}
    images = jax.random.uniform(jax.random.key(11), (2, 16, 16, 1), minval=-1.0, maxval=1.0)
    copies = jnp.repeat(images[:1], 5, axis=0)
    np.testing.assert_allclose(ms_ssim_diversity(jax.random.key(0), copies, num_pairs=8, **options), 0.0, atol=1e-6)
    # two distinct images: every pair is (0, 1) or (1, 0), never an image with itself
    pair = ms_ssim_diversity(jax.random.key(0), images, num_pairs=8, **options)
    np.testing.assert_allclose(pair, 1.0 - ms_ssim(images[0], images[1], 2.0, weights=(0.5, 0.5), filter_size=7),
                               rtol=1e-5)  # fmt: skip
    assert float(pair) > 0.5
    with pytest.raises(ValueError, match="samples"):
        ms_ssim_diversity(jax.random.key(0), images[:1], num_pairs=2, **options)
