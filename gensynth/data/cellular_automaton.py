"""Pixel2Cancer: tumour development simulated by a cellular automaton on the CT grid, then mapped
into HU (Lai et al., chapter 5 Sect. 5.4; rules and constants from spec ch. 5 Sect. 2.3).

State (`CAState`, one image, `[*S]` = `[H, W]` or `[D, H, W]` with D the axial axis):

- `pop` int8 in {-1 (dead), 0, ..., K}: tumour population per voxel, K = `max_pop` = 10;
- `level` int8 in {0, 1, 2, 3}: tissue density class from HU (0/1/2 parenchyma low to high,
  3 barrier: vessel, HU >= U, or outside the organ);
- `pressure` int8 >= 0: pushes received by a barrier voxel.

One growth update (synchronous: all reads from the previous state, writes added with
`.at[].add` and clipped to K), for each voxel with population `1 <= p <= K`:

1. proliferation: `p < K/2` adds 1 and stops; `K/2 <= p < K` adds 1 and invades; `p = K` invades;
2. invasion: up to `max_try` attempts, stopping at the first success; each draws a Moore
   neighbour `q = c + delta`, `delta` in {-1, 0, 1}^d (the voxel itself included), and
   skips it when out of bounds; when `p = K` and `q` is a barrier, `q` is converted to level-0
   tissue if `pressure[q] > P_max`, else pushed (`pressure[q] += 1`, attempt skipped); then the
   tissue gate passes with probability 1 / 0.3 / 0.1 / 0 for level 0 / 1 / 2 / 3; a crowded
   (`pop[q] >= K`) or dead target is skipped; else `pop[q] += 1` and the attempt succeeds.

After `n_steps + 1` updates, with probability 1/2 when `n_steps > death_min_steps`, a death
phase marks the seed (core) points and `pop = K` voxels near them dead, then spreads death
into `pop = K` neighbours. The final population is smoothed and subtracted from the HU image
through the texture of `gensynth.data.tumour_texture`.

The random draws are separated from the rules (`ca_growth_update` and `ca_death_update` take the
offsets and uniforms as arrays), so every rule is testable by hand; the steps run under
`lax.scan` with per-step keys `fold_in(key, i)`, jittable and vmappable.

References:
    Lai et al., "From pixel to cancer: cellular automata in computed tomography", MICCAI 2024;
    code MrGiovanni/Pixel2Cancer (`cellular.cu`, `utils.py`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gensynth.data.tumour_texture import TextureConfig, gaussian_filter, random_texture


@dataclasses.dataclass(frozen=True)
class OrganParams:
    """Per-organ constants of Pixel2Cancer (spec Sect. 2.3 table)."""

    name: str  # "liver", "pancreas" or "kidney" (selects the organ-specific HU mapping rules)
    hu_lower: float  # L, HU
    hu_upper: float  # U, HU: voxels at or above it are barriers
    max_steps: int  # S: n_steps ~ randint[5, S - 1]
    death_min_steps: int  # death is possible only when n_steps exceeds this


LIVER = OrganParams("liver", 100.0, 160.0, 150, 50)
PANCREAS = OrganParams("pancreas", 100.0, 160.0, 80, 30)
KIDNEY = OrganParams("kidney", 140.0, 200.0, 80, 30)


@dataclasses.dataclass(frozen=True)
class CellularAutomatonConfig:
    """Settings of the automaton and its HU mapping; defaults from the authors' code."""

    max_pop: int = 10  # K, maximum population; seeds start at K // 2
    max_try: int = 3  # invasion attempts per voxel and update
    pressure_max: int | None = 2  # P_max: a barrier converts once pressure > P_max; None: never
    gate: tuple[float, float, float] = (1.0, 0.3, 0.1)  # invasion probability into level 0/1/2 ((1,1,1): code)
    steps: tuple[int, int] | None = None  # inclusive range of n_steps; None: (5, organ.max_steps - 1)
    seeds: tuple[int, int] = (1, 9)  # number of seed voxels, inclusive
    extra_seed_prob: float = 1.0 / 3.0  # probability that a seed gets extra seeds around it
    extra_seeds: tuple[int, int] = (3, 9)  # number of extra seeds, inclusive
    extra_offset: tuple[int, int] = (-10, 9)  # extra-seed offset per axis, inclusive, voxels
    death_prob: float = 0.5  # probability of the death phase (when n_steps > death_min_steps)
    dead_is_tumour: bool = True  # label dead (necrotic) voxels as tumour (the code does not)
    contrast_hu: tuple[float, float] = (65.0, 145.0)  # main darkening Delta_1 ~ U(lo, hi), HU
    necrosis_hu: tuple[float, float] = (90.0, 110.0)  # extra darkening of the dead core Delta_2, HU
    blur_sigma: float = 0.8  # 3-tap Gaussian applied to the population maps, voxels
    texture: TextureConfig = dataclasses.field(default_factory=TextureConfig)  # texture sigmas


class CAState(NamedTuple):
    """Automaton state of one image; all leaves int8 `[*S]`."""

    pop: jax.Array  # tumour population in {-1 (dead), 0..K}
    level: jax.Array  # tissue class in {0, 1, 2, 3 (barrier)}
    pressure: jax.Array  # pushes received (barriers), >= 0


def _moore_offsets(u: jax.Array) -> jax.Array:
    """Uniform Moore offsets in {-1, 0, 1} (the voxel itself included) from uniforms `u` in [0, 1)."""
    return jnp.minimum(jnp.floor(3.0 * u), 2.0).astype(jnp.int32) - 1


def quantify_tissue(hu: jax.Array, organ: jax.Array, organ_params: OrganParams = LIVER) -> jax.Array:
    """Tissue density classes (spec Sect. 2.3 step 2), `interval = (U - L) / 3`.

    Args:
        hu: float `[*S]` CT, HU.
        organ: bool `[*S]` organ mask.
        organ_params: L and U.

    Returns:
        int8 `[*S]`: 3 outside the organ or where HU >= U; else 0 below L + interval, 1 below
        L + 2 interval, 2 below U.

    Example:
        >>> quantify_tissue(jnp.array([90.0, 125.0, 150.0, 170.0]), jnp.ones(4, bool)).tolist()
        [0, 1, 2, 3]
    """
    lower, upper = organ_params.hu_lower, organ_params.hu_upper
    interval = (upper - lower) / 3.0
    level = (hu >= lower + interval).astype(jnp.int8) + (hu >= lower + 2 * interval) + (hu >= upper)
    return jnp.where(jnp.asarray(organ, bool), level, 3).astype(jnp.int8)


def ca_init(level: jax.Array) -> CAState:
    """Empty state (no population, no pressure) on a tissue map `level` int8 `[*S]`."""
    zeros = jnp.zeros(level.shape, jnp.int8)
    return CAState(pop=zeros, level=jnp.asarray(level, jnp.int8), pressure=zeros)


def _targets(offsets: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Flat target index `[*S]` (clipped) and in-bounds flag `[*S]` of `c + offsets` `[*S, d]`."""
    coords = jnp.stack(jnp.meshgrid(*[jnp.arange(n) for n in shape], indexing="ij"), -1)  # [*S, d]
    target = coords + offsets
    size = jnp.asarray(shape)
    inside = jnp.all((target >= 0) & (target < size), axis=-1)
    flat = jnp.ravel_multi_index(tuple(jnp.moveaxis(target, -1, 0)), shape, mode="clip")
    return flat, inside


def ca_growth_update(
    state: CAState, offsets: jax.Array, u: jax.Array, cfg: CellularAutomatonConfig = CellularAutomatonConfig()
) -> CAState:
    """One synchronous growth/invasion update with the random draws given (module docstring).

    Args:
        state: the automaton state, leaves `[*S]`.
        offsets: int `[max_try, *S, d]` neighbour offsets in {-1, 0, 1} per attempt and voxel.
        u: float `[max_try, *S]` uniforms in [0, 1) of the tissue gate per attempt and voxel.
        cfg: K, P_max and the gate probabilities.

    Returns:
        The next `CAState`.

    Example:
        >>> s = ca_init(jnp.zeros((3, 3), jnp.int8))._replace(pop=jnp.zeros((3, 3), jnp.int8).at[1, 1].set(5))
        >>> ca_growth_update(s, jnp.zeros((3, 3, 3, 2), int).at[0, 1, 1].set(1), jnp.zeros((3, 3, 3))).pop.tolist()
        [[0, 0, 0], [0, 6, 0], [0, 0, 1]]
    """
    shape = state.pop.shape
    max_pop = cfg.max_pop
    pop = state.pop.astype(jnp.int32)
    level = state.level.astype(jnp.int32)
    pressure = state.pressure.astype(jnp.int32)
    flat_pop, flat_level, flat_pressure = pop.ravel(), level.ravel(), pressure.ravel()
    gate = jnp.asarray(cfg.gate + (0.0,), jnp.float32)  # level 3 never passes

    living = pop >= 1
    proliferates = living & (pop < max_pop)
    done = ~(living & (2 * pop >= max_pop))  # only K/2 <= p <= K invades
    pushes = living & (pop >= max_pop)  # mass effect only at full population
    infected = jnp.zeros(pop.size, jnp.int32)
    pushed = jnp.zeros(pop.size, jnp.int32)
    converted = jnp.zeros(pop.size, bool)
    for attempt in range(cfg.max_try):
        target, inside = _targets(offsets[attempt], shape)
        trying = ~done & inside
        target_level, target_pop = flat_level[target], flat_pop[target]
        at_barrier = trying & pushes & (target_level == 3)
        if cfg.pressure_max is None:
            convert = jnp.zeros_like(at_barrier)
        else:
            convert = at_barrier & (flat_pressure[target] > cfg.pressure_max)
        push = at_barrier & ~convert
        target_level = jnp.where(convert, 0, target_level)
        target_pop = jnp.where(convert, 0, target_pop)
        passes = u[attempt] < gate[target_level]
        infect = trying & ~push & passes & (target_pop >= 0) & (target_pop < max_pop)
        done = done | infect
        infected = infected.at[target.ravel()].add(infect.ravel())
        pushed = pushed.at[target.ravel()].add(push.ravel())
        converted = converted.at[target.ravel()].max(convert.ravel())

    new_level = jnp.where(converted.reshape(shape), 0, level)
    new_pop = jnp.minimum(pop + proliferates + infected.reshape(shape), max_pop)
    new_pop = jnp.where(new_level == 3, 0, new_pop)
    new_pressure = jnp.minimum(pressure + pushed.reshape(shape), 127)
    return CAState(new_pop.astype(jnp.int8), new_level.astype(jnp.int8), new_pressure.astype(jnp.int8))


def ca_growth_step(key: jax.Array, state: CAState, cfg: CellularAutomatonConfig = CellularAutomatonConfig()) -> CAState:
    """`ca_growth_update` with uniform Moore offsets and gate uniforms drawn from `key`."""
    shape = state.pop.shape
    u = jax.random.uniform(key, (cfg.max_try, *shape, len(shape) + 1))
    return ca_growth_update(state, _moore_offsets(u[..., :-1]), u[..., -1], cfg)


def ca_grow(
    key: jax.Array,
    state: CAState,
    n_updates: int | jax.Array,
    max_updates: int,
    cfg: CellularAutomatonConfig = CellularAutomatonConfig(),
) -> CAState:
    """Runs `n_updates` growth updates (traced allowed) as a `lax.scan` of static length
    `max_updates` (>= n_updates); update i uses `fold_in(key, i)`.

    Example:
        >>> s = ca_init(jnp.zeros((5, 5), jnp.int8))._replace(pop=jnp.zeros((5, 5), jnp.int8).at[2, 2].set(1))
        >>> int(ca_grow(jax.random.key(0), s, 3, 8).pop[2, 2])
        4
    """

    def body(current, i):
        grown = ca_growth_step(jax.random.fold_in(key, i), current, cfg)
        return jax.tree.map(lambda new, old: jnp.where(i < n_updates, new, old), grown, current), None

    return jax.lax.scan(body, state, jnp.arange(max_updates))[0]


def ca_death_update(pop: jax.Array, offsets: jax.Array, max_pop: int = 10) -> jax.Array:
    """One synchronous death update: each dead voxel (-1) tries its neighbours `c + offsets[a]`
    in turn and kills (sets to -1) the first with population `max_pop`.

    Args:
        pop: int8 `[*S]` population.
        offsets: int `[n_try, *S, d]` neighbour offsets in {-1, 0, 1}.
        max_pop: K.

    Returns:
        int8 `[*S]` population.
    """
    flat_pop = pop.ravel()
    done = pop != -1
    killed = jnp.zeros(pop.size, bool)
    for attempt in range(offsets.shape[0]):
        target, inside = _targets(offsets[attempt], pop.shape)
        kill = ~done & inside & (flat_pop[target] == max_pop)
        done = done | kill
        killed = killed.at[target.ravel()].max(kill.ravel())
    return jnp.where(killed.reshape(pop.shape), -1, pop).astype(jnp.int8)


def ca_seed(
    key: jax.Array, state: CAState, cfg: CellularAutomatonConfig = CellularAutomatonConfig()
) -> tuple[CAState, jax.Array, jax.Array]:
    """Places the seeds (spec Sect. 2.3 step 4): `randint[seeds]` uniform non-barrier voxels at
    `K // 2`, each with probability `extra_seed_prob` joined by `randint[extra_seeds]` more at
    offsets `randint[extra_offset]^d` (kept only in bounds and off barriers).

    Returns:
        `(state, core, core_valid)`: the seeded state; flat indices int32 `[M]` of all seed
        (core) points and their validity bool `[M]`, M = `seeds[1] * (1 + extra_seeds[1])`.
    """
    shape, ndim = state.pop.shape, state.pop.ndim
    k_n, k_pick, k_extra, k_n_extra, k_offset = jax.random.split(key, 5)
    n_main, n_extra = cfg.seeds[1], cfg.extra_seeds[1]
    free = state.level < 3
    score = jax.random.uniform(k_pick, (n_main, *shape)) + free
    main = jnp.argmax(score.reshape(n_main, -1), axis=1)  # [n_main] flat
    main_valid = (jnp.arange(n_main) < jax.random.randint(k_n, (), cfg.seeds[0], cfg.seeds[1] + 1)) & free.ravel()[main]
    extra_count = jax.random.randint(k_n_extra, (n_main,), cfg.extra_seeds[0], cfg.extra_seeds[1] + 1)
    has_extra = main_valid & (jax.random.uniform(k_extra, (n_main,)) < cfg.extra_seed_prob)
    lo, hi = cfg.extra_offset
    offsets = jax.random.randint(k_offset, (n_main, n_extra, ndim), lo, hi + 1)
    main_coords = jnp.stack(jnp.unravel_index(main, shape), -1)  # [n_main, d]
    extra_coords = main_coords[:, None] + offsets  # [n_main, n_extra, d]
    inside = jnp.all((extra_coords >= 0) & (extra_coords < jnp.asarray(shape)), -1)
    extra = jnp.ravel_multi_index(tuple(jnp.moveaxis(extra_coords, -1, 0)), shape, mode="clip")
    extra_valid = has_extra[:, None] & (jnp.arange(n_extra) < extra_count[:, None]) & inside & free.ravel()[extra]
    core = jnp.concatenate([main, extra.ravel()]).astype(jnp.int32)
    core_valid = jnp.concatenate([main_valid, extra_valid.ravel()])
    pop = state.pop.ravel().at[jnp.where(core_valid, core, state.pop.size)].set(cfg.max_pop // 2, mode="drop")
    return state._replace(pop=pop.reshape(shape)), core, core_valid


def ca_death(
    key: jax.Array,
    pop: jax.Array,
    core: jax.Array,
    core_valid: jax.Array,
    n_steps: int | jax.Array,
    max_steps: int,
    cfg: CellularAutomatonConfig = CellularAutomatonConfig(),
) -> jax.Array:
    """The death (necrosis) phase (spec Sect. 2.3 step 6) on a grown population `pop` `[*S]`.

    Core points die; `randint[5, 19]` voxels at offsets in `[-b, b)^d`, `b = max(1, floor(n_steps
    / 10 - 2))`, around each core point die where their population is K; then
    `floor(n_steps / 7) + 1` death updates (scan of static length `floor(max_steps / 7) + 1`).

    Returns:
        int8 `[*S]` population with -1 on dead voxels.
    """
    shape, ndim, max_pop = pop.shape, pop.ndim, cfg.max_pop
    k_count, k_offset, k_steps = jax.random.split(key, 3)
    flat = jnp.minimum(pop, max_pop).ravel()
    flat = flat.at[jnp.where(core_valid, core, flat.size)].set(-1, mode="drop")
    reach = jnp.maximum(1, jnp.floor(n_steps / 10 - 2)).astype(jnp.int32)
    offsets = jax.random.randint(k_offset, (core.size, 19, ndim), -reach, reach)
    coords = jnp.stack(jnp.unravel_index(core, shape), -1)[:, None] + offsets  # [M, 19, d]
    tries = jnp.arange(19) < jax.random.randint(k_count, (core.size, 1), 5, 20)
    inside = jnp.all((coords >= 0) & (coords < jnp.asarray(shape)), -1)
    target = jnp.ravel_multi_index(tuple(jnp.moveaxis(coords, -1, 0)), shape, mode="clip")
    kill = core_valid[:, None] & tries & inside & (flat[target] == max_pop)
    flat = flat.at[jnp.where(kill, target, flat.size)].set(-1, mode="drop")

    def body(current, i):
        offsets = _moore_offsets(jax.random.uniform(jax.random.fold_in(k_steps, i), (3, *shape, ndim)))
        return jnp.where(i < n_steps // 7 + 1, ca_death_update(current, offsets, max_pop), current), None

    return jax.lax.scan(body, flat.reshape(shape), jnp.arange(max_steps // 7 + 1))[0]


def ca_render_hu(
    key: jax.Array,
    hu: jax.Array,
    organ: jax.Array,
    pop: jax.Array,
    level: jax.Array,
    texture: jax.Array,
    organ_params: OrganParams = LIVER,
    cfg: CellularAutomatonConfig = CellularAutomatonConfig(),
) -> jax.Array:
    """Maps a final population into HU (spec Sect. 2.3 step 8), changes confined to the organ.

    With `P = blur(pop, dead -> K)`, `interval = (U - L) / 3`: barrier voxels (initial `level`
    3) under `P >= K/2` are scaled by `(L + interval/2) / U`, level-2 voxels under `P > 0` by
    `(L + 2 interval) / U`; pancreas fat (HU <= 65 under the tumour) is brightened by
    `T * U(m, 2m) * P/K`; then `I -= T * Delta_1 * P/K`, the dead core adds `T * Delta_2 *
    blur(-dead)`; liver and pancreas voxels with `P >= K/2` and level >= 2 (pancreas: also fat
    or negative) take the blurred tumour-region image.

    Args:
        key: PRNG key (Delta_1, Delta_2, the pancreas fat contrast).
        hu: float `[*S]` CT, HU.
        organ: bool `[*S]` organ mask; the output equals `hu` outside it.
        pop: int8 `[*S]` final population (-1 dead).
        level: int8 `[*S]` tissue classes before growth (`quantify_tissue`).
        texture: float `[*S]` texture in [0, 1].
        organ_params: L, U and the organ's name.
        cfg: K, HU ranges, blur.

    Returns:
        float32 `[*S]` HU.
    """
    k_1, k_2, k_fat = jax.random.split(key, 3)
    max_pop, lower, upper = cfg.max_pop, organ_params.hu_lower, organ_params.hu_upper
    interval = (upper - lower) / 3.0
    hu_in = jnp.asarray(hu, jnp.float32)
    blur = lambda x: gaussian_filter(x, cfg.blur_sigma, radius=1)
    smooth = blur(jnp.where(pop == -1, max_pop, pop).astype(jnp.float32))  # P in [0, K]
    tumour = smooth != 0
    image = jnp.where((level == 3) & (smooth >= max_pop / 2), hu_in * (lower + interval / 2) / upper, hu_in)
    image = jnp.where((level == 2) & tumour, image * (lower + 2 * interval) / upper, image)
    fat = (image <= 65) & tumour
    if organ_params.name == "pancreas":
        mean = jnp.sum(jnp.where(tumour, image, 0.0)) / jnp.maximum(jnp.sum(tumour), 1)
        contrast = mean * (1.0 + jax.random.uniform(k_fat))  # U(m, 2m)
        image = image + jnp.where(fat, texture * contrast * smooth / max_pop, 0.0)
    delta = jax.random.uniform(k_1, minval=cfg.contrast_hu[0], maxval=cfg.contrast_hu[1])
    image = image - texture * delta * smooth / max_pop
    necrosis = jax.random.uniform(k_2, minval=cfg.necrosis_hu[0], maxval=cfg.necrosis_hu[1])
    image = image + texture * necrosis * blur(-(pop == -1).astype(jnp.float32))
    if organ_params.name in ("liver", "pancreas"):
        region = blur(jnp.where(tumour, image, 0.0))
        replace = (smooth >= max_pop / 2) & (level >= 2)
        if organ_params.name == "pancreas":
            replace = replace | ((smooth >= max_pop / 2) & (fat | (image < 0)))
        image = jnp.where(replace, region, image)
    return jnp.where(organ, image, hu_in)


def cellular_automaton_tumour(
    key: jax.Array,
    hu: jax.Array,
    organ: jax.Array,
    organ_params: OrganParams = LIVER,
    cfg: CellularAutomatonConfig = CellularAutomatonConfig(),
) -> tuple[jax.Array, jax.Array]:
    """Grows and renders one Pixel2Cancer tumour in a CT image (spec Sect. 2.3 steps 2-8).

    Args:
        key: PRNG key.
        hu: float `[H, W]` or `[D, H, W]` CT, HU (D = axial axis).
        organ: bool (or 0/1) organ mask, same shape.
        organ_params: `LIVER`, `PANCREAS`, `KIDNEY` or custom (static).
        cfg: automaton settings (static; pass with `functools.partial` under `jit`).

    Returns:
        `(hu_out, tumour)`: float32 HU equal to `hu` outside the organ; bool tumour mask (pop > 0,
        plus dead voxels when `cfg.dead_is_tumour`) inside the organ.

    Raises:
        ValueError: if `hu` is not 2D/3D or `organ` has another shape.

    Example:
        >>> hu, organ = jnp.full((16, 16), 110.0), jnp.ones((16, 16), bool)
        >>> cellular_automaton_tumour(jax.random.key(0), hu, organ, cfg=CellularAutomatonConfig(steps=(5, 9)))[1].shape
        (16, 16)
    """
    if hu.ndim not in (2, 3):
        raise ValueError(f"hu: expected one image [H, W] or [D, H, W], got shape {hu.shape}")
    if organ.shape != hu.shape:
        raise ValueError(f"organ: expected the shape of hu {hu.shape}, got {organ.shape}")
    lo, hi = cfg.steps if cfg.steps is not None else (5, organ_params.max_steps - 1)
    if not 0 <= lo <= hi:
        raise ValueError(f"cfg.steps: expected 0 <= lo <= hi, got ({lo}, {hi})")
    organ = jnp.asarray(organ).astype(bool)
    k_steps, k_seed, k_grow, k_die, k_death, k_texture, k_render = jax.random.split(key, 7)
    level = quantify_tissue(hu, organ, organ_params)
    n_steps = jax.random.randint(k_steps, (), lo, hi + 1)
    state, core, core_valid = ca_seed(k_seed, ca_init(level), cfg)
    pop = ca_grow(k_grow, state, n_steps + 1, hi + 1, cfg).pop
    dies = (jax.random.uniform(k_die) < cfg.death_prob) & (n_steps > organ_params.death_min_steps)
    if hi > organ_params.death_min_steps:
        pop = jnp.where(dies, ca_death(k_death, pop, core, core_valid, n_steps, hi, cfg), pop)
    pop = jnp.where(organ, pop, 0).astype(jnp.int8)
    texture = random_texture(k_texture, hu.shape, cfg.texture)
    image = ca_render_hu(k_render, hu, organ, pop, level, texture, organ_params, cfg)
    tumour = (pop != 0) if cfg.dead_is_tumour else (pop > 0)
    return image, tumour
