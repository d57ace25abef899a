"""A synthetic brain population with known age and sex laws, warped from the MNI152 template.

Spec ch16 Sect. 3.2 (the offline substitute for UK-Biobank-like cohorts). Each subject has a sex
`s` (1 = male, 0 = female) and an age `a` (years) and is the template (`brain_template`: CSF, GM,
WM, ventricles) pulled through smooth deformations that carry the laws:

- head size: isotropic scale `1 + 0.04 s + N(0, 0.03^2)` about the brain centre;
- ventricles: a radial displacement from the ventricle centroid `v`: a scaling by
  `s = 1 + A / r_w`, where `A = 0.05 mm/year (a - 20) + N(0, 0.5^2)` is the displacement at the
  wall of the sphere with the template's ventricle volume (radius `r_w` = 16 mm). Its weight `w` is
  1 on the ventricles and their 2 mm wall and falls off as a Gaussian (sigma = 6 mm) of the
  distance to them: `u = y - (1 - 1/s) w (y - v)` pulls subject point y back to template point u.
  The ventricles grow exactly by `s^3` (1.66 at 80 years), the tissue around them is compressed,
  and the brain volume is kept (to 0.1 %; the spec's 15 mm fall-off would reach the cortex and
  grow the whole brain by about 6 % at 80 years);
- cortical thinning: a fraction `0.004 (a - 20)` of the GM next to CSF or background moves to CSF;
- shape variability: Gaussian-filtered random displacements (std 2 mm, sigma 10 mm) and rigid
  jitter (+-3 deg, +-2 mm); optional left-right asymmetry (a widening of the right hemisphere);

then rendered as a T1-like image (`render_t1`). Everything after sampling the parameters is pure
JAX (warps with `jax.scipy.ndimage.map_coordinates`), jitted and vmappable over subjects. Subject
`i` of seed `seed` depends only on `(seed, i)`.

The manipulations of ch16 experiment E2 act on the parameters and so keep a realistic texture:
`enlarge_ventricles` (ventricles grown "ex vacuo" into the tissue around them, by a volume factor),
`asymmetric_scale` (right hemisphere widened), `swap_sex_morphology` (the other sex's head size);
`blur` acts on the image.

Axes: volumes are `[D, H, W, C]` = MNI x (left->right), y (posterior->anterior), z (inferior->
superior), as `mni152_volume`; `axial_slices` cuts them for display.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gensynth.data._smooth import gaussian_filter, smooth_noise
from gensynth.data.brain_template import (
    VENTRICLE_WALL_MM,
    BrainTemplate,
    brain_template,
)

_GROW_SIGMA_MM = 6.0  # blur of the ventricle map whose level sets `enlarge_ventricles` grows along

# Named grids: shape [D, H, W] and isotropic spacing (mm). All span 224 mm along y (posterior-anterior),
# room for the largest heads (scale 1.13, 203 mm) with their rigid and elastic jitter.
GRIDS = {"cpu": ((32, 32, 32), 7.0), "4mm": ((48, 56, 48), 4.0), "2mm": ((96, 112, 96), 2.0)}


@struct.dataclass
class PopulationConfig:
    """The population's laws and variability (defaults: spec ch16 Sect. 3.2).

    A frozen pytree: the numbers are traced, so configs that differ only in them (e.g.
    `without_variability()`) share one compiled renderer; the two filter widths are static.
    """

    age_range: tuple[float, float] = (20.0, 80.0)  # age ~ U(lo, hi), years
    male_prob: float = 0.5  # P(sex = 1)
    reference_age: float = 20.0  # age at which the ageing laws are zero, years
    head_scale_sex: float = 0.04  # isotropic scale = 1 + head_scale_sex * sex + N(0, head_scale_std^2)
    head_scale_std: float = 0.03
    ventricle_mm_per_year: float = 0.05  # A = rate * (age - reference_age) + N(0, std^2), mm at the wall
    ventricle_std_mm: float = 0.5
    ventricle_sigma_mm: float = 6.0  # Gaussian fall-off of the ventricle scaling beyond the wall, mm
    thinning_per_year: float = 0.004  # fraction of border GM moved to CSF per year above reference_age
    thinning_border_mm: float = struct.field(pytree_node=False, default=3.0)  # Gaussian width (mm) of "next to CSF"
    elastic_std_mm: float = 2.0  # std of each component of the random smooth displacement, mm
    elastic_spacing_mm: float = struct.field(pytree_node=False, default=20.0)  # filter sigma = spacing / 2, mm
    rotate_deg: float = 3.0  # rigid rotation U(-r, r) about each axis, degrees
    shift_mm: float = 2.0  # rigid shift U(-s, s) along each axis, mm
    asymmetry_std: float = 0.0  # natural right-hemisphere widening ~ N(0, std^2) (0 = symmetric)
    tissue_means: tuple[float, float, float] = (0.10, 0.45, 0.75)  # T1 intensity of CSF, GM, WM
    tissue_jitter: float = 0.03  # each mean + U(-j, j) per subject
    bias: float = 0.10  # max relative deviation of the multiplicative bias field
    noise_std: float = 0.02  # Gaussian noise std, intensity units before rescaling

    def without_variability(self) -> PopulationConfig:
        """The same laws with every individual random term off: anatomy is a function of (age, sex)."""
        zero = ("head_scale_std", "ventricle_std_mm", "elastic_std_mm", "rotate_deg", "shift_mm")
        zero += ("asymmetry_std", "tissue_jitter", "bias", "noise_std")
        return self.replace(**{name: 0.0 for name in zero})


DEFAULT_CONFIG = PopulationConfig()


@struct.dataclass
class SubjectParams:
    """One subject's covariates and random draws (add a leading axis for a batch)."""

    age: jax.Array  # [] float32, years
    sex: jax.Array  # [] float32, 1 = male, 0 = female (the label)
    morph_sex: jax.Array  # [] float32, the sex whose head-size law shapes the anatomy (= sex)
    head_noise: jax.Array  # [] float32, N(0, head_scale_std^2) term of the head scale
    ventricle_noise_mm: jax.Array  # [] float32, N(0, ventricle_std_mm^2) term of A
    ventricle_factor: jax.Array  # [] float32, extra ventricle volume factor (1 = none)
    asymmetry: jax.Array  # [] float32, relative widening of the right hemisphere (0 = none)
    rotation_deg: jax.Array  # [3] float32
    shift_mm: jax.Array  # [3] float32
    tissue_means: jax.Array  # [3] float32, T1 intensity of CSF, GM, WM
    key: jax.Array  # [] typed key of the elastic field, bias field and noise


@struct.dataclass
class BrainSubject:
    """A rendered subject (add a leading axis for a batch)."""

    image: jax.Array  # [D, H, W, 1] float32 T1-like in [-1, 1], background -1
    probs: jax.Array  # [D, H, W, 5] float32 probabilities of brain_template.CLASSES, summing to 1
    labels: jax.Array  # [D, H, W] int32 argmax of probs: 0 bg, 1 CSF, 2 GM, 3 WM, 4 ventricles


def sample_subject_params(key: jax.Array, config: PopulationConfig = DEFAULT_CONFIG) -> SubjectParams:
    """Draws one subject's covariates and individual variability.

    Args:
        key: typed PRNG key.
        config: the population's laws.

    Returns:
        `SubjectParams` (vmap over keys for a batch).

    Example:
        >>> p = sample_subject_params(jax.random.key(0))
        >>> 20.0 <= float(p.age) <= 80.0
        True
    """
    ks = jax.random.split(key, 9)
    lo, hi = config.age_range
    sex = jax.random.bernoulli(ks[0], config.male_prob).astype(jnp.float32)
    means = jnp.asarray(config.tissue_means, jnp.float32)
    return SubjectParams(
        age=jax.random.uniform(ks[1], (), minval=lo, maxval=hi),
        sex=sex,
        morph_sex=sex,
        head_noise=config.head_scale_std * jax.random.normal(ks[2]),
        ventricle_noise_mm=config.ventricle_std_mm * jax.random.normal(ks[3]),
        ventricle_factor=jnp.ones((), jnp.float32),
        asymmetry=config.asymmetry_std * jax.random.normal(ks[4]),
        rotation_deg=jax.random.uniform(ks[5], (3,), minval=-1.0, maxval=1.0) * config.rotate_deg,
        shift_mm=jax.random.uniform(ks[6], (3,), minval=-1.0, maxval=1.0) * config.shift_mm,
        tissue_means=means + jax.random.uniform(ks[7], (3,), minval=-1.0, maxval=1.0) * config.tissue_jitter,
        key=ks[8],
    )


def population_params(seed: int, indices, config: PopulationConfig = DEFAULT_CONFIG) -> SubjectParams:
    """Parameters of subjects `indices` of population `seed`: subject i uses `fold_in(key(seed), i)`.

    Args:
        seed: int seed of the population.
        indices: int sequence or array `[N]` of subject indices.
        config: the population's laws.

    Returns:
        `SubjectParams` with a leading axis `[N]`.
    """
    return _population_params(jax.random.key(seed), jnp.asarray(indices, jnp.uint32), config)


@jax.jit
def _population_params(key: jax.Array, indices: jax.Array, config: PopulationConfig) -> SubjectParams:
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
    return jax.vmap(lambda k: sample_subject_params(k, config))(keys)


# --- manipulations (ch16 E2) ---------------------------------------------------------------------


def enlarge_ventricles(params: SubjectParams, factor: float) -> SubjectParams:
    """Multiplies the ventricle volume by `factor` >= 1 on top of the age law ("ex vacuo" growth).

    Rendering turns the tissue around the ventricles into ventricular CSF, outward along the level
    sets of the ventricle map blurred with sigma = 6 mm, until the soft ventricle volume is `factor`
    times the subject's own; the brain outline and the other warps are unchanged.
    """
    if not np.all(np.asarray(factor) >= 1):
        raise ValueError(f"factor: expected a volume factor >= 1, got {factor}")
    return params.replace(ventricle_factor=params.ventricle_factor * factor)


def asymmetric_scale(params: SubjectParams, amount: float = 0.15) -> SubjectParams:
    """Widens the right hemisphere (MNI x > 0) along x by `amount` (0.15 = 15 %): its volume x (1 + amount)."""
    if not np.all(np.asarray(amount) > -0.5):
        raise ValueError(f"amount: expected a relative widening > -0.5, got {amount}")
    return params.replace(asymmetry=params.asymmetry + amount)


def swap_sex_morphology(params: SubjectParams) -> SubjectParams:
    """Applies the other sex's head-size law while the `sex` label stays."""
    return params.replace(morph_sex=1.0 - params.sex)


@functools.partial(jax.jit, static_argnames=("sigma_vox", "spatial_dims"))
def blur(image: jax.Array, sigma_vox: float = 1.5, spatial_dims: int = 3) -> jax.Array:
    """Gaussian blur of `[..., *spatial, C]` images (`spatial_dims` axes before the channel), sigma in voxels.

    Example:
        >>> blur(jnp.ones((8, 8, 8, 1))).shape
        (8, 8, 8, 1)
    """
    if sigma_vox < 0:
        raise ValueError(f"sigma_vox: expected >= 0 (voxels), got {sigma_vox}")
    if jnp.ndim(image) < spatial_dims + 1:
        raise ValueError(f"image: expected [..., {spatial_dims} spatial axes, C], got shape {jnp.shape(image)}")
    return gaussian_filter(image, [sigma_vox] * spatial_dims, range(-spatial_dims - 1, -1))


def axial_slices(volume: jax.Array) -> jax.Array:
    """Cuts `[..., D, H, W, C]` (RAS) volumes into display axial slices `[..., W, H, D, C]`.

    Slice index runs inferior to superior; rows anterior (nose) at the top, columns patient left to
    right (neurological), as `mni152_slices(axis="axial")`. Labels: pass `labels[..., None]`.
    """
    if jnp.ndim(volume) < 4:
        raise ValueError(f"volume: expected [..., D, H, W, C], got shape {jnp.shape(volume)}")
    slices = jnp.swapaxes(volume, -4, -2)  # [..., W, H, D, C]
    return jnp.flip(slices, axis=-3)


# --- image formation -----------------------------------------------------------------------------


def render_t1(
    key: jax.Array, probs: jax.Array, means: jax.Array, *, bias: float = 0.10, noise_std: float = 0.02
) -> jax.Array:
    """T1-like image from tissue probabilities: partial-volume mix, bias field, noise, rescaling.

    `I = (sum_c p_c mu_c) (1 + bias f) + noise_std n`, with f a random quadratic polynomial of the
    coordinates (each in [-1, 1]) scaled to max |f| = 1 and n ~ N(0, 1); then the brain (argmax not
    0) is mapped from its [0.5, 99.5] intensity percentiles to [-1, 1] (clipped), the rest set to -1.

    Args:
        key: typed PRNG key.
        probs: `[*spatial, C]` probabilities (2 or 3 spatial axes), channel 0 = background.
        means: `[C]` intensity of each channel (background 0).
        bias: max relative deviation of the bias field.
        noise_std: noise std in the units of `means`.

    Returns:
        float32 `[*spatial, 1]` in [-1, 1].

    Example:
        >>> probs = jnp.zeros((8, 8, 3)).at[2:6, 2:6, 1].set(1.0).at[..., 0].set(1.0).at[2:6, 2:6, 0].set(0.0)
        >>> image = render_t1(jax.random.key(0), probs, jnp.array([0.0, 0.5, 0.8]))
        >>> float(image[0, 0, 0]), image.shape
        (-1.0, (8, 8, 1))
    """
    probs = jnp.asarray(probs, jnp.float32)
    if probs.ndim not in (3, 4) or jnp.shape(means) != probs.shape[-1:]:
        raise ValueError(
            f"probs, means: expected [*spatial, C] (2-3 spatial axes) and [C], got {probs.shape} and {jnp.shape(means)}"
        )
    return _render_t1(key, probs, jnp.asarray(means, jnp.float32), bias, noise_std)


@jax.jit
def _render_t1(key: jax.Array, probs: jax.Array, means: jax.Array, bias: float, noise_std: float) -> jax.Array:
    k_bias, k_noise = jax.random.split(key)
    noise = jax.random.normal(k_noise, (probs[..., 0].size,)).reshape(probs.shape[:-1])
    coeffs = jax.random.normal(k_bias, (_num_bias_terms(probs.ndim - 1),))
    return _form_image(probs, means, coeffs, noise, bias, noise_std)


def _num_bias_terms(k: int) -> int:
    return k + k * (k + 1) // 2  # monomials of degree 1 and 2


def _form_image(probs: jax.Array, means: jax.Array, coeffs: jax.Array, noise: jax.Array, bias: float,
                noise_std: float) -> jax.Array:
    """`render_t1` given the bias coefficients `[terms]` and white noise `[*spatial]`."""
    spatial = probs.shape[:-1]
    k = len(spatial)
    # Coordinates in [-1, 1] as broadcastable 1D ramps (no large constants in the compiled program).
    axes = [jnp.linspace(-1.0, 1.0, n).reshape([n if i == j else 1 for j in range(k)]) for i, n in enumerate(spatial)]
    terms = axes + [a * b for i, a in enumerate(axes) for b in axes[i:]]
    field = sum(c * t for c, t in zip(coeffs, terms))
    field = field / jnp.maximum(jnp.max(jnp.abs(field)), 1e-6)
    intensity = (probs @ jnp.asarray(means, jnp.float32)) * (1.0 + bias * field) + noise_std * noise
    brain = jnp.argmax(probs, axis=-1) != 0
    lo, hi = jnp.nanpercentile(jnp.where(brain, intensity, jnp.nan), jnp.array([0.5, 99.5]))
    scaled = jnp.clip(2.0 * (intensity - lo) / jnp.maximum(hi - lo, 1e-6) - 1.0, -1.0, 1.0)
    return jnp.where(brain, scaled, -1.0)[..., None]


# --- warps ---------------------------------------------------------------------------------------


def _rotation(angles: jax.Array) -> jax.Array:
    """Rotation matrix `[3, 3]` from angles (radians) about x, y and z."""
    cx, cy, cz = jnp.cos(angles)
    sx, sy, sz = jnp.sin(angles)
    rx = jnp.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = jnp.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = jnp.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sample(volume: jax.Array, points_mm: jax.Array, template: BrainTemplate, cval: float = 0.0) -> jax.Array:
    """Trilinear samples of template `[Dt, Ht, Wt]` at MNI points `[..., 3]` (`cval` outside)."""
    index = (points_mm - template.origin_mm) / template.spacing_mm
    coords = [index[..., i] for i in range(3)]
    return jax.scipy.ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=cval)


def _pullback(template: BrainTemplate, grid: jax.Array, params: SubjectParams, config: PopulationConfig,
              spacing_mm: float, noise: jax.Array) -> jax.Array:
    """Template points `[D, H, W, 3]` (mm) seen by the subject's voxels at `grid` `[D, H, W, 3]` (mm).

    `noise` `[D, H, W, 3]` N(0, 1) is the white noise of the random smooth displacement.
    """
    centre, v = template.brain_centre_mm, template.ventricle_centre_mm
    # Undo the rigid jitter and head scale: x = c + t + scale R (y - c).
    scale = 1.0 + config.head_scale_sex * params.morph_sex + params.head_noise
    y = centre + ((grid - centre - params.shift_mm) @ _rotation(jnp.deg2rad(params.rotation_deg))) / scale
    # Undo the right-hemisphere widening (smooth over 4 mm around the midline x = 0).
    x = y[..., 0] / (1.0 + params.asymmetry * jax.nn.sigmoid(y[..., 0] / 4.0))
    y = y.at[..., 0].set(x)
    # Random smooth displacement.
    sigma = config.elastic_spacing_mm / 2.0 / spacing_mm
    y = y + config.elastic_std_mm * smooth_noise(noise, [sigma] * 3, (0, 1, 2))
    # Undo the ventricle scaling by s about v, with weight w(distance to the ventricles) at the template point.
    amp = config.ventricle_mm_per_year * (params.age - config.reference_age) + params.ventricle_noise_mm
    s = jnp.maximum(1.0 + amp / template.ventricle_radius_mm, 0.5)
    distance = _sample(template.ventricle_distance_mm, v + (y - v) / s, template, cval=1e3)
    w = jnp.exp(-0.5 * (jnp.maximum(distance - VENTRICLE_WALL_MM, 0.0) / config.ventricle_sigma_mm) ** 2)
    return y - (1.0 - 1.0 / s) * w[..., None] * (y - v)


def _grow_ventricles(probs: jax.Array, factor: jax.Array, spacing_mm: float) -> jax.Array:
    """Turns tissue next to the ventricles into ventricles until their soft volume is `factor` times larger."""
    ventricles, tissue = probs[..., 4], probs[..., 1:4].sum(-1)
    level = gaussian_filter(ventricles, [_GROW_SIGMA_MM / spacing_mm] * 3, (0, 1, 2))
    soft = 0.05 * jnp.max(level)  # width of the grown region's partial-volume edge, in level units

    def grown(threshold):
        return jnp.clip((level - threshold) / soft, 0.0, 1.0)

    def bisect(_, bounds):  # the grown volume falls as the threshold rises
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        large = jnp.sum(ventricles + grown(mid) * tissue) > factor * jnp.sum(ventricles)
        return jnp.where(large, mid, lo), jnp.where(large, hi, mid)

    threshold = jax.lax.fori_loop(0, 40, bisect, (jnp.zeros(()), jnp.max(level)))[1]
    g = jnp.where(factor > 1.0, grown(threshold), 0.0)
    return probs.at[..., 1:4].multiply(1.0 - g[..., None]).at[..., 4].add(g * tissue)


def _thin_cortex(probs: jax.Array, age: jax.Array, config: PopulationConfig, spacing_mm: float) -> jax.Array:
    """Moves a fraction `thinning_per_year (age - ref)` of the GM next to CSF/background into CSF."""
    fraction = jnp.clip(config.thinning_per_year * (age - config.reference_age), 0.0, 1.0)
    sigma = config.thinning_border_mm / spacing_mm
    near = gaussian_filter(probs[..., 0] + probs[..., 1], [sigma] * 3, (0, 1, 2))
    moved = fraction * jnp.clip(2.0 * near, 0.0, 1.0) * probs[..., 2]
    return probs.at[..., 2].add(-moved).at[..., 1].add(moved)


def _render(template: BrainTemplate, grid: jax.Array, params: SubjectParams, config: PopulationConfig,
            spacing_mm: float) -> BrainSubject:
    k_noise, k_bias = jax.random.split(params.key)
    # One flat draw (multi-axis shapes compile far slower under vmap): elastic field (3) and image noise (1).
    noise = jax.random.normal(k_noise, (grid[..., 0].size * 4,)).reshape(grid.shape[:3] + (4,))
    points = _pullback(template, grid, params, config, spacing_mm, noise[..., :3])
    tissue = jax.vmap(lambda m: _sample(m, points, template), in_axes=-1, out_axes=-1)(template.maps)
    background = jnp.clip(1.0 - tissue.sum(-1, keepdims=True), 0.0, 1.0)
    probs = jnp.concatenate([background, tissue], axis=-1)  # [D, H, W, 5], CLASSES order
    probs = _grow_ventricles(probs, params.ventricle_factor, spacing_mm)
    probs = _thin_cortex(probs, params.age, config, spacing_mm)
    csf, gm, wm = params.tissue_means
    means = jnp.stack([0.0, csf, gm, wm, csf])
    coeffs = jax.random.normal(k_bias, (_num_bias_terms(3),))
    image = _form_image(probs, means, coeffs, noise[..., 3], config.bias, config.noise_std)
    return BrainSubject(image=image, probs=probs, labels=jnp.argmax(probs, axis=-1).astype(jnp.int32))


_render_jit = jax.jit(_render, static_argnames="spacing_mm")


def make_render_fn(
    shape: tuple[int, int, int] = GRIDS["cpu"][0],
    spacing_mm: float = GRIDS["cpu"][1],
    config: PopulationConfig = DEFAULT_CONFIG,
) -> Callable[[SubjectParams], BrainSubject]:
    """Builds `render_fn(params) -> BrainSubject` on a grid centred on the template brain.

    The template is sampled at `max(1, spacing_mm // 2)` mm. `render_fn` is jitted inside and
    vmappable: `jax.vmap(render_fn)(population_params(seed, range(8)))`.

    Args:
        shape: output grid `(D, H, W)`, voxels along MNI x, y, z (see `GRIDS`).
        spacing_mm: isotropic output voxel size, mm.
        config: the population's laws.

    Returns:
        `render_fn(params: SubjectParams) -> BrainSubject` (image, probs, labels on the grid).

    Example:
        >>> render_fn = make_render_fn((16, 16, 16), 12.0)
        >>> render_fn(sample_subject_params(jax.random.key(0))).image.shape
        (16, 16, 16, 1)
    """
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"shape: expected three positive sizes (D, H, W), got {shape}")
    if not spacing_mm > 0:
        raise ValueError(f"spacing_mm: expected > 0 (mm), got {spacing_mm}")
    template = brain_template(max(1, int(spacing_mm // 2)))
    offsets = [(np.arange(n) - (n - 1) / 2.0) * spacing_mm for n in shape]
    grid = jnp.stack(jnp.meshgrid(*offsets, indexing="ij"), axis=-1) + template.brain_centre_mm  # [D, H, W, 3]

    def render_fn(params: SubjectParams) -> BrainSubject:
        if jnp.ndim(params.age) != 0:
            raise ValueError(f"params: expected one subject (jax.vmap the function for a batch), got age "
                             f"of shape {jnp.shape(params.age)}")
        return _render_jit(template, grid, params, config=config, spacing_mm=float(spacing_mm))

    return render_fn


def make_population(
    seed: int,
    n: int,
    *,
    shape: tuple[int, int, int] = GRIDS["cpu"][0],
    spacing_mm: float = GRIDS["cpu"][1],
    config: PopulationConfig = DEFAULT_CONFIG,
    manipulate: Callable[[SubjectParams], SubjectParams] | None = None,
    batch_size: int = 16,
    with_probs: bool = False,
) -> dict[str, np.ndarray]:
    """Generates subjects `0 .. n-1` of population `seed` on the host, in batches.

    Args:
        seed: int seed; subject i depends only on (seed, i).
        n: number of subjects.
        shape, spacing_mm, config: as `make_render_fn`.
        manipulate: optional map applied to the (batched) parameters before rendering, e.g.
            `lambda p: enlarge_ventricles(p, 3.0)`.
        batch_size: subjects rendered per compiled call.
        with_probs: also return the probability maps.

    Returns:
        dict of numpy arrays: "image" float32 `[n, D, H, W, 1]` in [-1, 1], "labels" uint8
        `[n, D, H, W]` (`CLASSES` indices), "age" float32 `[n]` (years), "sex" int32 `[n]`
        (1 = male), and "probs" float32 `[n, D, H, W, 5]` if `with_probs`.

    Example:
        >>> make_population(0, 2, shape=(16, 16, 16), spacing_mm=12.0)["labels"].shape
        (2, 16, 16, 16)
    """
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"n, batch_size: expected positive ints, got n={n}, batch_size={batch_size}")
    render_batch = jax.vmap(make_render_fn(shape, spacing_mm, config))
    out = {"image": [], "labels": [], "age": [], "sex": [], "probs": []}
    for start in range(0, n, batch_size):
        index = np.minimum(np.arange(start, start + batch_size), n - 1)  # pad the last batch
        keep = min(batch_size, n - start)
        params = population_params(seed, index, config)
        if manipulate is not None:
            params = manipulate(params)
        subject = render_batch(params)
        out["image"].append(np.asarray(subject.image)[:keep])
        out["labels"].append(np.asarray(subject.labels).astype(np.uint8)[:keep])
        out["age"].append(np.asarray(params.age)[:keep])
        out["sex"].append(np.asarray(params.sex).astype(np.int32)[:keep])
        if with_probs:
            out["probs"].append(np.asarray(subject.probs)[:keep])
    if not with_probs:
        del out["probs"]
    return {k: np.concatenate(v) for k, v in out.items()}

