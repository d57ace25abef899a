"""The MNI152 template as tissue maps with a ventricle label: the anatomy of the brain population.

From nilearn's bundled 1 mm ICBM 2009a files (see `gensynth.data.mni152`), following spec ch16
Sect. 3.2: `brain = T1 > 0`, `pGM = GM / 255`, `pWM = WM / 255` (both inside `brain`) and
`pCSF = clip(brain - pGM - pWM, 0, 1)`. The template has no ventricle map; we derive one:

- the ventricles are the largest 6-connected component of `{pCSF > 0.5}` whose bounding box lies
  inside the central box `VENTRICLE_BOX_MM` (MNI x, y, z ranges). On the template this is the two
  lateral ventricles with the third ventricle (about 18 mL); the temporal horns, detached at 1 mm,
  and the fourth ventricle stay in the extra-ventricular CSF class;
- the ventricle channel is `pCSF` within 2 mm of that component (its partial-volume wall);
  the CSF channel keeps the rest of `pCSF`;
- `ventricle_distance_mm` is the distance from each template voxel to the nearest voxel that holds
  part of the component (0 on the ventricles): the fall-off of the ventricle warps uses it.

Coarser templates average `spacing_mm`^3 blocks of the 1 mm maps, so partial volumes stay exact.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage as ndi
from flax import struct

from gensynth.data.mni152 import _load_uint8

CLASSES = ("background", "csf", "gm", "wm", "ventricles")  # label index = position
VENTRICLE_BOX_MM = ((-40.0, 40.0), (-65.0, 35.0), (-10.0, 35.0))  # MNI (x, y, z) ranges
VENTRICLE_WALL_MM = 2.0  # the ventricle label takes the CSF within this distance of the component


@struct.dataclass
class BrainTemplate:
    """Template tissue maps on a grid aligned with MNI space (voxel axes = x, y, z; RAS).

    Attributes:
        maps: float32 `[Dt, Ht, Wt, 4]` probabilities of (csf, gm, wm, ventricles) = `CLASSES[1:]`;
            background = 1 - their sum (>= 0).
        ventricle_distance_mm: float32 `[Dt, Ht, Wt]` >= 0, see module docstring.
        origin_mm: float32 `[3]` MNI position (mm) of voxel (0, 0, 0).
        ventricle_centre_mm: float32 `[3]` centroid of the ventricles (mm).
        ventricle_radius_mm: float32 `[]` radius of the sphere with the ventricles' volume (mm).
        brain_centre_mm: float32 `[3]` centre of the brain's bounding box (mm).
        spacing_mm: isotropic voxel size (mm), static.
    """

    maps: jax.Array  # [Dt, Ht, Wt, 4] float32
    ventricle_distance_mm: jax.Array  # [Dt, Ht, Wt] float32
    origin_mm: jax.Array  # [3] float32
    ventricle_centre_mm: jax.Array  # [3] float32
    ventricle_radius_mm: jax.Array  # [] float32
    brain_centre_mm: jax.Array  # [3] float32
    spacing_mm: int = struct.field(pytree_node=False)


def _ventricle_component(pcsf: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Boolean 1 mm mask of the ventricles (see module docstring)."""
    components, count = ndi.label(pcsf > 0.5)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    boxes = ndi.find_objects(components)
    best, best_size = 0, 0
    for index, box in enumerate(boxes, start=1):
        lo = affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
        hi = affine[:3, :3] @ np.array([s.stop - 1 for s in box]) + affine[:3, 3]
        inside = all(b0 <= a and b <= b1 for a, b, (b0, b1) in zip(lo, hi, VENTRICLE_BOX_MM))
        if inside and sizes[index] > best_size:
            best, best_size = index, sizes[index]
    if best == 0:
        raise ValueError("MNI152 template: no CSF component inside VENTRICLE_BOX_MM")
    return components == best


def _block_mean(volume: np.ndarray, s: int) -> np.ndarray:
    d, h, w = (n // s for n in volume.shape[:3])
    blocks = volume[: d * s, : h * s, : w * s].reshape(d, s, h, s, w, s, *volume.shape[3:])
    return blocks.mean(axis=(1, 3, 5), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def _template_arrays(spacing_mm: int) -> dict[str, np.ndarray]:
    t1, affine = _load_uint8("t1")
    brain = (t1 > 0).astype(np.float32)
    pgm = _load_uint8("gm")[0].astype(np.float32) / 255.0 * brain
    pwm = _load_uint8("wm")[0].astype(np.float32) / 255.0 * brain
    excess = np.maximum(pgm + pwm, 1.0)  # the files keep GM + WM <= 1; guard anyway
    pgm, pwm = pgm / excess, pwm / excess
    pcsf = np.clip(brain - pgm - pwm, 0.0, 1.0)
    ventricles = _ventricle_component(pcsf, affine)
    # The ventricle wall: within 2 mm of the component (distance computed in a box around it).
    idx = np.argwhere(ventricles)
    lo = np.maximum(idx.min(0) - 4, 0)
    hi = np.minimum(idx.max(0) + 5, ventricles.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    wall = np.zeros_like(ventricles)
    wall[crop] = ndi.distance_transform_edt(~ventricles[crop]) <= VENTRICLE_WALL_MM
    maps = np.stack([pcsf * ~wall, pgm, pwm, pcsf * wall], axis=-1)  # [X, Y, Z, 4] at 1 mm
    centre = affine[:3, :3] @ idx.mean(0) + affine[:3, 3]
    radius = (3.0 * ventricles.sum() / (4.0 * np.pi)) ** (1.0 / 3.0)
    inside = np.argwhere(brain > 0)
    brain_centre = affine[:3, :3] @ ((inside.min(0) + inside.max(0)) / 2.0) + affine[:3, 3]
    s = spacing_mm
    return {
        "maps": _block_mean(maps, s),
        "ventricle_distance_mm": ndi.distance_transform_edt(_block_mean(ventricles, s) == 0, sampling=s)
        .astype(np.float32),
        "origin_mm": (affine[:3, 3] + (s - 1) / 2.0).astype(np.float32),
        "ventricle_centre_mm": centre.astype(np.float32),
        "ventricle_radius_mm": np.float32(radius),
        "brain_centre_mm": brain_centre.astype(np.float32),
    }


def brain_template(spacing_mm: int = 2) -> BrainTemplate:
    """Loads the MNI152 tissue maps with the derived ventricle label (host; cached per spacing).

    Args:
        spacing_mm: isotropic voxel size of the template in mm, a positive int (1 mm voxels are
            block-averaged).

    Returns:
        `BrainTemplate` on the default device (see its attributes).

    Raises:
        ValueError: for a non-positive or non-integer `spacing_mm`.

    Example:
        >>> t = brain_template(4)
        >>> t.maps.shape, round(float(t.maps[..., 3].sum()) * 64 / 1000, 1)  # ventricle mL
        ((49, 58, 47, 4), 17.4)
    """
    if not isinstance(spacing_mm, (int, np.integer)) or spacing_mm <= 0:
        raise ValueError(f"spacing_mm: expected a positive int (mm), got {spacing_mm!r}")
    arrays = _template_arrays(int(spacing_mm))
    return BrainTemplate(**{k: jnp.asarray(v) for k, v in arrays.items()}, spacing_mm=int(spacing_mm))
