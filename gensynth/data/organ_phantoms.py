"""CT-like abdominal phantoms in HU with exact organ labels, reference ("real") tumours for
evaluating tumour synthesis, and pydicom's CT slice with a soft-tissue organ mask (spec ch. 5,
Sect. 3.2). Host-side NumPy, seeded like `gensynth.data.phantoms`.

The phantom is a miniature abdomen on a 1 mm grid whose field of view is `size` mm; anatomy
scales with `size / 128`, so at 128 it has the spec's dimensions (liver semi-axes about
40/30/25 mm). Axes are (D, H, W) = (axial slice, anterior->posterior, patient right->left);
2D phantoms are the axial plane z = 0 of the same anatomy (with in-plane vessels).

| structure | HU | label |
|---|---|---|
| air | -1000 | 0 |
| subcutaneous / visceral fat | -100 +- 20 | 0 |
| muscle, bowel-like soft tissue | 50 +- 10, 30 +- 10 | 0 |
| liver parenchyma (elastic-deformed ellipsoid, texture sigma 3 mm) | 110 +- 12 | 1 |
| hepatic vessels (random-walk tubes, radius 2-4 mm; short in 2D) | 180 +- 15 (barriers for U = 160) | 1 |
| kidneys: cortex / medulla | 150-190 / 110 | 2 |
| pancreas (curved tube, 15 mm thick, fat speckles -50) | 100 +- 15 | 3 |
| vertebral body: cortex / cancellous bone | 700 / 250 | 4 |

"a +- b" is a per-phantom mean drawn from U(a - b, a + b); Gaussian noise of sigma 10 HU is
added everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.ndimage as ndi

from gensynth.data.dicom import pydicom_samples

ABDOMEN_LABELS = {"background": 0, "liver": 1, "kidney": 2, "pancreas": 3, "spine": 4}


class AbdomenPhantoms(NamedTuple):
    """A batch of abdominal phantoms; `[*S]` = `[size, size]` or `[size, size, size]`."""

    hu: np.ndarray  # float32 [N, *S, 1], HU
    labels: np.ndarray  # uint8 [N, *S, 1], values of ABDOMEN_LABELS
    vessels: np.ndarray  # bool [N, *S, 1], hepatic vessels (inside the liver label)


def _ellipsoid_radius(coords: np.ndarray, centre, axes) -> np.ndarray:
    """Normalised radius `[*S]` of grid points `[3, *S]` (z, y, x) in an axis-aligned ellipsoid."""
    c = np.asarray(centre, np.float32).reshape(3, *([1] * (coords.ndim - 1)))
    a = np.asarray(axes, np.float32).reshape(3, *([1] * (coords.ndim - 1)))
    return np.sqrt(np.sum(((coords - c) / a) ** 2, axis=0))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise `[*S]` scaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _level(rng: np.random.Generator, mean: float, spread: float) -> float:
    return float(rng.uniform(mean - spread, mean + spread))


def _random_walk_tubes(
    rng: np.random.Generator, inside: np.ndarray, count: int, steps: tuple[int, int], scale: float
) -> np.ndarray:
    """Union `[*S]` of `count` random-walk tubes (radius 2-4 mm, `randint[steps]` 1-voxel steps
    at scale 1) starting inside `inside`, clipped to it."""
    shape, ndim = inside.shape, inside.ndim
    tubes = np.zeros(shape, bool)
    starts = np.argwhere(ndi.binary_erosion(inside, iterations=max(1, round(3 * scale))))
    if starts.size == 0:
        return tubes
    grid = np.indices(shape, dtype=np.float32)
    for _ in range(count):
        point = starts[rng.integers(len(starts))].astype(np.float32)
        direction = rng.standard_normal(ndim)
        radius = rng.uniform(2.0, 4.0) * scale
        for _ in range(int(rng.integers(steps[0], steps[1] + 1) * scale)):
            direction = direction / np.linalg.norm(direction) + 0.3 * rng.standard_normal(ndim)
            point = point + direction / np.linalg.norm(direction)
            lo = np.maximum(np.floor(point - radius).astype(int), 0)
            hi = np.minimum(np.ceil(point + radius).astype(int) + 1, shape)
            if np.any(lo >= hi):
                break
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            dist2 = sum((grid[(axis, *box)] - point[axis]) ** 2 for axis in range(ndim))
            tubes[box] |= dist2 <= radius**2
    return tubes & inside


def _one_phantom(rng: np.random.Generator, size: int, spatial_dims: int) -> tuple[np.ndarray, ...]:
    scale = size / 128.0
    shape = (size,) * spatial_dims
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0  # normalised, [-1, 1]
    grids = np.meshgrid(*[axis] * spatial_dims, indexing="ij")
    coords = np.stack(grids if spatial_dims == 3 else [np.zeros(shape, np.float32), *grids])  # [3, *S] (z, y, x)
    flat = coords.copy()
    flat[0] = 0.0  # body and spine are cylinders along z
    hu = np.full(shape, -1000.0, np.float32)
    labels = np.zeros(shape, np.uint8)

    body_axes = (1.0, 0.80 * rng.uniform(0.95, 1.02), 0.95 * rng.uniform(0.95, 1.02))
    body = _ellipsoid_radius(flat, (0, 0, 0), body_axes)
    hu[body <= 1] = _level(rng, -100, 20)  # subcutaneous fat
    wall = _ellipsoid_radius(flat, (0, 0, 0), (1.0, body_axes[1] - 0.07, body_axes[2] - 0.07)) <= 1
    cavity = _ellipsoid_radius(flat, (0, 0, 0), (1.0, body_axes[1] - 0.12, body_axes[2] - 0.12)) <= 1
    hu[wall] = _level(rng, 50, 10)  # abdominal wall muscle
    visceral_fat = _smooth_noise(rng, shape, 4.0 * scale) < -0.5
    hu[cavity] = np.where(visceral_fat, _level(rng, -100, 20), _level(rng, 30, 10))[cavity]
    for side in (-1, 1):  # paraspinal muscles
        hu[_ellipsoid_radius(flat, (0, 0.62, 0.25 * side), (1, 0.12, 0.1)) <= 1] = _level(rng, 50, 10)

    # Liver: deformed ellipsoid inside the cavity, textured parenchyma, vessels.
    centre = (0.0, -0.2, -0.35) + rng.uniform(-0.04, 0.04, 3)
    axes = np.array([0.39, 0.42, 0.5]) * rng.uniform(0.9, 1.1, 3)
    control = rng.standard_normal((spatial_dims,) + (4,) * spatial_dims) * 4.0 * scale  # voxels
    disp = np.stack([ndi.zoom(c, np.array(shape) / 4.0, order=3) for c in control]) * 2.0 / size
    warped = coords.copy()
    warped[3 - spatial_dims :] += disp  # displacement in normalised units
    liver = (_ellipsoid_radius(warped, centre, axes) <= 1) & cavity
    hu[liver] = (_level(rng, 110, 12) + 6.0 * _smooth_noise(rng, shape, 3.0 * scale))[liver]
    if spatial_dims == 3:  # a few long branches
        vessels = _random_walk_tubes(rng, liver, int(rng.integers(3, 6)), (20, 60), scale)
    else:  # a plane cuts vessels into dots and short segments
        vessels = _random_walk_tubes(rng, liver, int(rng.integers(4, 9)), (0, 10), scale)
    hu[vessels] = _level(rng, 180, 15)
    labels[liver] = ABDOMEN_LABELS["liver"]

    for side in (-1, 1):  # kidneys: cortex shell around a medulla
        r = _ellipsoid_radius(coords, (-0.1, 0.38, 0.5 * side), np.array([0.3, 0.16, 0.12]) * rng.uniform(0.9, 1.1, 3))
        kidney = (r <= 1) & cavity
        hu[kidney] = np.where(r < 0.7, _level(rng, 110, 5), rng.uniform(150, 190))[kidney]
        labels[kidney] = ABDOMEN_LABELS["kidney"]

    # Pancreas: tube of radius 7.5 mm around a quadratic Bezier curve in the plane z = 0.
    t = np.linspace(0.0, 1.0, 64)[:, None]
    p0, p1, p2 = np.array([0.25, -0.1]), np.array([-0.05, 0.25]), np.array([0.05, 0.6])
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2 + rng.uniform(-0.03, 0.03, 2)  # [64, (y, x)]
    plane = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2)  # [size^2, 1, (y, x)]
    in_plane = np.min(((plane - curve[None]) ** 2).sum(-1), axis=1).reshape(size, size)
    dist2 = in_plane + coords[0] ** 2  # [*S]
    pancreas = (dist2 <= (7.5 / 64.0) ** 2) & cavity
    speckles = rng.uniform(size=shape) < 0.08
    hu[pancreas] = np.where(speckles, -50.0, _level(rng, 100, 15))[pancreas]
    labels[pancreas] = ABDOMEN_LABELS["pancreas"]

    r = _ellipsoid_radius(flat, (0, 0.58, 0), (1, 0.14, 0.14))  # vertebral body
    hu[r <= 1] = np.where(r < 0.8, 250.0, 700.0)[r <= 1]
    labels[r <= 1] = ABDOMEN_LABELS["spine"]

    vessels &= labels == ABDOMEN_LABELS["liver"]
    hu += rng.normal(0.0, 10.0, shape).astype(np.float32)
    return hu, labels, vessels


def abdominal_phantoms(seed: int, n: int, size: int = 128, *, spatial_dims: int = 2) -> AbdomenPhantoms:
    """Draws `n` CT-like abdominal phantoms (module docstring); phantom i depends only on `(seed, i)`.

    Args:
        seed: non-negative int seed.
        n: number of phantoms.
        size: side in voxels (1 mm); anatomy scales with `size / 128`.
        spatial_dims: 2 (axial slices) or 3 (volumes).

    Returns:
        `AbdomenPhantoms(hu, labels, vessels)`, each `[n, *S, 1]`.

    Raises:
        ValueError: for a bad `n`, `size` or `spatial_dims`.

    Example:
        >>> abdominal_phantoms(0, 2, 32).hu.shape
        (2, 32, 32, 1)
    """
    if n <= 0 or size < 16:
        raise ValueError(f"n, size: expected n >= 1 and size >= 16 voxels, got n={n}, size={size}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims}")
    parts = [_one_phantom(np.random.default_rng([seed, i]), size, spatial_dims) for i in range(n)]
    hu, labels, vessels = (np.stack(p)[..., None] for p in zip(*parts))
    return AbdomenPhantoms(hu.astype(np.float32), labels.astype(np.uint8), vessels)


def insert_reference_tumours(
    seed: int,
    hu: np.ndarray,
    organ: np.ndarray,
    *,
    count: tuple[int, int] = (1, 3),
    diameter_mm: tuple[float, float] = (4.0, 40.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Inserts "real" tumours for evaluation, unlike all three generators (spec Sect. 3.2).

    Each tumour is an ellipsoid (semi-axes `R * U(0.85, 1.15)`, diameter `2R` log-uniform in
    `diameter_mm`) centred on a random organ voxel, darker by the smooth radial profile
    `Delta0 * sqrt(1 - r^2)`, `Delta0 ~ U(30, 70)` HU, plus Gaussian-filtered noise (sigma 1.5,
    8 HU); with probability 0.3 a one-voxel rim outside it is 15 HU brighter (capsule).

    Args:
        seed: int seed.
        hu: float `[H, W]` or `[D, H, W]` CT, HU (1 mm voxels).
        organ: bool organ mask, same shape; tumours are clipped to it.
        count: inclusive range of the number of tumours.
        diameter_mm: range of diameters.

    Returns:
        `(hu_out, tumour)`: float32 HU, changed only inside the organ; bool tumour mask.

    Raises:
        ValueError: if the shapes differ or the organ is empty.
    """
    organ = np.asarray(organ, bool)
    if organ.shape != np.shape(hu):
        raise ValueError(f"organ: expected the shape of hu {np.shape(hu)}, got {organ.shape}")
    if not organ.any():
        raise ValueError("organ: the mask is empty, nowhere to put a tumour")
    rng = np.random.default_rng(seed)
    out = np.asarray(hu, np.float32).copy()
    tumour = np.zeros(organ.shape, bool)
    grid = np.indices(organ.shape, dtype=np.float32)
    texture = 8.0 * _smooth_noise(rng, organ.shape, 1.5)
    candidates = np.argwhere(organ)
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        radius = 0.5 * np.exp(rng.uniform(np.log(diameter_mm[0]), np.log(diameter_mm[1])))
        centre = candidates[rng.integers(len(candidates))]
        axes = radius * rng.uniform(0.85, 1.15, organ.ndim)
        r = np.sqrt(sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(organ.ndim)))
        inside = (r <= 1) & organ
        out[inside] += (texture - rng.uniform(30.0, 70.0) * np.sqrt(np.clip(1 - r**2, 0, 1)))[inside]
        if rng.uniform() < 0.3:
            out[(r > 1) & (r <= 1 + 1 / radius) & organ & ~tumour] += 15.0
        tumour |= inside
    return out, tumour


def pydicom_ct_organ(spacing_mm: float | None = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """pydicom's CT slice (`CT_small.dcm`, paraspinal level) with a thresholded soft-tissue
    "organ": the largest connected region of 0-200 HU after a 1.5-pixel blur and a 5 x 5
    opening, holes filled (in practice the paraspinal muscles).

    Args:
        spacing_mm: resample to this isotropic pixel spacing (bilinear image, nearest mask);
            None keeps the stored 0.66 mm grid.

    Returns:
        `(hu, organ)`: float32 `[H, W]` HU and bool `[H, W]` (85 x 85 at 1 mm).

    Example:
        >>> pydicom_ct_organ()[0].shape
        (85, 85)
    """
    hu, meta = pydicom_samples()["ct"]
    smooth = ndi.gaussian_filter(hu, 1.5)
    soft = ndi.binary_opening((smooth > 0) & (smooth < 200), np.ones((5, 5), bool))
    regions, count = ndi.label(soft)
    if count == 0:
        raise ValueError(f"{meta['path']}: no soft-tissue region found in the CT sample")
    largest = 1 + int(np.argmax(ndi.sum(soft, regions, range(1, count + 1))))
    organ = ndi.binary_fill_holes(regions == largest)
    if spacing_mm is not None:
        zoom = np.asarray(meta["pixel_spacing_mm"]) / spacing_mm
        hu = ndi.zoom(hu, zoom, order=1)
        organ = ndi.zoom(organ.astype(np.uint8), zoom, order=0).astype(bool)
    return hu.astype(np.float32), organ
