"""Phantoms: the Shepp-Logan head from scikit-image and seeded random ellipse heads.

The random phantoms are Shepp-Logan-like: a bright skull shell around a darker brain
holding `n_ellipses` additive ellipses (ellipsoids in 3D) of random size, rotation
and contrast, plus, with probability `lesion_prob`, one to three small bright or
dark lesions. Coordinates span [-1, 1] per axis; intensities are clipped to [0, 1]
and returned in [-1, 1]. An unlimited, cheap training set for CT/MRI experiments.

References:
    Shepp and Logan, "The Fourier reconstruction of a head section", IEEE Trans.
    Nucl. Sci. 21 (1974).
"""

from __future__ import annotations

import numpy as np
import skimage.data
import skimage.transform


def shepp_logan(size: int) -> np.ndarray:
    """The modified Shepp-Logan phantom (scikit-image, 400 x 400) resized to `size`.

    Args:
        size: output side in pixels.

    Returns:
        float32 `[size, size, 1]` in [-1, 1] (background -1, skull 1).

    Example:
        >>> shepp_logan(64).shape
        (64, 64, 1)
    """
    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size: expected a positive int (pixels), got {size!r}")
    image = skimage.transform.resize(
        skimage.data.shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True
    )
    return (np.clip(image, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)[..., None]


def _random_rotation(rng: np.random.Generator, k: int) -> np.ndarray:
    """Uniform random rotation `[k, k]` (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _inside_brain(rng: np.random.Generator, head: tuple, count: int, reach: float) -> np.ndarray:
    """`count` random centres `[count, k]` within `reach` of the head ellipsoid."""
    centre, axes, rotation = head
    k = centre.shape[0]
    direction = rng.standard_normal((count, k))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = reach * rng.uniform(0.0, 1.0, (count, 1)) ** (1.0 / k)
    return centre + (direction * radius * axes) @ rotation.T


def _one_phantom(
    rng: np.random.Generator, grid: np.ndarray, n_ellipses: tuple[int, int], lesion_prob: float
) -> np.ndarray:
    """Intensities `[P]` in [0, 1] of one random phantom on grid points `[P, k]`."""
    k = grid.shape[1]
    head = (rng.uniform(-0.05, 0.05, k), rng.uniform(0.65, 0.9, k), _random_rotation(rng, k))
    skull = rng.uniform(0.04, 0.08)
    base = rng.uniform(0.2, 0.4)
    centres = [head[0], head[0]]
    axes = [head[1], head[1] - skull]
    rotations = [head[2], head[2]]
    values = [1.0, base - 1.0]  # skull shell at 1, brain at `base` (additive layers)
    count = rng.integers(n_ellipses[0], n_ellipses[1] + 1)
    centres.extend(_inside_brain(rng, head, count, reach=0.6))
    axes.extend(rng.uniform(0.05, 0.3, (count, k)))
    rotations.extend(_random_rotation(rng, k) for _ in range(count))
    values.extend(rng.uniform(-0.2, 0.4, count))
    if rng.uniform() < lesion_prob:
        lesions = rng.integers(1, 4)
        centres.extend(_inside_brain(rng, head, lesions, reach=0.7))
        axes.extend(rng.uniform(0.02, 0.06, (lesions, k)))
        rotations.extend(_random_rotation(rng, k) for _ in range(lesions))
        values.extend(rng.choice([-1.0, 1.0], lesions) * rng.uniform(0.3, 0.5, lesions))
    centres, axes, rotations = np.stack(centres), np.stack(axes), np.stack(rotations)
    # Coordinates of each grid point in each ellipsoid's frame, in units of its semi-axes.
    u = np.einsum("pk,ekj->epj", grid, rotations) - np.einsum("ek,ekj->ej", centres, rotations)[:, None]
    inside = np.sum((u / axes[:, None, :]) ** 2, axis=-1) <= 1.0  # [E, P]
    inside[2:] &= inside[1]  # structures and lesions stay inside the brain
    return np.clip(np.asarray(values, dtype=np.float32) @ inside, 0.0, 1.0)


def random_ellipse_phantoms(
    seed: int,
    n: int,
    size: int,
    *,
    n_ellipses: tuple[int, int] = (3, 8),
    lesion_prob: float = 0.5,
    spatial_dims: int = 2,
) -> np.ndarray:
    """Draws `n` random Shepp-Logan-like phantoms (numpy, on the host).

    Phantom i depends only on `(seed, i)`, so the first m of `n` phantoms equal the
    `m` phantoms drawn with the same seed.

    Args:
        seed: non-negative int seed.
        n: number of phantoms.
        size: side in pixels (voxels when `spatial_dims=3`).
        n_ellipses: inclusive range of inner ellipses per phantom.
        lesion_prob: probability in [0, 1] that a phantom carries 1-3 small lesions.
        spatial_dims: 2 (ellipses) or 3 (ellipsoids).

    Returns:
        float32 `[n, size, size, 1]` (or `[n, size, size, size, 1]`) in [-1, 1].

    Raises:
        ValueError: for a bad `n`, `size`, `n_ellipses`, `lesion_prob` or `spatial_dims`.

    Example:
        >>> random_ellipse_phantoms(0, 4, 32).shape
        (4, 32, 32, 1)
    """
    if n <= 0 or size <= 0:
        raise ValueError(f"n, size: expected positive ints, got n={n}, size={size}")
    if not 1 <= n_ellipses[0] <= n_ellipses[1]:
        raise ValueError(f"n_ellipses: expected (lo, hi) with 1 <= lo <= hi, got {n_ellipses}")
    if not 0.0 <= lesion_prob <= 1.0:
        raise ValueError(f"lesion_prob: expected a probability in [0, 1], got {lesion_prob}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims}")
    centres = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    grid = np.stack(np.meshgrid(*[centres] * spatial_dims, indexing="ij"), axis=-1)
    grid = grid.reshape(-1, spatial_dims)  # [P, k]
    images = [
        _one_phantom(np.random.default_rng([seed, i]), grid, n_ellipses, lesion_prob)
        for i in range(n)
    ]
    shape = (n,) + (size,) * spatial_dims + (1,)
    return (np.stack(images) * 2.0 - 1.0).astype(np.float32).reshape(shape)
