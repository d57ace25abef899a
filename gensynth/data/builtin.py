"""The built-in image sets by name, for command-line `data=` options (no downloads).

Names:
    "mni152": axial T1 slices of the MNI152 template (`mni152_slices`).
    "mni152_tissue": the same slices with channels (T1, GM, WM).
    "phantoms": `n` seeded random ellipse phantoms (`random_ellipse_phantoms`).
    "shepp_logan": the one Shepp-Logan phantom.
    "pydicom_ct": pydicom's CT slice, HU window [-1000, 1000], padded and resized.
    "mni152_phantoms": the "mni152" slices followed by `n` phantoms (one prior for MRI- and
        CT-like images, as in the chapter 7 experiments).

`holdout_indices` names the images an evaluation keeps out of training.
"""

from __future__ import annotations

import numpy as np

from gensynth.data._preprocess import fit_to_size, scale_to_unit_range
from gensynth.data.dicom import pydicom_samples
from gensynth.data.mni152 import mni152_slices
from gensynth.data.phantoms import random_ellipse_phantoms, shepp_logan

BUILTIN_DATASETS = ("mni152", "mni152_tissue", "phantoms", "shepp_logan", "pydicom_ct", "mni152_phantoms")


def builtin_dataset(name: str, size: int, *, n: int = 1024, seed: int = 0) -> np.ndarray:
    """Returns a built-in image set as one array.

    Args:
        name: one of `BUILTIN_DATASETS` (see module docstring).
        size: image side in pixels.
        n: number of phantoms for "phantoms" and "mni152_phantoms" (other sets have a fixed count).
        seed: seed of the phantoms.

    Returns:
        float32 `[N, size, size, C]` in [-1, 1]; C = 3 for "mni152_tissue", else 1.

    Raises:
        ValueError: for an unknown `name`.

    Example:
        >>> builtin_dataset("phantoms", 32, n=8).shape
        (8, 32, 32, 1)
    """
    if name == "mni152":
        return mni152_slices(size)
    if name == "mni152_tissue":
        return mni152_slices(size, kind=("t1", "gm", "wm"))
    if name == "phantoms":
        return random_ellipse_phantoms(seed, n, size)
    if name == "mni152_phantoms":
        return np.concatenate([mni152_slices(size), random_ellipse_phantoms(seed, n, size)])
    if name == "shepp_logan":
        return shepp_logan(size)[None]
    if name == "pydicom_ct":
        hu = pydicom_samples()["ct"][0]
        image = scale_to_unit_range(hu, (-1000.0, 1000.0))[None, ..., None]
        return fit_to_size(image, size, fill=-1.0)[0]
    raise ValueError(f"name: expected one of {BUILTIN_DATASETS}, got {name!r}")


def holdout_indices(num_images: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits image indices into ``(train, held_out)``: image ``i`` is held out when
    ``i % every == every // 2`` (spread evenly, away from the first and last slice of a stack).

    Args:
        num_images: number of images N.
        every: hold out one image in ``every``; 0 holds none out.

    Returns:
        int64 index arrays ``(train, held_out)``, ascending, together ``0..N-1``.

    Raises:
        ValueError: for a negative ``every`` or ``every == 1`` (nothing left to train on).

    Example:
        >>> [a.tolist() for a in holdout_indices(8, 3)]
        [[0, 2, 3, 5, 6], [1, 4, 7]]
    """
    if every < 0 or every == 1:
        raise ValueError(f"every: expected 0 or an integer >= 2, got {every}")
    index = np.arange(num_images)
    held = index % every == every // 2 if every else np.zeros(num_images, bool)
    return index[~held], index[held]
