"""Hand-crafted (procedural) tumour synthesis in CT: deformed ellipsoids pasted inside an organ,
darkened in HU by a blurred Bernoulli texture (Hu et al., chapter 5 Sect. 5.3).

Per sample (spec ch. 5, Sect. 2.2): draw a size class (tiny, small, medium, large or a mix of
all four) and a count; for each tumour draw per-axis integer radii in
`[floor(0.75 r), floor(1.25 r)]`, deform the ellipsoid with a random 3 x 3 control-point grid
(three passes on the axis pairs (0,1), (1,2), (0,2) in 3D, one in 2D), and centre it on a random
voxel of the eroded organ in an axial slice of the central z band. The tumour mask `G` is the
union, clipped to the organ; the image becomes `I' = I - T * gauss(G, sigma) * Delta` inside
the organ (hypo-attenuating, `Delta ~ U(65, 145)` HU, texture `T` in [0, 1]), unchanged outside.
Optional post-processing from the paper (default off, as in the authors' code): vessel avoidance,
a mass-effect warp and a bright capsule rim.

Everything is a pure JAX function of a key and static shapes, so it runs under `jit` and `vmap`.
Images are single volumes `[H, W]` or `[D, H, W]` (D = axial slice axis), HU, float32; lengths
in voxels (= mm at the chapter's 1 mm resampling). `gensynth.data.tumour_synthesis` applies a
generator to a channels-last batch.

References:
    Hu et al., "Label-free liver tumor segmentation", CVPR 2023; code MrGiovanni/SyntheticTumors.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.data.tumour_texture import TextureConfig, gaussian_filter, random_texture

SIZE_CLASSES = ("tiny", "small", "medium", "large", "mix")


@dataclasses.dataclass(frozen=True)
class ProceduralTumourConfig:
    """Settings of `procedural_tumour`; defaults are the authors' code (spec Sect. 2.2).

    Per-class tuples are ordered (tiny, small, medium, large).
    """

    class_probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)  # P(tiny, small, medium, large, mix)
    base_radius: tuple[int, ...] = (4, 8, 16, 32)  # base radius r, voxels
    counts: tuple[tuple[int, int], ...] = ((3, 10), (3, 10), (2, 5), (1, 3))  # tumours per sample, inclusive
    mix_counts: tuple[tuple[int, int], ...] = ((3, 10), (5, 10), (2, 5), (1, 3))  # per class in "mix"
    elastic_sigma: tuple[tuple[float, float], ...] = ((0.5, 1.0), (1, 2), (3, 6), (5, 10))  # voxels
    elastic_sigma_integer: tuple[bool, ...] = (False, True, True, True)  # randint (True) or uniform
    radius_factor: tuple[float, float] = (0.75, 1.25)  # radii ~ randint[floor(lo r), floor(hi r)]
    z_band: tuple[float, float] = (0.3, 0.7)  # centre slice, as a fraction of the organ's z extent
    erode: int = 5  # side of the square eroding the organ slice before picking a centre
    blur_sigma: tuple[float, float] = (1.0, 2.0)  # edge blur of the tumour mask, ~ U(lo, hi) voxels
    contrast_hu: tuple[float, float] = (65.0, 145.0)  # darkening Delta ~ U(lo, hi), HU
    texture: TextureConfig = dataclasses.field(default_factory=TextureConfig)  # sigmas of the on-the-fly texture
    vessel_hu: float | None = None  # centres keep > erode // 2 voxels from organ voxels >= this HU; None: off
    mass_effect: float = 0.0  # strength S (%) of the radial expansion warp per tumour; 0: off (paper: 30)
    capsule_hu: float = 0.0  # HU added on the tumour's one-voxel inner rim; 0: off

    def __post_init__(self):
        if len(self.class_probs) != 5 or min(self.class_probs) < 0 or not math.isclose(sum(self.class_probs), 1):
            raise ValueError(f"class_probs: expected 5 probabilities summing to 1, got {self.class_probs}")
        for name in ("base_radius", "counts", "mix_counts", "elastic_sigma", "elastic_sigma_integer"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"{name}: expected one entry per class (tiny, small, medium, large)")
        for lo, hi in self.counts + self.mix_counts:
            if not 0 <= lo <= hi:
                raise ValueError(f"counts, mix_counts: expected ranges 0 <= lo <= hi, got ({lo}, {hi})")
        if self.erode < 1 or self.erode % 2 == 0:
            raise ValueError(f"erode: expected an odd side >= 1, got {self.erode}")


def _elastic_passes(ndim: int) -> tuple[tuple[int, int], ...]:
    """Axis pairs of the elastic deformation passes, in the order they are applied."""
    return ((0, 1),) if ndim == 2 else ((0, 1), (1, 2), (0, 2))


def _quadratic_weights(t: jax.Array) -> jax.Array:
    """Weights `[..., 3]` of the parabola through control points at t = 0, 1, 2 (t clamped)."""
    t = jnp.clip(t, 0.0, 2.0)[..., None]
    return jnp.concatenate([(t - 1) * (t - 2) / 2, -t * (t - 2), t * (t - 1) / 2], axis=-1)


def random_elastic_grids(key: jax.Array, sigma: float | jax.Array, ndim: int, n: int | None = None) -> jax.Array:
    """Control-point displacements `[P, 2, 3, 3]` (or `[n, P, 2, 3, 3]`) ~ N(0, sigma^2) voxels for
    the P passes (1 in 2D, 3 in 3D) of `deformed_ellipsoid`."""
    batch = () if n is None else (n,)
    # Box-Muller from uniforms: the same law as jax.random.normal, much cheaper to compile on CPU.
    u1, u2 = jax.random.uniform(key, (2, *batch, len(_elastic_passes(ndim)), 2, 3, 3), minval=1e-12)
    return jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * jnp.pi * u2) * sigma


def _uniform_int(u: jax.Array, lo, hi) -> jax.Array:
    """Integers uniform in `[lo, hi]` (inclusive, broadcast) from uniforms `u` in [0, 1)."""
    return jnp.minimum(jnp.floor(lo + u * (np.asarray(hi) - lo + 1)), hi).astype(jnp.int32)


def deformed_ellipsoid(
    shape: tuple[int, ...], centre: jax.Array, radii: jax.Array, grids: jax.Array | None = None
) -> jax.Array:
    """Mask of an ellipsoid `sum(((x - centre) / radii)^2) <= 1`, elastically deformed.

    The deformation follows elasticdeform's `deform_random_grid` on the ellipsoid's box of side
    `4 * radii` (centred): each pass displaces one axis pair by a 3 x 3 control grid, interpolated
    between the box edges and centre by the parabola through the three control points (the
    not-a-knot cubic spline), constant outside the box. Passes are composed as pull-backs, so the
    mask is evaluated at continuous positions (no resampling blur: it stays binary).

    Args:
        shape: static spatial shape `S` (2 or 3 axes).
        centre: `[d]` centre, voxel indices.
        radii: `[d]` semi-axes, voxels (> 0).
        grids: `[P, 2, 3, 3]` control displacements in voxels from `random_elastic_grids`, or None.

    Returns:
        bool `[*S]`.

    Example:
        >>> int(deformed_ellipsoid((9, 9), jnp.array([4, 4]), jnp.array([2.0, 3.0])).sum())
        19
    """
    ndim = len(shape)
    centre = jnp.asarray(centre, jnp.float32)
    radii = jnp.asarray(radii, jnp.float32)
    y = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in shape], indexing="ij")  # d x [*S]
    if grids is not None:
        for (a, b), grid in reversed(list(zip(_elastic_passes(ndim), grids))):
            # Box coordinates: 0 at the box edge, 1 at its centre, 2 at the far edge.
            w_a = _quadratic_weights((y[a] - centre[a] + 2.0 * radii[a]) / (2.0 * radii[a]))  # [*S, 3]
            w_b = _quadratic_weights((y[b] - centre[b] + 2.0 * radii[b]) / (2.0 * radii[b]))
            weights = w_a[..., :, None] * w_b[..., None, :]  # [*S, 3, 3]
            y[a], y[b] = y[a] + jnp.sum(weights * grid[0], (-2, -1)), y[b] + jnp.sum(weights * grid[1], (-2, -1))
    return sum(((y[i] - centre[i]) / radii[i]) ** 2 for i in range(ndim)) <= 1.0


def _erode(mask: jax.Array, size: int) -> jax.Array:
    """Binary erosion of a bool `[*S]` mask by a box of odd side `size`; outside counts as False."""
    half = size // 2
    padded = jnp.pad(mask.astype(jnp.int8), half)
    return jax.lax.reduce_window(padded, jnp.int8(1), jax.lax.min, (size,) * mask.ndim, (1,) * mask.ndim, "VALID") > 0


def _uniform_choice(key: jax.Array, priority: jax.Array) -> jax.Array:
    """Index `[d]` of a voxel drawn uniformly among those of highest integer `priority` `[*S]`."""
    score = jax.random.uniform(key, priority.shape) + priority.astype(jnp.float32)
    return jnp.stack(jnp.unravel_index(jnp.argmax(score), priority.shape)).astype(jnp.int32)


def sample_tumour_centre(
    key: jax.Array,
    organ: jax.Array,
    *,
    z_band: tuple[float, float] = (0.3, 0.7),
    erode: int = 5,
    avoid: jax.Array | None = None,
) -> jax.Array:
    """A random tumour centre inside the organ, away from its edge (spec Sect. 2.2 step 3).

    3D: slice `z = z_s + round(U(z_band) * (z_e - z_s))` of the organ's axial extent
    `[z_s, z_e]`, then a uniform voxel of that slice eroded by an `erode x erode` square. 2D: a
    uniform pixel of the eroded organ. Voxels in `avoid` (e.g. vessels) are removed before the
    erosion. Falls back to the uneroded slice, then to anywhere, when nothing is left.

    Args:
        key: PRNG key.
        organ: bool `[H, W]` or `[D, H, W]` organ mask.
        z_band: central band of the organ's z extent (3D only), fractions in [0, 1].
        erode: odd side of the eroding square, voxels.
        avoid: optional bool mask like `organ` of voxels a centre must keep away from.

    Returns:
        int32 `[d]` voxel index.

    Example:
        >>> sample_tumour_centre(jax.random.key(0), jnp.ones((16, 16), bool)).shape
        (2,)
    """
    organ = jnp.asarray(organ, bool)
    free = organ if avoid is None else organ & ~avoid
    k_z, k_pick = jax.random.split(key)
    if organ.ndim == 2:
        return _uniform_choice(k_pick, _erode(free, erode).astype(jnp.int32) * 2 + organ)
    present = organ.any(axis=(1, 2))
    z_start = jnp.argmax(present)
    z_end = organ.shape[0] - 1 - jnp.argmax(present[::-1])
    fraction = jax.random.uniform(k_z, minval=z_band[0], maxval=z_band[1])
    z = z_start + jnp.round(fraction * (z_end - z_start)).astype(jnp.int32)
    plane = jax.lax.dynamic_index_in_dim(organ, z, keepdims=False)
    free_plane = jax.lax.dynamic_index_in_dim(free, z, keepdims=False)
    yx = _uniform_choice(k_pick, _erode(free_plane, erode).astype(jnp.int32) * 2 + plane)
    return jnp.concatenate([z[None], yx]).astype(jnp.int32)


def mass_effect_warp(image: jax.Array, centre: jax.Array, radii: jax.Array, strength: float = 30.0) -> jax.Array:
    """Radial in-plane expansion around a tumour (Pixel2Cancer's `expand`, spec Sect. 2.3 step 9).

    In each axial plane through the tumour, with in-plane tumour radius `rho` (the mean of the
    last two semi-axes, shrunk to the ellipsoid's cross-section in 3D) and `R = 1.3 rho`, the
    output at `u` samples the input bilinearly at

    .. math:: u' = c + (u - c)\\,(1 - (S/100)(1 - |u - c|^2 / R^2)) \\quad (|u - c| < R),

    pushing tissue outwards; pixels outside the disc are unchanged.

    Args:
        image: float `[H, W]` or `[D, H, W]`.
        centre: `[d]` tumour centre, voxels.
        radii: `[d]` tumour semi-axes, voxels.
        strength: S in percent (0 is the identity).

    Returns:
        float32, same shape.

    Example:
        >>> mass_effect_warp(jnp.zeros((8, 8)), jnp.array([4, 4]), jnp.array([2.0, 2.0])).shape
        (8, 8)
    """
    image = jnp.asarray(image, jnp.float32)
    centre = jnp.asarray(centre, jnp.float32)
    radii = jnp.asarray(radii, jnp.float32)
    grid = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in image.shape], indexing="ij")
    rho = 0.5 * (radii[-1] + radii[-2])
    if image.ndim == 3:
        rho = rho * jnp.sqrt(jnp.maximum(0.0, 1.0 - ((grid[0] - centre[0]) / radii[0]) ** 2))
    big_r2 = (1.3 * rho) ** 2
    dy, dx = grid[-2] - centre[-2], grid[-1] - centre[-1]
    dist2 = dy**2 + dx**2
    inside = dist2 < big_r2
    scale = jnp.where(inside, 1.0 - strength / 100.0 * (1.0 - dist2 / jnp.where(inside, big_r2, 1.0)), 1.0)
    coords = list(grid[:-2]) + [centre[-2] + dy * scale, centre[-1] + dx * scale]
    return jax.scipy.ndimage.map_coordinates(image, coords, order=1, mode="nearest")


def _slot_layout(cfg: ProceduralTumourConfig) -> tuple[np.ndarray, np.ndarray]:
    """Static tumour slots: class `[N]` of each slot and its rank `[N]` within its class."""
    most = [max(single[1], mix[1]) for single, mix in zip(cfg.counts, cfg.mix_counts)]
    slot_class = np.repeat(np.arange(4), most)
    slot_rank = np.concatenate([np.arange(m) for m in most])
    return slot_class, slot_rank


def procedural_tumour(
    key: jax.Array, hu: jax.Array, organ: jax.Array, cfg: ProceduralTumourConfig = ProceduralTumourConfig()
) -> tuple[jax.Array, jax.Array]:
    """Inserts hand-crafted tumours into one CT image (spec Sect. 2.2, pseudocode HANDCRAFTED).

    Args:
        key: PRNG key.
        hu: float `[H, W]` or `[D, H, W]` CT in HU (D = axial slice axis).
        organ: bool (or 0/1) organ mask, same shape.
        cfg: the synthesiser's settings (static; pass with `functools.partial` under `jit`).

    Returns:
        `(hu_out, tumour)`: float32 HU, same shape, equal to `hu` outside the organ (and wherever
        the blurred tumour mask is 0, unless `cfg.mass_effect` warps it); bool tumour mask
        inside the organ.

    Raises:
        ValueError: if `hu` is not 2D/3D or `organ` has another shape.

    Example:
        >>> hu, organ = jnp.full((32, 32), 110.0), jnp.ones((32, 32), bool)
        >>> procedural_tumour(jax.random.key(0), hu, organ)[1].shape
        (32, 32)
    """
    if hu.ndim not in (2, 3):
        raise ValueError(f"hu: expected one image [H, W] or [D, H, W], got shape {hu.shape}")
    if organ.shape != hu.shape:
        raise ValueError(f"organ: expected the shape of hu {hu.shape}, got {organ.shape}")
    shape, ndim = hu.shape, hu.ndim
    hu = jnp.asarray(hu, jnp.float32)
    organ = jnp.asarray(organ).astype(bool)
    keys = jax.random.split(key, 4)
    slot_class, slot_rank = _slot_layout(cfg)
    n_slots = slot_class.size
    # One uniform draw for all discrete choices (cheaper to compile than many randint calls):
    # [N, d] radii, [N] elastic sigma, [8] counts (single class, mix), size class, edge blur, contrast.
    u = jax.random.uniform(keys[0], (n_slots * (ndim + 1) + 11,))
    u_radii, u_sigma = u[: n_slots * ndim].reshape(n_slots, ndim), u[n_slots * ndim : n_slots * (ndim + 1)]
    u_count, (u_kind, u_blur, u_delta) = u[-11:-3].reshape(2, 4), u[-3:]

    # Size class and number of tumours of each class.
    kind = jnp.sum(u_kind >= np.cumsum(cfg.class_probs)[:-1])  # categorical(class_probs)
    single = _uniform_int(u_count[0], *np.array(cfg.counts).T)
    mixed = _uniform_int(u_count[1], *np.array(cfg.mix_counts).T)
    count = jnp.where(kind == jnp.arange(4), single, jnp.where(kind == 4, mixed, 0))  # [4]
    active = jnp.asarray(slot_rank) < count[slot_class]  # [N]

    # Shapes: integer radii, elastic sigma, control grids.
    base = np.asarray(cfg.base_radius)[slot_class]
    lo = np.floor(cfg.radius_factor[0] * base)[:, None]
    hi = np.floor(cfg.radius_factor[1] * base)[:, None]
    radii = _uniform_int(u_radii, lo, hi).astype(jnp.float32)  # [N, d]
    s_lo, s_hi = np.asarray(cfg.elastic_sigma, np.float32)[slot_class].T
    integer = np.asarray(cfg.elastic_sigma_integer)[slot_class]
    sigma = jnp.where(integer, _uniform_int(u_sigma, s_lo, s_hi), s_lo + u_sigma * (s_hi - s_lo))
    grids = random_elastic_grids(keys[1], 1.0, ndim, n_slots) * sigma[:, None, None, None, None]

    # Locations.
    avoid = None if cfg.vessel_hu is None else hu >= cfg.vessel_hu
    centres = jax.vmap(lambda k: sample_tumour_centre(k, organ, z_band=cfg.z_band, erode=cfg.erode, avoid=avoid))(
        jax.random.split(keys[2], n_slots)
    )  # [N, d]

    def add_one(carry, slot):
        image, tumour = carry
        on, centre, r, grid = slot
        if cfg.mass_effect > 0:
            image = jnp.where(on, mass_effect_warp(image, centre, r, cfg.mass_effect), image)
        return (image, tumour | (on & deformed_ellipsoid(shape, centre, r, grid))), None

    (warped, tumour), _ = jax.lax.scan(add_one, (hu, jnp.zeros(shape, bool)), (active, centres, radii, grids))
    tumour = tumour & organ

    # Intensity: I' = I - T * gauss(G, sigma) * Delta inside the organ.
    texture = random_texture(keys[3], shape, cfg.texture)
    blur = cfg.blur_sigma[0] + u_blur * (cfg.blur_sigma[1] - cfg.blur_sigma[0])
    soft = gaussian_filter(tumour.astype(jnp.float32), blur, radius=math.ceil(4 * cfg.blur_sigma[1]))
    delta = cfg.contrast_hu[0] + u_delta * (cfg.contrast_hu[1] - cfg.contrast_hu[0])
    darker = warped - texture * soft * delta
    if cfg.capsule_hu:
        darker = darker + cfg.capsule_hu * (tumour & ~_erode(tumour, 3))
    return jnp.where(organ, darker, warped), tumour

