"""Distribution metrics for generated images: FID, KID, MMD, precision/recall/density/coverage,
MS-SSIM and MS-SSIM diversity.

The feature-space metrics take feature matrices ``[N, F]`` (one row per image, e.g. from
`gensynth.metrics.features.extract_features`) and compare a real set ``a`` with a generated set
``b``. Every matrix product runs at ``Precision.HIGHEST`` (no TF32/bf16 passes on GPU). Results
are computed in float32, or float64 when JAX runs with ``jax_enable_x64`` and float64 inputs.
Pairwise metrics (KID, MMD, PRDC) build ``[N_a, N_b]`` kernel or distance matrices; keep ``N``
to about 10k per call.

References:
  Heusel et al. 2017 (FID); Binkowski et al. 2018 (KID); Gretton et al. 2012 (MMD);
  Kynkäänniemi et al. 2019 (precision, recall); Naeem et al. 2020 (density, coverage);
  Wang, Simoncelli & Bovik 2003 (MS-SSIM).
"""

import functools

import jax
import jax.numpy as jnp

from gensynth.metrics.image_quality import _magnitude, ssim_terms

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, scales fine to coarse

_HI = jax.lax.Precision.HIGHEST


def _features(name: str, x: jax.Array, min_rows: int = 2) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{name}: expected a feature matrix [N, F] with N >= {min_rows}, got shape {x.shape}")
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _feature_pair(a: jax.Array, b: jax.Array, min_rows: int = 2) -> tuple[jax.Array, jax.Array]:
    a, b = _features("feats_a", a, min_rows), _features("feats_b", b, min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a, feats_b: feature sizes differ, {a.shape[1]} and {b.shape[1]}")
    return a, b


def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    """``[N_a, N_b]`` squared Euclidean distances, clipped at 0."""
    cross = jnp.matmul(a, b.T, precision=_HI)
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2 * cross, 0.0)


def _mmd2_unbiased(k_aa: jax.Array, k_bb: jax.Array, k_ab: jax.Array) -> jax.Array:
    """Unbiased MMD² from kernel matrices: diagonal terms of ``k_aa``, ``k_bb`` left out."""
    m, n = k_aa.shape[0], k_bb.shape[0]
    within_a = (jnp.sum(k_aa) - jnp.trace(k_aa)) / (m * (m - 1))
    within_b = (jnp.sum(k_bb) - jnp.trace(k_bb)) / (n * (n - 1))
    return within_a + within_b - 2 * jnp.mean(k_ab)


@jax.jit
def _frechet_from_stats(mu1, cov1, mu2, cov2):
    lam, vec = jnp.linalg.eigh(cov1)
    sqrt1 = jnp.matmul(vec * jnp.sqrt(jnp.maximum(lam, 0.0)), vec.T, precision=_HI)  # sqrt(C1)
    middle = jnp.matmul(jnp.matmul(sqrt1, cov2, precision=_HI), sqrt1, precision=_HI)
    middle = 0.5 * (middle + middle.T)
    tr_sqrt = jnp.sum(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(middle), 0.0)))
    diff = mu1 - mu2
    return jnp.sum(diff * diff) + jnp.trace(cov1) + jnp.trace(cov2) - 2 * tr_sqrt


def frechet_distance_from_stats(mu1: jax.Array, cov1: jax.Array, mu2: jax.Array, cov2: jax.Array) -> jax.Array:
    """Fréchet distance between the Gaussians ``N(mu1, cov1)`` and ``N(mu2, cov2)``.

    .. math::

        d^2 = \\|\\mu_1 - \\mu_2\\|^2 + \\mathrm{tr}(C_1) + \\mathrm{tr}(C_2)
              - 2\\, \\mathrm{tr}\\big((C_1^{1/2} C_2 C_1^{1/2})^{1/2}\\big)

    The last trace is the sum of square roots of the eigenvalues of the symmetric matrix
    ``C1^{1/2} C2 C1^{1/2}`` (no non-symmetric ``sqrtm``). In float32 an eigenvalue error of
    ``eps * max_eig`` becomes ``sqrt(eps * max_eig)`` after the root, so for rank-deficient
    covariances prefer `frechet_distance` on the features, or float64 (``jax_enable_x64``).

    Args:
      mu1: ``[F]`` mean of the first set.
      cov1: ``[F, F]`` its covariance (symmetric positive semi-definite).
      mu2: ``[F]`` mean of the second set.
      cov2: ``[F, F]`` its covariance.

    Returns:
      Scalar ``d^2`` (FID when the statistics are Inception pool features), in squared feature units.

    >>> float(frechet_distance_from_stats(jnp.zeros(2), jnp.eye(2), jnp.ones(2), jnp.eye(2)))
    2.0

    References:
      Dowson & Landau 1982; Heusel et al. 2017, "GANs trained by a two time-scale update rule".
    """
    mu1, mu2 = jnp.asarray(mu1), jnp.asarray(mu2)
    cov1, cov2 = jnp.asarray(cov1), jnp.asarray(cov2)
    f = mu1.shape[0] if mu1.ndim == 1 else -1
    for name, value, shape in (("mu1", mu1, (f,)), ("cov1", cov1, (f, f)), ("mu2", mu2, (f,)), ("cov2", cov2, (f, f))):
        if value.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} (means [F], covariances [F, F]), got {value.shape}")
    dtype = jnp.result_type(mu1, cov1, mu2, cov2, jnp.float32)
    return _frechet_from_stats(*(v.astype(dtype) for v in (mu1, cov1, mu2, cov2)))


def _scaled_factor(x: jax.Array) -> jax.Array:
    """``A`` with ``A^T A = cov(x)``: the centred rows, or their R factor when ``N > F``."""
    n, f = x.shape
    centred = (x - jnp.mean(x, axis=0)) / jnp.sqrt(n - 1.0)
    return jnp.linalg.qr(centred, mode="r") if n > f else centred


@jax.jit
def _frechet_from_features(a, b):
    factor_a, factor_b = _scaled_factor(a), _scaled_factor(b)
    # eig(C_a C_b) = singular values² of A_a A_b^T: the roots come out directly, at float precision
    tr_sqrt = jnp.sum(jnp.linalg.svd(jnp.matmul(factor_a, factor_b.T, precision=_HI), compute_uv=False))
    diff = jnp.mean(a, 0) - jnp.mean(b, 0)
    return jnp.sum(diff * diff) + jnp.sum(factor_a**2) + jnp.sum(factor_b**2) - 2 * tr_sqrt


def frechet_distance(feats_a: jax.Array, feats_b: jax.Array) -> jax.Array:
    """Fréchet distance (FID when the features are Inception pool features) between two sets.

    The same quantity as `frechet_distance_from_stats` of the sample means and covariances
    (``N - 1`` normalisation), computed from the data: with ``C = A^T A`` (``A`` the centred,
    scaled rows, or their QR factor ``R`` when ``N > F``), ``tr (C_a^{1/2} C_b C_a^{1/2})^{1/2}``
    is the sum of the singular values of ``A_a A_b^T``. Singular values carry an absolute error
    of ``eps * max_sv`` rather than the ``sqrt(eps)`` of rooting eigenvalues, so float32 is
    accurate even when ``N < F`` (rank-deficient covariances).

    Args:
      feats_a: ``[N_a, F]`` features of the first (real) set, ``N_a >= 2``.
      feats_b: ``[N_b, F]`` features of the second (generated) set, ``N_b >= 2``.

    Returns:
      Scalar Fréchet distance, in squared feature units; 0 for identical sets.

    >>> x = jax.random.normal(jax.random.key(0), (64, 3))
    >>> round(float(frechet_distance(x, x + 2.0)), 3)
    12.0

    References:
      Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
      equilibrium" (FID).
    """
    return _frechet_from_features(*_feature_pair(feats_a, feats_b))


@functools.partial(jax.jit, static_argnames=("num_subsets", "subset_size"))
def _kid(key, a, b, num_subsets, subset_size):
    f = a.shape[1]

    def kernel(x, y):
        return (jnp.matmul(x, y.T, precision=_HI) / f + 1.0) ** 3

    def one_subset(subset_key):
        key_a, key_b = jax.random.split(subset_key)
        x = a[jax.random.permutation(key_a, a.shape[0])[:subset_size]]
        y = b[jax.random.permutation(key_b, b.shape[0])[:subset_size]]
        return _mmd2_unbiased(kernel(x, x), kernel(y, y), kernel(x, y))

    values = jax.lax.map(one_subset, jax.random.split(key, num_subsets))  # [num_subsets]
    return jnp.mean(values), jnp.std(values)


def kid(
    key: jax.Array, feats_a: jax.Array, feats_b: jax.Array, *, num_subsets: int = 100, subset_size: int = 1000
) -> tuple[jax.Array, jax.Array]:
    """Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, over subsets.

    .. math::

        k(x, y) = (x^\\top y / F + 1)^3

    Each of ``num_subsets`` draws takes ``subset_size`` rows of each set without replacement and
    computes the unbiased MMD² (diagonal kernel terms left out); KID is their mean.

    Args:
      key: PRNG key for the subsets.
      feats_a: ``[N_a, F]`` features of the first (real) set.
      feats_b: ``[N_b, F]`` features of the second (generated) set.
      num_subsets: number of subset draws.
      subset_size: rows per draw, ``2 <= subset_size <= min(N_a, N_b)`` (Binkowski et al.: 1000).

    Returns:
      ``(mean, std)`` of the per-subset estimates (squared feature-kernel units; unbiased, so a
      value may be slightly negative when the sets match).

    >>> x = jax.random.normal(jax.random.key(0), (32, 4))
    >>> [v.shape for v in kid(jax.random.key(1), x, x + 1.0, num_subsets=3, subset_size=16)]
    [(), ()]

    References:
      Binkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs", eq. 2 and Sec. 4.
    """
    a, b = _feature_pair(feats_a, feats_b)
    if not 2 <= subset_size <= min(a.shape[0], b.shape[0]):
        raise ValueError(
            f"subset_size: expected 2 <= subset_size <= min(N_a, N_b) = {min(a.shape[0], b.shape[0])}, "
            f"got {subset_size}"
        )
    if num_subsets < 1:
        raise ValueError(f"num_subsets: expected >= 1, got {num_subsets}")
    return _kid(key, a, b, num_subsets, subset_size)


@jax.jit
def _mmd_rbf(a, b, bandwidth):
    def kernel(x, y):
        return jnp.exp(-_sq_dists(x, y) / (2 * bandwidth**2))

    return _mmd2_unbiased(kernel(a, a), kernel(b, b), kernel(a, b))


def mmd(feats_a: jax.Array, feats_b: jax.Array, bandwidth: float) -> jax.Array:
    """Unbiased squared maximum mean discrepancy with a Gaussian (RBF) kernel.

    .. math::

        k(x, y) = \\exp(-\\|x - y\\|^2 / (2 \\sigma^2)), \\quad
        \\mathrm{MMD}^2_u = \\frac{\\sum_{i \\ne j} k(a_i, a_j)}{m (m - 1)}
            + \\frac{\\sum_{i \\ne j} k(b_i, b_j)}{n (n - 1)} - \\frac{2}{m n} \\sum_{i, j} k(a_i, b_j)

    with ``sigma = bandwidth``, ``m = N_a``, ``n = N_b``.

    Args:
      feats_a: ``[N_a, F]`` features of the first set, ``N_a >= 2``.
      feats_b: ``[N_b, F]`` features of the second set, ``N_b >= 2``.
      bandwidth: kernel width sigma > 0, in feature units (the median pairwise distance is the
        usual choice).

    Returns:
      Scalar unbiased MMD² (its expectation is 0 iff the distributions are equal).

    >>> round(float(mmd(jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [2.0]]), 1.0)), 4)  # hand: -0.4323
    -0.4323

    References:
      Gretton, Borgwardt, Rasch, Schölkopf & Smola 2012, "A kernel two-sample test", Lemma 6.
    """
    a, b = _feature_pair(feats_a, feats_b)
    if not bandwidth > 0:
        raise ValueError(f"bandwidth: expected > 0, got {bandwidth!r}")
    return _mmd_rbf(a, b, jnp.asarray(bandwidth, a.dtype))


@functools.partial(jax.jit, static_argnames=("k",))
def _prdc(real, fake, k):
    def kth_nn(x):  # squared distance of each row to its k-th nearest other row
        d = _sq_dists(x, x) + jnp.diag(jnp.full(x.shape[0], jnp.inf, x.dtype))
        return -jax.lax.top_k(-d, k)[0][:, k - 1]

    radius_real, radius_fake = kth_nn(real), kth_nn(fake)  # [N_r], [N_f]
    d = _sq_dists(real, fake)  # [N_r, N_f]
    inside_real = d < radius_real[:, None]  # fake j inside the k-NN ball of real i
    return {
        "precision": jnp.mean(jnp.any(inside_real, axis=0)),
        "recall": jnp.mean(jnp.any(d < radius_fake[None, :], axis=1)),
        "density": jnp.mean(jnp.sum(inside_real, axis=0)) / k,
        "coverage": jnp.mean(jnp.min(d, axis=1) < radius_real),
    }


def precision_recall_coverage(real: jax.Array, fake: jax.Array, k: int = 5) -> dict[str, jax.Array]:
    """Precision, recall (k-NN manifolds) and density, coverage of generated features.

    With ``B_k(x)`` the ball around ``x`` reaching its k-th nearest neighbour in its own set:
    precision is the fraction of fakes inside some real ball, recall the fraction of reals inside
    some fake ball, density the mean number of real balls holding a fake divided by k, coverage
    the fraction of real balls holding at least one fake. Boundaries count as outside.

    Args:
      real: ``[N_r, F]`` real features, ``N_r > k``.
      fake: ``[N_f, F]`` generated features, ``N_f > k``.
      k: neighbourhood size (5 in both papers).

    Returns:
      dict of scalars ``precision``, ``recall``, ``coverage`` in [0, 1] and ``density`` in
      [0, N_r / k] (about 1 when fakes follow the real distribution).

    >>> x = jax.random.normal(jax.random.key(0), (20, 2))
    >>> {name: float(v) for name, v in precision_recall_coverage(x, x, k=3).items()}
    {'coverage': 1.0, 'density': 1.0, 'precision': 1.0, 'recall': 1.0}

    References:
      Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing generative
      models"; Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models".
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    a, b = _feature_pair(real, fake, min_rows=k + 1)
    return _prdc(a, b, k)


@functools.partial(jax.jit, static_argnames=("spatial_dims", "weights", "filter_size", "filter_sigma"))
def _ms_ssim(x, ref, data_range, spatial_dims, weights, filter_size, filter_sigma):
    factors = []
    for scale in range(len(weights)):
        if scale:  # 2x average pooling along every spatial axis (odd sizes lose their last pixel)
            for axis in range(x.ndim - 1 - spatial_dims, x.ndim - 1):
                n = x.shape[axis] // 2
                shape = x.shape[:axis] + (n, 2) + x.shape[axis + 1 :]
                x = jax.lax.slice_in_dim(x, 0, 2 * n, axis=axis).reshape(shape).mean(axis + 1)
                ref = jax.lax.slice_in_dim(ref, 0, 2 * n, axis=axis).reshape(shape).mean(axis + 1)
        ssim_j, cs_j = ssim_terms(
            x, ref, data_range, spatial_dims=spatial_dims, filter_size=filter_size, filter_sigma=filter_sigma
        )
        factors.append(ssim_j if scale == len(weights) - 1 else cs_j)  # [..., C]
    exponents = jnp.asarray(weights).reshape((-1,) + (1,) * factors[0].ndim)
    return jnp.mean(jnp.prod(jnp.maximum(jnp.stack(factors), 0.0) ** exponents, axis=0), axis=-1)  # [...]


def ms_ssim(
    x: jax.Array,
    ref: jax.Array,
    data_range: float,
    *,
    spatial_dims: int = 2,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
) -> jax.Array:
    """Multi-scale SSIM, 2D or 3D: contrast-structure at the finer scales, full SSIM at the coarsest.

    .. math::

        \\mathrm{MS\\text{-}SSIM} = \\mathrm{SSIM}_M^{w_M} \\prod_{j=1}^{M-1} cs_j^{w_j}

    Scale ``j + 1`` is scale ``j`` average-pooled 2x along every spatial axis. Negative factors
    count as 0 (as in TensorFlow's ``ssim_multiscale``); the product is taken per channel, then
    averaged over channels. The coarsest scale must still hold the window:
    ``min(S) >= filter_size * 2^(M-1)`` (176 px for the defaults); for small images pass fewer
    weights (e.g. the first three, renormalised) and a smaller window.

    Args:
      x: ``[..., *S, C]`` estimate (real, or complex: its magnitude); ``S = (H, W)`` or ``(D, H, W)``.
      ref: ``[..., *S, C]`` reference, same shape.
      data_range: peak-to-peak range (2 for images in [-1, 1]).
      spatial_dims: 2 or 3, the length of ``S``.
      weights: exponents ``w_1..w_M``, fine to coarse; Wang et al.'s five by default.
      filter_size: Gaussian window side in pixels.
      filter_sigma: window standard deviation in pixels.

    Returns:
      ``[...]`` MS-SSIM per image, in [0, 1] (1 iff ``x == ref``).

    >>> x = jnp.ones((2, 32, 32, 1))
    >>> ms_ssim(x, x, 2.0, weights=(0.5, 0.5), filter_size=7).shape
    (2,)

    References:
      Wang, Simoncelli & Bovik 2003, "Multiscale structural similarity for image quality
      assessment", eq. 7 and Sec. 3.2 (weights).
    """
    x, ref = _magnitude(x), _magnitude(ref)
    weights = tuple(float(w) for w in weights)
    if not weights or min(weights) < 0:
        raise ValueError(f"weights: expected one or more exponents >= 0, got {weights}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims}")
    if x.shape != ref.shape or x.ndim < spatial_dims + 1:
        raise ValueError(f"x, ref: expected two arrays of one shape [..., *S, C], got {x.shape} and {ref.shape}")
    sizes = x.shape[-1 - spatial_dims : -1]
    if min(sizes) // 2 ** (len(weights) - 1) < filter_size:
        raise ValueError(
            f"x: spatial size {sizes} is too small for {len(weights)} scales with filter_size {filter_size} "
            f"(needs >= {filter_size * 2 ** (len(weights) - 1)}); pass fewer weights or a smaller filter_size"
        )
    if not data_range > 0:
        raise ValueError(f"data_range: expected > 0, got {data_range!r}")
    return _ms_ssim(x, ref, data_range, spatial_dims, weights, filter_size, filter_sigma)


def ms_ssim_diversity(
    key: jax.Array,
    samples: jax.Array,
    *,
    num_pairs: int,
    data_range: float,
    spatial_dims: int = 2,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    filter_size: int = 11,
) -> jax.Array:
    """Diversity of a sample set: mean ``1 - MS-SSIM`` over random pairs of distinct samples.

    Higher is more diverse: 0 for a set of copies of one image. Compare it with the same number
    for real images (a generator that collapses scores below the data).

    Args:
      key: PRNG key for the pairs.
      samples: ``[N, *S, C]`` images, ``N >= 2``.
      num_pairs: number of pairs ``(i, j)``, ``i != j``, drawn uniformly with replacement.
      data_range: peak-to-peak range (2 for images in [-1, 1]).
      spatial_dims: 2 or 3.
      weights: MS-SSIM exponents (see `ms_ssim`).
      filter_size: MS-SSIM window side.

    Returns:
      Scalar mean ``1 - MS-SSIM``, in [0, 1].

    >>> x = jnp.ones((4, 32, 32, 1))
    >>> round(float(ms_ssim_diversity(jax.random.key(0), x, num_pairs=3, data_range=2.0, weights=(1.0,))), 6)
    0.0

    References:
      Odena, Olah & Shlens 2017, "Conditional image synthesis with auxiliary classifier GANs",
      Sec. 4.2 (MS-SSIM as a diversity measure).
    """
    samples = jnp.asarray(samples)
    if samples.ndim < spatial_dims + 2 or samples.shape[0] < 2:
        raise ValueError(
            f"samples: expected [N, *S, C] with N >= 2 and {spatial_dims} spatial axes, got {samples.shape}"
        )
    if num_pairs < 1:
        raise ValueError(f"num_pairs: expected >= 1, got {num_pairs}")
    key_i, key_j = jax.random.split(key)
    n = samples.shape[0]
    i = jax.random.randint(key_i, (num_pairs,), 0, n)
    j = (i + jax.random.randint(key_j, (num_pairs,), 1, n)) % n  # uniform over the others

    def pair_similarity(pair):
        return ms_ssim(
            samples[pair[0]], samples[pair[1]], data_range,
            spatial_dims=spatial_dims, weights=weights, filter_size=filter_size,
        )  # fmt: skip

    # 16 pairs at a time: memory stays bounded for 3D volumes and many pairs
    similarity = jax.lax.map(pair_similarity, jnp.stack([i, j], axis=1), batch_size=min(num_pairs, 16))
    return jnp.mean(1.0 - similarity)
