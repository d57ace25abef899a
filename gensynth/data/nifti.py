"""NIfTI files through nibabel: checked loading, atomic saving, and a folder source.

Affines follow NIfTI: a `[4, 4]` map from voxel indices (i, j, k, 1) to RAS+ world
coordinates in mm. nibabel stores the affine in the header's float32 sform, so a
round trip is exact for float32-representable affines.
"""

from __future__ import annotations

import collections
import os
import pathlib
import zlib

import nibabel as nib
import numpy as np

from gensynth.data._preprocess import display_slices, fit_to_size, scale_to_unit_range
from gensynth.runs import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_READ_ERRORS = (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError)


def _open(path: pathlib.Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    try:
        image = nib.load(path)
    except _READ_ERRORS as err:
        raise ValueError(f"{path}: not a readable NIfTI image ({err})") from err
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{path}: expected a NIfTI image, got {type(image).__name__}")
    return image


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a NIfTI file as float32 voxels and its affine.

    Args:
        path: a `.nii` or `.nii.gz` file.

    Returns:
        `(array, affine)`: array float32 in the file's voxel order (i, j, k[, ...]) with
        scl_slope/scl_inter applied, in the file's units; affine float64 `[4, 4]`
        (voxel index to RAS+ mm).

    Raises:
        FileNotFoundError: if `path` does not exist (message names it).
        ValueError: if `path` is corrupt, truncated or not a NIfTI image (names it).

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/v.nii.gz"
        >>> save_nifti(path, np.zeros((4, 5, 6), np.float32), np.eye(4))
        >>> array, affine = load_nifti(path)
        >>> array.shape, affine.shape
        ((4, 5, 6), (4, 4))
    """
    path = pathlib.Path(path)
    image = _open(path)
    try:
        array = np.asarray(image.get_fdata(dtype=np.float32))
    except _READ_ERRORS as err:
        raise ValueError(f"{path}: NIfTI voxel data is unreadable ({err})") from err
    return array, image.affine.astype(np.float64)


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Writes a NIfTI file atomically (temporary file in the same folder, then rename).

    Args:
        path: destination ending in `.nii` or `.nii.gz` (gzip chosen by suffix).
        array: voxels `[X, Y, Z]` or `[X, Y, Z, ...]`, stored in their own dtype.
        affine: `[4, 4]` voxel index to RAS+ mm (stored as float32 sform and qform).

    Raises:
        ValueError: for a bad suffix, a non-3D+ array or a non-`[4, 4]` affine.
    """
    path = pathlib.Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"path: expected a name ending in {NIFTI_SUFFIXES}, got {path}")
    array = np.asarray(array)
    affine = np.asarray(affine, dtype=np.float64)
    if array.ndim < 3:
        raise ValueError(f"array: expected at least 3 dims [X, Y, Z, ...], got {array.shape}")
    if affine.shape != (4, 4):
        raise ValueError(f"affine: expected shape (4, 4), got {affine.shape}")
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(array, affine), tmp)


def _list_nifti_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Sorted `.nii`/`.nii.gz` files directly in `folder`, or `[folder]` if it is one such file.

    Raises:
        FileNotFoundError: if `folder` is neither a directory nor a NIfTI file.
        ValueError: if it holds no NIfTI file.
    """
    folder = pathlib.Path(folder)
    if folder.is_file() and folder.name.endswith(NIFTI_SUFFIXES):
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(f"NIfTI folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    if not files:
        raise ValueError(f"{folder}: no {NIFTI_SUFFIXES} files in this folder")
    return files


class NiftiFolderSource:
    """Grain random-access source over the NIfTI volumes of a folder, or their slices.

    Each volume is reoriented to the closest RAS+ axes (affine updated), optionally
    given a trailing channel axis, and scaled to [-1, 1] per volume (see
    `intensity_range`). With `size`, volumes are padded to a centred cube and resized
    to `size^3` (slices: square, `size^2`), and the affine follows the resampling.

    Records:
        mode="volumes": `{"image": float32 [X, Y, Z, C], "affine": float64 [4, 4]}`.
        mode="slices": `{"image": float32 [H, W, C], "affine": float64 [4, 4] (of the
        volume), "slice": int32}`, one per (file, slice) pair, slices cut along
        `axis` of the RAS volume and oriented for display (axis 2: axial, nose up).

    Args:
        folder: directory of `.nii`/`.nii.gz` files (3D `[X, Y, Z]` or 4D with a
            trailing channel axis), or one such file.
        mode: "volumes" or "slices".
        axis: RAS axis the slices are cut along: 0 sagittal, 1 coronal, 2 axial.
        size: output side in voxels, or None to keep the file's grid.
        intensity_range: `(lo, hi)` in file units clipped to [-1, 1] (e.g. HU
            window); None clips at each volume's 0.5th/99.5th percentiles.

    Raises:
        FileNotFoundError: if `folder` does not exist.
        ValueError: for bad arguments, no NIfTI files, or an unreadable or
            non-3D/4D file (the message names the file).
    """

    _CACHE_VOLUMES = 2

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        mode: str = "slices",
        axis: int = 2,
        size: int | None = None,
        intensity_range: tuple[float, float] | None = None,
    ):
        if mode not in ("volumes", "slices"):
            raise ValueError(f"mode: expected 'volumes' or 'slices', got {mode!r}")
        if axis not in (0, 1, 2):
            raise ValueError(f"axis: expected 0, 1 or 2 (RAS axis), got {axis!r}")
        if size is not None and size <= 0:
            raise ValueError(f"size: expected a positive int or None, got {size!r}")
        self._files = _list_nifti_files(folder)
        self._mode, self._axis, self._size = mode, axis, size
        self._intensity_range = intensity_range
        self._index = []  # (file index, slice index) per record
        for f, path in enumerate(self._files):
            image = _open(path)
            if len(image.shape) not in (3, 4):
                raise ValueError(f"{path}: expected a 3D or 4D NIfTI, got shape {image.shape}")
            world_axes = nib.orientations.io_orientation(image.affine)[:, 0]  # per voxel axis
            n = image.shape[int(np.flatnonzero(world_axes == axis)[0])] if mode == "slices" else 1
            self._index.extend((f, s) for s in range(n))
        self._cache = collections.OrderedDict()

    def _volume(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        if f not in self._cache:
            path = self._files[f]
            image = _open(path)
            try:
                image = nib.as_closest_canonical(image)
                data = np.asarray(image.get_fdata(dtype=np.float32))
            except _READ_ERRORS as err:
                raise ValueError(f"{path}: NIfTI voxel data is unreadable ({err})") from err
            data = data if data.ndim == 4 else data[..., None]  # [X, Y, Z, C]
            self._cache[f] = (scale_to_unit_range(data, self._intensity_range), image.affine)
            if len(self._cache) > self._CACHE_VOLUMES:
                self._cache.popitem(last=False)
        return self._cache[f]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        f, s = self._index[index]
        volume, affine = self._volume(f)
        if self._mode == "volumes":
            if self._size is not None:
                resized, index_map = fit_to_size(volume[None], self._size, fill=-1.0)
                volume, affine = resized[0], affine @ index_map
            return {"image": volume, "affine": affine}
        image = display_slices(volume, self._axis)[s]  # [H, W, C]
        if self._size is not None:
            image = fit_to_size(image[None], self._size, fill=-1.0)[0][0]
        return {"image": np.ascontiguousarray(image), "affine": affine, "slice": np.int32(s)}

    def __repr__(self) -> str:
        return (
            f"NiftiFolderSource({len(self._files)} files, mode={self._mode!r}, axis={self._axis}, "
            f"size={self._size}, intensity_range={self._intensity_range})"
        )
