"""Private host-side preprocessing shared by the file sources and the built-in sets.

Intensity scaling to [-1, 1], display orientation of RAS volumes, and square/cube
padding plus resizing with the index map that keeps affines exact.
"""

from __future__ import annotations

import numpy as np
import skimage.transform

# Axis of a RAS volume [X, Y, Z] that each named slice direction cuts.
AXIS_INDEX = {"sagittal": 0, "coronal": 1, "axial": 2}


def scale_to_unit_range(
    volume: np.ndarray, intensity_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Clips to `[lo, hi]` and maps linearly to [-1, 1] (float32).

    `intensity_range=None` takes `lo, hi` as the volume's 0.5th and 99.5th
    percentiles; a constant volume maps to -1.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if intensity_range is None:
        lo, hi = np.percentile(volume, (0.5, 99.5))
    else:
        lo, hi = intensity_range
    if hi <= lo:
        return np.full_like(volume, -1.0)
    return (np.clip((volume - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def display_slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """Cuts a RAS volume `[X, Y, Z, ...]` into display-oriented slices `[N, rows, cols, ...]`.

    axis 2 (axial): nose up, patient right on image right (neurological);
    axis 1 (coronal): head up, right on right; axis 0 (sagittal): head up, nose right.
    """
    order = {2: (2, 1, 0), 1: (1, 2, 0), 0: (0, 2, 1)}[axis]
    rest = tuple(range(3, volume.ndim))
    return np.transpose(volume, order + rest)[:, ::-1]


def fit_to_size(array: np.ndarray, size: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Pads the spatial axes to a centred square/cube, then resizes them to `size`.

    Args:
        array: `[N, S_1, ..., S_k, C]`, k spatial axes between a leading stack axis
            and a trailing channel axis.
        size: output side length in voxels.
        fill: value of the padding (the background, usually -1).

    Returns:
        `(resized, index_map)`: resized float32 `[N, size, ..., size, C]` (anti-aliased
        linear interpolation, pixel-centre aligned); index_map float64 `[k+1, k+1]`
        mapping output voxel indices to input voxel indices (homogeneous), so a
        world affine of the input becomes `affine @ index_map`.
    """
    spatial = array.shape[1:-1]
    side = max(spatial)
    before = [(side - s) // 2 for s in spatial]
    pads = [(0, 0)] + [(b, side - s - b) for b, s in zip(before, spatial)] + [(0, 0)]
    padded = np.pad(array, pads, constant_values=fill)
    out_shape = (array.shape[0],) + (size,) * len(spatial) + (array.shape[-1],)
    resized = skimage.transform.resize(
        padded, out_shape, order=1, anti_aliasing=size < side, preserve_range=True
    ).astype(np.float32)
    # Output index o samples input index (o + 0.5) * side / size - 0.5 - before.
    scale = side / size
    index_map = np.diag([scale] * len(spatial) + [1.0])
    index_map[:-1, -1] = 0.5 * scale - 0.5 - np.asarray(before, dtype=np.float64)
    return resized, index_map
