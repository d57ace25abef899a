"""k-space sampling masks for accelerated MRI, deterministic under a seed (NumPy generator).

Every generator returns ``(mask, effective_R)``: ``mask`` is float32 ``[H, W]`` in {0, 1} with the
k-space centre (DC) at ``[H // 2, W // 2]``, and ``effective_R = H * W / mask.sum()`` (spec ch. 7,
Sect. 6.1: report the effective, not the nominal, acceleration). 1-D masks sample whole
phase-encode columns (axis W) and always include a fully sampled centre (ACS) block. Unlike the
reference code, which draws columns with replacement, the 1-D and Gaussian 2-D masks draw without
replacement, so the effective R is the nominal one up to rounding.

References:
    Spec ch. 7, Sect. 6.1 (``get_mask`` of the score-MRI/DDS code); ch. 17, Sect. 2.3.
"""

from collections.abc import Callable

import numpy as np


def _check(shape: tuple[int, int], accel: float) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"shape: expected (H, W) with positive sides, got {shape!r}")
    if not accel >= 1.0:
        raise ValueError(f"accel: expected an acceleration >= 1, got {accel!r}")
    return int(shape[0]), int(shape[1])


def _result(mask: np.ndarray) -> tuple[np.ndarray, float]:
    mask = mask.astype(np.float32)
    return mask, float(mask.size / mask.sum())


def _acs_columns(w: int, acs_fraction: float) -> np.ndarray:
    """Indices of the fully sampled centre block (at least 1 column)."""
    n_acs = max(1, round(w * acs_fraction))
    start = w // 2 - n_acs // 2
    return np.arange(start, start + n_acs)


def _columns_mask(h: int, w: int, columns: np.ndarray) -> tuple[np.ndarray, float]:
    mask = np.zeros((h, w), np.float32)
    mask[:, columns] = 1.0
    return _result(mask)


def _acs_plus_columns(
    shape: tuple[int, int],
    accel: float,
    acs_fraction: float,
    pick: Callable[[np.ndarray, int, int], np.ndarray],
) -> tuple[np.ndarray, float]:
    """ACS block plus ``pick(outside, n_extra, W)``: ``n_extra`` of the ``outside`` (non-ACS)
    columns, enough to reach ``W / accel`` columns in all."""
    h, w = _check(shape, accel)
    acs = _acs_columns(w, acs_fraction)
    outside = np.setdiff1d(np.arange(w), acs)
    n_extra = min(max(0, round(w / accel) - acs.size), outside.size)
    return _columns_mask(h, w, np.concatenate([acs, pick(outside, n_extra, w)]))


def uniform1d(
    shape: tuple[int, int], accel: float, acs_fraction: float = 0.08
) -> tuple[np.ndarray, float]:
    """Equispaced phase-encode columns plus an ACS block (deterministic, no seed).

    The ``W / accel - n_acs`` non-ACS columns are spread evenly over the columns outside the ACS
    block, so the effective R matches ``accel`` up to rounding.

    Args:
        shape: ``(H, W)`` in pixels.
        accel: nominal acceleration R >= 1.
        acs_fraction: fraction of the W columns in the fully sampled centre block.

    Returns:
        ``(mask [H, W] float32, effective_R)``.

    Example:
        >>> uniform1d((32, 32), 4)[1]
        4.0
    """

    def equispaced(outside, n_extra, w):
        return outside[np.round(np.linspace(0, outside.size - 1, n_extra)).astype(int)]

    return _acs_plus_columns(shape, accel, acs_fraction, equispaced)


def random1d(
    shape: tuple[int, int], accel: float, acs_fraction: float = 0.08, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Uniformly random phase-encode columns plus an ACS block.

    Args:
        shape: ``(H, W)``.
        accel: nominal acceleration R >= 1.
        acs_fraction: fraction of the W columns in the fully sampled centre block.
        seed: NumPy generator seed.

    Returns:
        ``(mask [H, W] float32, effective_R)``.

    Example:
        >>> random1d((32, 32), 4, seed=1)[1]
        4.0
    """

    def uniform(outside, n_extra, w):
        return np.random.default_rng(seed).choice(outside, n_extra, replace=False)

    return _acs_plus_columns(shape, accel, acs_fraction, uniform)


def gaussian1d(
    shape: tuple[int, int], accel: float, acs_fraction: float = 0.08, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Gaussian-density random phase-encode columns plus an ACS block.

    Columns are drawn without replacement with probability proportional to
    ``N(W/2, (15 W / 128)^2)``, the reference code's density.

    Args:
        shape: ``(H, W)``.
        accel: nominal acceleration R >= 1.
        acs_fraction: fraction of the W columns in the fully sampled centre block.
        seed: NumPy generator seed.

    Returns:
        ``(mask [H, W] float32, effective_R)``.

    Example:
        >>> gaussian1d((32, 32), 4, seed=1)[1]
        4.0
    """

    def gaussian(outside, n_extra, w):
        std = 15.0 * w / 128.0
        p = np.exp(-0.5 * ((outside - w / 2) / std) ** 2) + 1e-12
        return np.random.default_rng(seed).choice(outside, n_extra, replace=False, p=p / p.sum())

    return _acs_plus_columns(shape, accel, acs_fraction, gaussian)


def _radius(h: int, w: int) -> np.ndarray:
    """Normalised k-space radius ``[H, W]`` (0 at DC, 1 at the middle of each edge)."""
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def gaussian2d(shape: tuple[int, int], accel: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """2-D Gaussian-density random points (no ACS block; the density peaks at DC).

    ``H W / accel`` points drawn without replacement with probability proportional to a Gaussian
    at the centre with covariance ``s (1.5 s / 128) I``, ``s = max(H, W)`` (reference code).

    Args:
        shape: ``(H, W)``.
        accel: nominal acceleration R >= 1.
        seed: NumPy generator seed.

    Returns:
        ``(mask [H, W] float32, effective_R)``.

    Example:
        >>> gaussian2d((32, 32), 8, seed=0)[1]
        8.0
    """
    h, w = _check(shape, accel)
    s = max(h, w)
    var = s * 1.5 * s / 128.0
    ky = np.arange(h)[:, None] - h // 2
    kx = np.arange(w)[None, :] - w // 2
    p = (np.exp(-0.5 * (ky**2 + kx**2) / var) + 1e-12).ravel()
    n = round(h * w / accel)
    picks = np.random.default_rng(seed).choice(h * w, n, replace=False, p=p / p.sum())
    mask = np.zeros(h * w, np.float32)
    mask[picks] = 1.0
    return _result(mask.reshape(h, w))


def _poisson_disc(order: np.ndarray, radius: np.ndarray, w: int) -> np.ndarray:
    """Dart throwing in pixel order: keep a pixel if no kept one lies within its radius."""
    h = radius.shape[0]
    kept = np.zeros(radius.shape, bool)
    for flat in order:
        i, j = divmod(int(flat), w)
        r = radius[i, j]
        reach = int(np.ceil(r))
        i0, i1, j0, j1 = (
            max(0, i - reach),
            min(h, i + reach + 1),
            max(0, j - reach),
            min(w, j + reach + 1),
        )
        window = kept[i0:i1, j0:j1]
        if window.any():
            di, dj = np.nonzero(window)
            if np.min((di + i0 - i) ** 2 + (dj + j0 - j) ** 2) < r * r:
                continue
        kept[i, j] = True
    return kept


def poisson_vd(
    shape: tuple[int, int], accel: float, seed: int = 0, slope: float = 4.0, tol: float = 0.03
) -> tuple[np.ndarray, float]:
    """Variable-density Poisson-disc mask: minimum spacing grows linearly with k-space radius.

    The spacing is ``r0 (1 + slope * rho)`` pixels, ``rho`` the normalised radius; ``r0`` is set
    by a safeguarded secant search so that the effective R is within ``tol`` of ``accel``. A small
    stand-in for ``sigpy.mri.poisson`` (sigpy is not a dependency); host-side NumPy, about 3 s for
    256 x 256. Where the spacing is below 1 pixel every pixel is kept, so the centre is fully
    sampled.

    Args:
        shape: ``(H, W)``.
        accel: nominal acceleration R > 1.
        seed: NumPy generator seed (fixes the dart order).
        slope: how fast the spacing grows with radius (0 = uniform Poisson disc).
        tol: relative tolerance on the effective R.

    Returns:
        ``(mask [H, W] float32, effective_R)``.

    Example:
        >>> abs(poisson_vd((32, 32), 4, seed=0)[1] - 4) < 0.2
        True
    """
    h, w = _check(shape, accel)
    order = np.random.default_rng(seed).permutation(h * w)
    rho = _radius(h, w)

    def sample(r0: float) -> tuple[np.ndarray, float]:
        return _result(_poisson_disc(order, r0 * (1.0 + slope * rho), w))

    # Safeguarded secant search: the kept count scales roughly like r0^-2, so try
    # r0 sqrt(accel / R_eff), falling back to bisection of the bracket [lo, hi].
    lo, hi = 0.0, float(max(h, w))
    r0 = 0.5 * float(np.sqrt(accel))
    best = None
    for _ in range(30):
        mask, eff = sample(r0)
        if best is None or abs(eff - accel) < abs(best[1] - accel):
            best = (mask, eff)
        if abs(eff - accel) <= tol * accel:
            break
        lo, hi = (r0, hi) if eff < accel else (lo, r0)
        guess = r0 * np.sqrt(accel / eff)
        r0 = guess if lo < guess < hi else 0.5 * (lo + hi)
    return best


def radial(shape: tuple[int, int], accel: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """Radial-like Cartesian mask: spokes through DC rasterised to the grid.

    Equally spaced spoke angles over [0, pi) with a random rotation from the seed. The number of
    spokes is the fewest whose full length reaches ``H W / accel`` points; then the spokes are
    cut to the radius whose effective R is closest to ``accel`` (corners stay unsampled, as in
    radial acquisitions).

    Args:
        shape: ``(H, W)``.
        accel: nominal acceleration R > 1.
        seed: NumPy generator seed (spoke rotation).

    Returns:
        ``(mask [H, W] float32, effective_R)``.

    Example:
        >>> abs(radial((32, 32), 4, seed=0)[1] - 4) < 0.4
        True
    """
    h, w = _check(shape, accel)
    offset = np.random.default_rng(seed).uniform(0.0, np.pi)
    t = np.arange(-max(h, w), max(h, w) + 1) * 0.5  # sample points along a spoke, in pixels

    def spokes(n: int, reach: float) -> np.ndarray:
        angles = offset + np.pi * np.arange(n) / n
        tn = t[np.abs(t) <= reach]
        rows = np.round(h // 2 + np.sin(angles)[:, None] * tn).astype(int).ravel()
        cols = np.round(w // 2 + np.cos(angles)[:, None] * tn).astype(int).ravel()
        keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        mask = np.zeros((h, w), np.float32)
        mask[rows[keep], cols[keep]] = 1.0
        return mask

    target = h * w / accel
    full = float(t[-1])
    n = 1
    while spokes(n, full).sum() < target and n < 4 * max(h, w):
        n += 1
    # Fewest spokes that can reach the target; shorten them (a disc of radius `reach`) to hit it.
    candidates = [_result(spokes(n, reach)) for reach in np.arange(1.0, full + 0.5, 0.5)]
    return min(candidates, key=lambda c: abs(c[1] - accel))
