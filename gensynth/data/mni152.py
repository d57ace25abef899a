"""The MNI152 template (T1, grey and white matter) bundled inside nilearn, offline.

nilearn ships the ICBM 2009a symmetric template at 1 mm as three uint8 NIfTI files
(`nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz`,
197 x 233 x 189 voxels, RAS+). They are read straight from the installed package with
nibabel, so nothing is downloaded and nilearn is not even imported.

Intensities: every kind is stored as uint8 v in [0, 255] (T1 rescaled; GM/WM are
probabilities times 255); we return v / 127.5 - 1 in [-1, 1], so background is -1
and a tissue probability p maps to 2p - 1.

References:
    Fonov et al., "Unbiased average age-appropriate atlases for pediatric studies",
    NeuroImage 54 (2011); Fonov et al., "Unbiased nonlinear average age-appropriate
    brain templates from birth to adulthood", NeuroImage 47 (2009).
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import nibabel as nib
import numpy as np

from gensynth.data._preprocess import AXIS_INDEX, display_slices, fit_to_size

KINDS = ("t1", "gm", "wm")
AXES = tuple(AXIS_INDEX)


def _template_path(kind: str) -> pathlib.Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nilearn is not installed; it ships the MNI152 template")
    root = pathlib.Path(spec.submodule_search_locations[0])
    path = root / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNI152 {kind} template not found in the nilearn package: {path}")
    return path


@functools.lru_cache(maxsize=None)
def _load_uint8(kind: str) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(_template_path(kind))
    data = np.asarray(image.dataobj, dtype=np.uint8)
    data.flags.writeable = False
    return data, image.affine.astype(np.float64)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")


@functools.lru_cache(maxsize=None)
def _volume(kind: str, spacing_mm: int) -> tuple[np.ndarray, np.ndarray]:
    data, affine = _load_uint8(kind)
    s = spacing_mm
    d, h, w = (n // s for n in data.shape)
    blocks = data[: d * s, : h * s, : w * s].reshape(d, s, h, s, w, s)
    volume = blocks.mean(axis=(1, 3, 5), dtype=np.float32) / 127.5 - 1.0  # [D, H, W]
    # Output voxel i covers input voxels s*i .. s*i + s - 1, so its centre is s*i + (s-1)/2.
    block = np.diag([s, s, s, 1.0])
    block[:3, 3] = (s - 1) / 2
    volume = volume[..., None]
    volume.flags.writeable = False
    return volume, affine @ block


def mni152_volume(kind: str = "t1", spacing_mm: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Loads one MNI152 map as a channels-last volume at 1, 2, 4, ... mm.

    Coarser grids average `spacing_mm`^3 blocks of 1 mm voxels (trailing voxels that do
    not fill a block are dropped), so the returned affine is exact.

    Args:
        kind: "t1" (T1-weighted), "gm" or "wm" (tissue probability maps).
        spacing_mm: isotropic voxel size in mm, a positive int.

    Returns:
        `(volume, affine)`: volume float32 `[D, H, W, 1]` in [-1, 1] (see module
        docstring), D/H/W the file's voxel axes i/j/k (RAS: left->right,
        posterior->anterior, inferior->superior); affine float64 `[4, 4]` mapping
        voxel indices (i, j, k, 1) to MNI mm, diagonal `spacing_mm`.

    Raises:
        ValueError: for an unknown `kind` or a non-positive `spacing_mm`.

    Example:
        >>> vol, affine = mni152_volume("t1", spacing_mm=2)
        >>> vol.shape, float(affine[0, 0])
        ((98, 116, 94, 1), 2.0)
    """
    _check_kind(kind)
    if not isinstance(spacing_mm, (int, np.integer)) or spacing_mm <= 0:
        raise ValueError(f"spacing_mm: expected a positive int (mm), got {spacing_mm!r}")
    volume, affine = _volume(kind, int(spacing_mm))
    return volume.copy(), affine.copy()


@functools.lru_cache(maxsize=8)
def _slices(
    size: int, kinds: tuple[str, ...], axis: str, min_foreground: float, spacing_mm: int
) -> np.ndarray:
    t1 = display_slices(_volume("t1", spacing_mm)[0][..., 0], AXIS_INDEX[axis])  # [N, rows, cols]
    keep = (t1 > -1.0).mean(axis=(1, 2)) >= min_foreground  # [N]
    if not keep.any():
        raise ValueError(f"min_foreground: no slice has a brain fraction >= {min_foreground}")
    channels = []
    for kind in kinds:
        stack = display_slices(_volume(kind, spacing_mm)[0], AXIS_INDEX[axis])[keep]  # [N, r, c, 1]
        channels.append(np.clip(fit_to_size(stack, size, fill=-1.0)[0], -1.0, 1.0))
    out = np.concatenate(channels, axis=-1)  # [N, size, size, len(kinds)]
    out.flags.writeable = False
    return out


def mni152_slices(
    size: int = 64,
    kind: str | tuple[str, ...] = "t1",
    axis: str = "axial",
    min_foreground: float = 0.15,
    spacing_mm: int = 1,
) -> np.ndarray:
    """Cuts the MNI152 template into a stack of square 2D slices.

    Each slice is oriented for display (axial: nose up, patient right on image
    right), zero-padded (to -1) to a square to keep the aspect ratio, then resized
    with anti-aliased bilinear interpolation to `size x size`. Slices whose brain
    (T1 > background) covers less than `min_foreground` of the unpadded slice are
    skipped, the same slices for every kind, so channels stay aligned.

    Args:
        size: output side in pixels (e.g. 64, 128, 256).
        kind: "t1", "gm", "wm", or a tuple of them stacked as channels.
        axis: "axial", "coronal" or "sagittal".
        min_foreground: minimum brain fraction in [0, 1] for a slice to be kept.
        spacing_mm: voxel size in mm of the volume the slices are cut from (see
            `mni152_volume`); 2 halves the slice count.

    Returns:
        float32 `[N, size, size, C]` in [-1, 1], C = number of kinds, slices ordered
        along the axis (axial: inferior to superior).

    Raises:
        ValueError: for a bad `size`, `kind`, `axis`, `min_foreground` or `spacing_mm`.

    Example:
        >>> mni152_slices(64).shape
        (113, 64, 64, 1)
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not kinds:
        raise ValueError("kind: expected at least one of ('t1', 'gm', 'wm'), got ()")
    for k in kinds:
        _check_kind(k)
    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size: expected a positive int (pixels), got {size!r}")
    if axis not in AXES:
        raise ValueError(f"axis: expected one of {AXES}, got {axis!r}")
    if not 0.0 <= min_foreground <= 1.0:
        raise ValueError(f"min_foreground: expected a fraction in [0, 1], got {min_foreground}")
    if not isinstance(spacing_mm, (int, np.integer)) or spacing_mm <= 0:
        raise ValueError(f"spacing_mm: expected a positive int (mm), got {spacing_mm!r}")
    return _slices(int(size), kinds, axis, float(min_foreground), int(spacing_mm)).copy()
