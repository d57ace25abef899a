"""DICOM through pydicom: the bundled CT/MR samples, single-series folders, a slice source.

Pixel values go through the modality LUT (RescaleSlope/RescaleIntercept), so CT is in
Hounsfield units (HU). Affines are NIfTI-style RAS+ (DICOM's LPS patient axes with x and
y negated) and map array indices (d, h, w) = (slice, row, column) to mm, so a loaded
series can be written with `save_nifti` unchanged.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pydicom
import pydicom.data
import pydicom.errors
import pydicom.pixels

from gensynth.data._preprocess import fit_to_size, scale_to_unit_range

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _read(path: pathlib.Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path}: not a readable DICOM file ({err})") from err
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file has no pixel data")
    return ds


def _pixels(ds: pydicom.Dataset, path: pathlib.Path) -> np.ndarray:
    """Single-frame pixels `[H, W]` float32 after the modality LUT (HU for CT)."""
    try:
        raw = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError) as err:
        raise ValueError(f"{path}: DICOM pixel data is unreadable ({err})") from err
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected a single-frame 2D image, got pixels {raw.shape}")
    return np.asarray(pydicom.pixels.apply_modality_lut(raw, ds), dtype=np.float32)


def pydicom_samples() -> dict[str, tuple[np.ndarray, dict]]:
    """The CT and MR slices bundled with pydicom (no download).

    Returns:
        `{"ct": (image, meta), "mr": (image, meta)}`: image float32 `[H, W]` (CT
        128 x 128 in HU, MR 64 x 64 in scanner units); meta holds "modality", "units",
        "pixel_spacing_mm" (row, column), "slice_thickness_mm" and "path".

    Example:
        >>> pydicom_samples()["ct"][0].shape
        (128, 128)
    """
    samples = {}
    for name, filename in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        path = pathlib.Path(pydicom.data.get_testdata_file(filename))
        ds = _read(path)
        meta = {
            "modality": str(ds.Modality),
            "units": "HU" if ds.Modality == "CT" else "a.u.",
            "pixel_spacing_mm": tuple(float(v) for v in ds.PixelSpacing),
            "slice_thickness_mm": float(ds.SliceThickness),
            "path": str(path),
        }
        samples[name] = (_pixels(ds, path), meta)
    return samples


def _series_files(folder: pathlib.Path) -> list[pathlib.Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder}: no DICOM files in this folder")
    return files


def load_dicom_series(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads one DICOM series (one file per slice) into a volume sorted along its normal.

    Every non-hidden file in `folder` must be a slice of the same series, with the same
    size and orientation, evenly spaced along the slice normal.

    Args:
        folder: directory holding the series' files (any names, any order).

    Returns:
        `(volume, affine)`: volume float32 `[D, H, W]` (slices ordered by position along
        row x column direction; H rows, W columns as stored; HU for CT); affine float64
        `[4, 4]` mapping (d, h, w, 1) to RAS+ mm from ImagePositionPatient,
        ImageOrientationPatient and PixelSpacing.

    Raises:
        FileNotFoundError: if `folder` does not exist.
        ValueError: if it is empty, a file is not DICOM or is corrupt (named), or the
            slices disagree in series, shape or orientation, or repeat or are unevenly
            spaced.
    """
    folder = pathlib.Path(folder)
    slices = []
    for path in _series_files(folder):
        ds = _read(path)
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if keyword not in ds:
                raise ValueError(f"{path}: DICOM slice lacks {keyword}, cannot place it")
        slices.append((path, ds, _pixels(ds, path)))
    path0, ds0, pixels0 = slices[0]
    orientation = np.asarray(ds0.ImageOrientationPatient, dtype=np.float64)
    for path, ds, pixels in slices[1:]:
        if ds.get("SeriesInstanceUID") != ds0.get("SeriesInstanceUID"):
            raise ValueError(f"{path}: belongs to another series than {path0.name}; one series per folder")
        if pixels.shape != pixels0.shape:
            raise ValueError(f"{path}: pixel shape {pixels.shape} differs from {pixels0.shape} of {path0.name}")
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=np.float64), orientation, atol=1e-4):
            raise ValueError(f"{path}: ImageOrientationPatient differs from {path0.name}")
    row_dir, col_dir = orientation[:3], orientation[3:]  # along a row (w), down a column (h)
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([ds.ImagePositionPatient for _, ds, _ in slices], dtype=np.float64)
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]  # [D, 3] LPS mm
    if len(slices) > 1:
        gaps = np.diff(positions @ normal)
        if np.any(gaps < 1e-3):
            raise ValueError(f"{folder}: two slices share a position along the slice normal")
        if np.ptp(gaps) > 1e-2 * gaps.mean():
            raise ValueError(f"{folder}: uneven slice spacing {gaps.min():.3g}..{gaps.max():.3g} mm")
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
    else:
        step = normal * float(ds0.get("SpacingBetweenSlices", ds0.get("SliceThickness", 1.0)))
    row_spacing, col_spacing = (float(v) for v in ds0.PixelSpacing)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = step
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = row_dir * col_spacing
    affine_lps[:3, 3] = positions[0]
    volume = np.stack([slices[i][2] for i in order])  # [D, H, W]
    return volume, _LPS_TO_RAS @ affine_lps


class DicomSeriesSource:
    """Grain random-access source over the slices of one DICOM series.

    The series is read once (`load_dicom_series`), scaled to [-1, 1] (see
    `intensity_range`), and optionally padded to a square and resized to `size^2`.

    Records: `{"image": float32 [H, W, 1], "affine": float64 [4, 4] (of the volume),
    "slice": int32}`, slices as stored (rows down, columns across).

    Args:
        folder: directory holding one series.
        size: output side in pixels, or None to keep the stored grid.
        intensity_range: `(lo, hi)` in file units mapped to [-1, 1] after clipping,
            e.g. `(-1000, 1000)` HU for CT; None clips at the series' 0.5th/99.5th
            percentiles.

    Raises:
        ValueError, FileNotFoundError: as `load_dicom_series`, or a bad `size`.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        size: int | None = None,
        intensity_range: tuple[float, float] | None = None,
    ):
        if size is not None and size <= 0:
            raise ValueError(f"size: expected a positive int or None, got {size!r}")
        volume, self._affine = load_dicom_series(folder)
        images = scale_to_unit_range(volume, intensity_range)[..., None]  # [D, H, W, 1]
        if size is not None:
            images = fit_to_size(images, size, fill=-1.0)[0]
        self._images = images
        self._folder = pathlib.Path(folder)

    def __len__(self) -> int:
        return self._images.shape[0]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self._images[index], "affine": self._affine, "slice": np.int32(index)}

    def __repr__(self) -> str:
        return f"DicomSeriesSource({self._folder}, slices={self._images.shape})"
