"""Synthetic multiple-sclerosis-like white-matter lesions on tissue maps, 2D or 3D, and lesion loads.

Spec ch01 Sect. 3.2 (the brainSPADE substitute cohort; the GAN chapters 9 and 17 reuse it): each
subject gets `count ~ U{0..25}` ellipsoids with longest semi-axis `U(1.5, 6)` mm, random
orientation and elongation, centred on white-matter voxels (WM probability >= 0.5) of one of three
sites, drawn with `site_probs`:

- periventricular: WM where the ventricle map blurred with sigma `periventricular_mm` is >= 0.1
  (within about 1.3 sigma of the ventricles);
- juxtacortical: other WM where the GM map blurred with sigma `juxtacortical_mm` is >= 0.2 (next
  to cortex, and next to deep GM, which the tissue maps do not tell apart);
- deep WM: the rest.

A site without voxels (a 2D slice above the ventricles) falls back to any WM voxel. Each lesion is a
soft ellipsoid, `sigmoid((1 - rho) a / w)` with rho the ellipsoidal radius, a the geometric mean
semi-axis and w = max(`edge_mm`, half the largest voxel side), scaled down where needed so its mass
does not exceed the ellipsoid's volume (lesions smaller than a voxel become partial volumes). The
union `l = 1 - prod_i (1 - l_i)` replaces white matter: lesion = `l p_WM`, WM becomes `(1 - l) p_WM`,
so the lesion never leaves the WM and the maps still sum to 1. Everything is jittable and vmappable.

`lesion_load` measures a map in mL and `lesion_conditioning` turns loads into the normalised
conditioning vector of brainSPADE (spec ch01 Eq. 1.3).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.data._smooth import gaussian_filter

SITES = ("periventricular", "juxtacortical", "deep")


@dataclasses.dataclass(frozen=True)
class LesionConfig:
    """Lesion count, size and placement (defaults: spec ch01 Sect. 3.2, sites [default])."""

    count: tuple[int, int] = (0, 25)  # number of lesions ~ U{lo, ..., hi}
    radius_mm: tuple[float, float] = (1.5, 6.0)  # longest semi-axis ~ U(lo, hi), mm
    elongation: tuple[float, float] = (0.5, 1.0)  # each other semi-axis = longest * U(lo, hi)
    site_probs: tuple[float, float, float] = (0.6, 0.25, 0.15)  # periventricular, juxtacortical, deep WM
    periventricular_mm: float = 5.0  # blur sigma of the ventricle map that defines the periventricular WM, mm
    juxtacortical_mm: float = 3.0  # blur sigma of the GM map that defines the juxtacortical WM, mm
    edge_mm: float = 1.0  # width of the soft boundary (at least half the largest voxel side), mm


def _check(config: LesionConfig) -> None:
    lo, hi = config.count
    if not 0 <= lo <= hi:
        raise ValueError(f"config.count: expected (lo, hi) with 0 <= lo <= hi, got {config.count}")
    if not 0 < config.radius_mm[0] <= config.radius_mm[1]:
        raise ValueError(f"config.radius_mm: expected (lo, hi) with 0 < lo <= hi, got {config.radius_mm}")
    if not 0 < config.elongation[0] <= config.elongation[1] <= 1:
        raise ValueError(f"config.elongation: expected 0 < lo <= hi <= 1, got {config.elongation}")
    if len(config.site_probs) != 3 or min(config.site_probs) < 0 or sum(config.site_probs) <= 0:
        raise ValueError(f"config.site_probs: expected three non-negative weights, got {config.site_probs}")


def _site_weights(probs: jax.Array, spacing: np.ndarray, config: LesionConfig, channels: tuple[int, int, int]):
    """Sampling weights `[3, P]` of the voxels for each site (flattened spatial index)."""
    wm_channel, gm_channel, ventricle_channel = channels
    k = len(spacing)
    axes = tuple(range(k))
    wm = probs[..., wm_channel]
    core = (wm >= 0.5).astype(jnp.float32)
    near_v = gaussian_filter(probs[..., ventricle_channel], config.periventricular_mm / spacing, axes) >= 0.1
    near_c = gaussian_filter(probs[..., gm_channel], config.juxtacortical_mm / spacing, axes) >= 0.2
    sites = jnp.stack([core * near_v, core * ~near_v * near_c, core * ~near_v * ~near_c])
    # Fall back to any WM voxel (then anywhere) when a site is empty.
    return (sites + 1e-6 * wm + 1e-12).reshape(3, -1)


def _site_cdfs(weights: jax.Array) -> jax.Array:
    """Normalised cumulative weights `[3, P]` (inverse-CDF sampling needs one uniform per draw)."""
    cdf = jnp.cumsum(weights, axis=1)
    return cdf / cdf[:, -1:]


def _rotations(u: jax.Array) -> jax.Array:
    """Uniformly random rotations `[n, k, k]` from uniforms `[n, 1]` (2D angle) or `[n, 3]` (Shoemake's quaternion)."""
    if u.shape[1] == 1:
        c, s = jnp.cos(2 * jnp.pi * u[:, 0]), jnp.sin(2 * jnp.pi * u[:, 0])
        return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)
    a, b = jnp.sqrt(1.0 - u[:, 0]), jnp.sqrt(u[:, 0])
    w, x, y, z = b * jnp.cos(2 * jnp.pi * u[:, 2]), a * jnp.sin(2 * jnp.pi * u[:, 1]), \
        a * jnp.cos(2 * jnp.pi * u[:, 1]), b * jnp.sin(2 * jnp.pi * u[:, 2])
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


def _draw_lesions(key: jax.Array, cdfs: jax.Array, n: int, shape: tuple[int, ...], spacing: np.ndarray,
                  config: LesionConfig):
    """Centres `[n, k]` (mm), rotations `[n, k, k]` and semi-axes `[n, k]` (mm) of n lesions (one uniform draw)."""
    k = len(shape)
    n_rot = 1 if k == 2 else 3
    width = 2 + k + 1 + (k - 1) + n_rot
    u = jax.random.uniform(key, (n * width,)).reshape(n, width)  # flat draws compile much faster under vmap
    u_site, u_voxel, u_jitter, u_radius, u_elong, u_rot = jnp.split(u, np.cumsum([1, 1, k, 1, k - 1]), axis=1)
    site_cdf = np.cumsum(config.site_probs) / np.sum(config.site_probs)
    site = jnp.minimum(jnp.sum(u_site >= site_cdf[:-1], axis=1), 2)  # [n]
    voxel = jax.vmap(jnp.searchsorted)(cdfs[site], u_voxel[:, 0])
    index = jnp.stack(jnp.unravel_index(jnp.minimum(voxel, cdfs.shape[1] - 1), shape), -1).astype(jnp.float32)
    centres = (index + u_jitter - 0.5) * spacing
    lo, hi = config.radius_mm
    radius = lo + (hi - lo) * u_radius
    e_lo, e_hi = config.elongation
    semi_axes = radius * jnp.concatenate([jnp.ones((n, 1)), e_lo + (e_hi - e_lo) * u_elong], axis=1)
    return centres, _rotations(u_rot), semi_axes


def add_ms_lesions(
    key: jax.Array,
    probs: jax.Array,
    spacing_mm: Sequence[float],
    config: LesionConfig = LesionConfig(),
    *,
    wm_channel: int = 3,
    gm_channel: int = 2,
    ventricle_channel: int = 4,
) -> tuple[jax.Array, jax.Array]:
    """Places MS-like lesions in the white matter of one subject's tissue maps (see module docstring).

    Args:
        key: typed PRNG key.
        probs: `[*spatial, C]` tissue probabilities (2 or 3 spatial axes), e.g. a `BrainSubject.probs`
            (channels `CLASSES` of `gensynth.data.brain_population`, the defaults below).
        spacing_mm: voxel size along each spatial axis, mm.
        config: lesion count, size and sites.
        wm_channel, gm_channel, ventricle_channel: channels of WM, GM and ventricular CSF in `probs`.

    Returns:
        `(lesion, tissue)`: lesion float32 `[*spatial, 1]`, the lesion probability (<= the input WM);
        tissue float32 `[*spatial, C]`, `probs` with the lesion taken out of the WM channel, so
        `concatenate([tissue, lesion], -1)` sums to what `probs` summed to.

    Raises:
        ValueError: for a `spacing_mm` that does not match `probs` or a bad `config`.

    Example:
        >>> probs = jnp.zeros((32, 32, 5)).at[..., 3].set(1.0)
        >>> lesion, tissue = add_ms_lesions(jax.random.key(0), probs, (1.0, 1.0))
        >>> lesion.shape, bool(jnp.allclose(lesion[..., 0] + tissue[..., 3], 1.0))
        ((32, 32, 1), True)
    """
    _check(config)
    probs = jnp.asarray(probs, jnp.float32)
    shape = probs.shape[:-1]
    spacing = np.asarray(spacing_mm, np.float32)
    if len(shape) not in (2, 3) or len(spacing) != len(shape) or spacing.min() <= 0:
        raise ValueError(
            f"probs, spacing_mm: expected [*spatial, C] with 2-3 spatial axes and one positive spacing per axis, "
            f"got {probs.shape} and {tuple(spacing_mm)}"
        )
    channels = (wm_channel, gm_channel, ventricle_channel)
    return _add_ms_lesions(key, probs, tuple(float(x) for x in spacing), config, channels)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _add_ms_lesions(key: jax.Array, probs: jax.Array, spacing_mm: tuple[float, ...], config: LesionConfig,
                    channels: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
    shape = probs.shape[:-1]
    spacing = np.asarray(spacing_mm, np.float32)
    k = len(shape)
    k_count, k_lesions = jax.random.split(key)
    n_max = config.count[1]
    count = jax.random.randint(k_count, (), config.count[0], n_max + 1)
    cdfs = _site_cdfs(_site_weights(probs, spacing, config, channels))
    centres, rotations, semi_axes = _draw_lesions(k_lesions, cdfs, max(n_max, 1), shape, spacing, config)
    # Voxel-centre coordinates (mm) as broadcastable ramps, one per axis.
    coords = [(jnp.arange(n) * s).reshape([n if i == j else 1 for j in range(k)]) for i, (n, s) in
              enumerate(zip(shape, spacing))]
    edge = max(config.edge_mm, 0.5 * float(spacing.max()))
    volume_unit = float(np.prod(spacing))
    ball = np.pi * 4.0 / 3.0 if k == 3 else np.pi  # volume of the unit ball

    def add_one(healthy, lesion_i):
        centre, rotation, axes, active = lesion_i
        frame = [sum((coords[j] - centre[j]) * rotation[j, i] for j in range(k)) for i in range(k)]
        rho = jnp.sqrt(sum((f / a) ** 2 for f, a in zip(frame, axes)))  # ellipsoidal radius [*spatial]
        soft = jax.nn.sigmoid((1.0 - rho) * jnp.prod(axes) ** (1.0 / k) / edge)
        mass = ball * jnp.prod(axes) / jnp.maximum(jnp.sum(soft) * volume_unit, 1e-12)
        soft = soft * jnp.minimum(1.0, mass) * active
        return healthy * (1.0 - soft), None

    active = (jnp.arange(max(n_max, 1)) < count).astype(jnp.float32)
    healthy, _ = jax.lax.scan(add_one, jnp.ones(shape), (centres, rotations, semi_axes, active))
    union = 1.0 - healthy
    wm = probs[..., channels[0]]
    tissue = probs.at[..., channels[0]].set(wm * healthy)
    return (union * wm)[..., None], tissue


def lesion_load(lesion: jax.Array, spacing_mm: Sequence[float]) -> jax.Array:
    """Lesion volume of each channel: `sum_voxels p * voxel volume`, in mL (cm^2 for 2D maps).

    Args:
        lesion: `[..., *spatial, L]` lesion probabilities (or 0/1 masks), channels-last, one channel
            per lesion type (brainSPADE's order: WMH, NE tumour, GD tumour, oedema), spatial axes
            `len(spacing_mm)`.
        spacing_mm: voxel size along each spatial axis, mm.

    Returns:
        float32 `[..., L]`, mm^k / 10^k (k = 3: mL; k = 2: cm^2).

    Example:
        >>> round(float(lesion_load(jnp.ones((2, 3, 4, 1)), (1.0, 2.0, 5.0))[0]), 6)  # 24 voxels of 10 mm^3
        0.24
    """
    lesion = jnp.asarray(lesion, jnp.float32)
    k = len(spacing_mm)
    if lesion.ndim < k + 1 or min(spacing_mm) <= 0:
        raise ValueError(
            f"lesion, spacing_mm: expected [..., {k} spatial axes, L] and positive spacings, got "
            f"{lesion.shape} and {tuple(spacing_mm)}"
        )
    return jnp.sum(lesion, axis=tuple(range(-k - 1, -1))) * float(np.prod(spacing_mm)) / 10.0**k


def lesion_conditioning(loads: jax.Array, normaliser: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """brainSPADE's lesion conditioning `dc_jl = load_jl / max_j' load_j'l` (spec ch01 Eq. 1.3).

    Args:
        loads: `[N, L]` lesion loads of N subjects (any unit, e.g. `lesion_load` in mL).
        normaliser: `[L]` per-type maximum over the training subjects; None computes it from
            `loads` (do that on the training set and keep it with the model, so `dc` stays in [0, 1]).

    Returns:
        `(dc, normaliser)`: dc float32 `[N, L]` (0 for an absent lesion type, 1 for the largest
        training load); normaliser float32 `[L]`.

    Example:
        >>> dc, norm = lesion_conditioning(jnp.array([[2.0, 0.0], [4.0, 0.0]]))
        >>> dc.tolist(), norm.tolist()
        ([[0.5, 0.0], [1.0, 0.0]], [4.0, 0.0])
    """
    loads = jnp.asarray(loads, jnp.float32)
    if loads.ndim != 2:
        raise ValueError(f"loads: expected [N, L], got shape {loads.shape}")
    normaliser = jnp.max(loads, axis=0) if normaliser is None else jnp.asarray(normaliser, jnp.float32)
    if normaliser.shape != loads.shape[1:]:
        raise ValueError(f"normaliser: expected [L] = {loads.shape[1:]}, got shape {normaliser.shape}")
    return jnp.where(normaliser > 0, loads / jnp.where(normaliser > 0, normaliser, 1.0), 0.0), normaliser
