"""Tests for gensynth.data.cellular_automaton (Pixel2Cancer)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from gensynth.data.cellular_automaton import (
    KIDNEY,
    LIVER,
    CAState,
    CellularAutomatonConfig,
    ca_death,
    ca_death_update,
    ca_grow,
    ca_growth_step,
    ca_growth_update,
    ca_init,
    ca_render_hu,
    ca_seed,
    cellular_automaton_tumour,
    quantify_tissue,
)

CFG = CellularAutomatonConfig()
NO_PUSH = dataclasses.replace(CFG, pressure_max=None)  # barriers never convert
_update = jax.jit(ca_growth_update, static_argnums=3)
_death = jax.jit(ca_death_update, static_argnums=2)
_render = jax.jit(ca_render_hu, static_argnums=(6, 7))


def _i8(rows):
    return jnp.asarray(rows, jnp.int8)


def test_quantify_tissue_by_hand():
    hu = jnp.array([50.0, 119.9, 120.0, 139.9, 140.0, 159.9, 160.0, 110.0])
    organ = jnp.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    # L = 100, U = 160, interval 20: <120 -> 0, <140 -> 1, <160 -> 2, else or outside -> 3.
    assert quantify_tissue(hu, organ, LIVER).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # Kidney: L = 140, U = 200.
    assert quantify_tissue(jnp.array([150.0, 165.0, 185.0, 200.0]), jnp.ones(4, bool), KIDNEY).tolist() == [0, 1, 2, 3]


def test_one_growth_update_by_hand():
    """Every rule once, on a 5 x 5 grid, with the random draws written out (module docstring)."""
    pop = _i8([[0, 0, 0, 0, 10],
               [0, 3, 0, 0, 0],
               [0, 0, 7, 0, 0],
               [0, 0, 0, 10, 0],
               [9, 6, 0, 0, 0]])  # fmt: skip
    level = _i8([[0, 0, 0, 0, 0],
                 [0, 1, 0, 0, 3],
                 [0, 0, 0, 2, 0],
                 [0, 0, 0, 0, 0],
                 [0, 0, 0, 0, 3]])  # fmt: skip
    pressure = jnp.zeros((5, 5), jnp.int8).at[1, 4].set(3).at[4, 4].set(2)
    offsets = np.zeros((3, 5, 5, 2), np.int32)
    u = np.zeros((3, 5, 5), np.float32)
    offsets[0, 1, 1] = (0, 1)  # p = 3 < K/2: proliferates only, never invades (1, 2)
    offsets[0, 2, 2], u[0, 2, 2] = (-1, -1), 0.5  # level-1 target, u = 0.5 >= 0.3: gate fails
    offsets[1, 2, 2], u[1, 2, 2] = (0, 1), 0.05  # level-2 target, u = 0.05 < 0.1: infects (2, 3)
    offsets[2, 2, 2] = (1, 1)  # not tried: the second attempt succeeded
    offsets[0, 3, 3] = (1, 1)  # p = K on a barrier with pressure 2 <= P_max: push (pressure 3), skip
    offsets[1, 3, 3] = (0, 0)  # itself: crowded (pop = K), skip
    offsets[2, 3, 3], u[2, 3, 3] = (-1, 0), 0.05  # (2, 3) again: a second infection, +1
    offsets[0, 0, 4] = (-1, 0)  # out of bounds, skip
    offsets[1, 0, 4] = (1, 0)  # barrier with pressure 3 > P_max: converted to level 0 and infected
    offsets[0, 4, 1] = (0, -1)  # 6 -> 7 and infects (4, 0)
    offsets[0, 4, 0] = (-1, 0)  # 9 -> 10 (+1 infection -> 11, clipped to K) and infects (3, 0)
    new = _update(CAState(pop, level, pressure), jnp.asarray(offsets), jnp.asarray(u), CFG)
    expected_pop = [[0, 0, 0, 0, 10],
                    [0, 4, 0, 0, 1],
                    [0, 0, 8, 2, 0],
                    [1, 0, 0, 10, 0],
                    [10, 7, 0, 0, 0]]  # fmt: skip
    assert new.pop.tolist() == expected_pop
    assert new.level.tolist() == np.asarray(level).copy().tolist()[:1] + [[0, 1, 0, 0, 0]] + level[2:].tolist()
    expected_pressure = np.zeros((5, 5), int)
    expected_pressure[1, 4], expected_pressure[4, 4] = 3, 3
    assert new.pressure.tolist() == expected_pressure.tolist()
    assert new.pop.dtype == jnp.int8


def test_without_pressure_a_barrier_is_only_pushed():
    pop = jnp.zeros((3, 3), jnp.int8).at[1, 1].set(10)
    level = jnp.full((3, 3), 3, jnp.int8).at[1, 1].set(0)
    pressure = jnp.full((3, 3), 5, jnp.int8)
    offsets = jnp.zeros((3, 3, 3, 2), jnp.int32).at[:, 1, 1].set(jnp.array([[0, 1], [1, 0], [0, 1]]))
    new = _update(CAState(pop, level, pressure), offsets, jnp.zeros((3, 3, 3)), NO_PUSH)
    assert new.pop.tolist() == pop.tolist() and new.level.tolist() == level.tolist()
    assert int(new.pressure[1, 2]) == 7 and int(new.pressure[2, 1]) == 6  # pushed twice and once


def test_death_update_by_hand():
    pop = _i8([[10, 10, 5],
               [10, -1, 10],
               [-1, 10, 10]])  # fmt: skip
    offsets = np.zeros((3, 3, 3, 2), np.int32)
    offsets[0, 1, 1], offsets[1, 1, 1] = (-1, 1), (0, -1)  # (0, 2) has 5: skip; then kills (1, 0)
    offsets[2, 1, 1] = (1, 1)  # not tried
    offsets[0, 2, 0], offsets[1, 2, 0], offsets[2, 2, 0] = (1, 0), (0, 0), (-1, 0)  # out, dead self, (1, 0)
    offsets[0, 0, 0] = (0, 1)  # a living voxel never kills
    new = _death(pop, jnp.asarray(offsets), 10)
    assert new.tolist() == [[10, 10, 5], [-1, -1, 10], [-1, 10, 10]]


def test_death_phase_only_kills_full_cells():
    pop = jnp.full((15, 15), 5, jnp.int8).at[3:12, 3:12].set(10).at[7, 3:12].set(9)
    core, valid = jnp.array([7 * 15 + 7, 0], jnp.int32), jnp.array([True, False])
    die = jax.jit(ca_death, static_argnums=(5, 6))
    dead = np.asarray(die(jax.random.key(0), pop, core, valid, 60, 60, CFG))
    before = np.asarray(pop)
    assert dead[7, 7] == -1 and dead[0, 0] == 5  # the valid core point dies, the invalid one not
    killed = (dead == -1) & (before != -1)
    assert killed.sum() > 5 and np.all(before[killed & ((np.arange(15) != 7)[:, None])] == 10)
    np.testing.assert_array_equal(dead[~killed], before[~killed])  # everything else unchanged


def test_seeds_sit_on_tissue_at_half_population():
    level = jnp.full((20, 20), 3, jnp.int8).at[4:16, 4:16].set(0)
    seed = jax.jit(ca_seed, static_argnums=2)
    for i in range(3):
        state, core, valid = seed(jax.random.key(i), ca_init(level), CFG)
        pop = np.asarray(state.pop)
        assert set(np.unique(pop).tolist()) == {0, 5}
        assert np.all(np.asarray(level)[pop == 5] == 0)
        assert 1 <= np.asarray(valid)[:9].sum() <= 9
        assert np.all(pop.ravel()[np.asarray(core)[np.asarray(valid)]] == 5)


def _seeded(size=21, organ_side=15):
    level = jnp.full((size, size), 3, jnp.int8)
    lo = (size - organ_side) // 2
    level = level.at[lo : lo + organ_side, lo : lo + organ_side].set(0)
    pop = jnp.zeros((size, size), jnp.int8).at[size // 2, size // 2].set(5)
    return CAState(pop, level, jnp.zeros((size, size), jnp.int8))


def test_growth_invariants_step_by_step():
    state = _seeded()
    organ = np.asarray(state.level) == 0
    step = jax.jit(ca_growth_step, static_argnums=2)
    total = 0
    for n in range(1, 31):
        state = step(jax.random.fold_in(jax.random.key(0), n), state, NO_PUSH)
        pop = np.asarray(state.pop)
        assert pop.min() >= 0 and pop.max() <= 10  # population never exceeds K
        assert not np.any(pop[~organ])  # growth stops at the organ boundary
        rows, cols = np.nonzero(pop)
        assert np.max(np.maximum(np.abs(rows - 10), np.abs(cols - 10))) <= n  # Chebyshev radius <= n
        assert pop.sum() >= total  # the growth phase never loses population
        total = pop.sum()
    assert (pop > 0).sum() > 0.5 * organ.sum()  # the organ has filled up to its border


def test_pressure_lets_a_full_tumour_break_through_barriers():
    grow = jax.jit(ca_grow, static_argnums=(3, 4))
    state = grow(jax.random.key(1), _seeded(), 60, 60, CFG)
    outside = np.asarray(_seeded().level) == 3
    assert np.any(np.asarray(state.level)[outside] == 0)  # converted barrier voxels
    assert np.any(np.asarray(state.pop)[outside] > 0)
    assert np.asarray(state.pressure)[outside].max() > 0


def test_dense_tissue_slows_growth_and_grow_is_deterministic():
    grow = jax.jit(jax.vmap(ca_grow, (0, None, None, None, None)), static_argnums=(3, 4))
    keys = jax.random.split(jax.random.key(2), 20)

    def sizes(tissue):
        state = _seeded()._replace(level=jnp.where(_seeded().level == 0, tissue, 3).astype(jnp.int8))
        return np.asarray((grow(keys, state, 12, 12, NO_PUSH).pop > 0).sum(axis=(1, 2)))

    soft, dense = sizes(0), sizes(2)
    assert dense.mean() < 0.5 * soft.mean()
    np.testing.assert_array_equal(soft, sizes(0))  # same keys, same tumours


def test_render_hu_by_hand():
    hu = jnp.full((12, 12), 110.0)
    organ = jnp.zeros((12, 12), bool).at[1:11, 1:11].set(True)
    pop = jnp.zeros((12, 12), jnp.int8).at[3:9, 3:9].set(10)
    level = jnp.where(organ, 0, 3).astype(jnp.int8)  # quantify_tissue: 110 HU is level 0
    out = np.asarray(_render(jax.random.key(0), hu, organ, pop, level, jnp.ones((12, 12)), LIVER, CFG))
    smooth_support = ndi.binary_dilation(np.asarray(pop) != 0, np.ones((3, 3)))
    np.testing.assert_array_equal(out[~smooth_support], 110.0)  # P = 0: unchanged
    core = out[4:8, 4:8]  # P = K: I - Delta_1 with T = 1, Delta_1 ~ U(65, 145)
    assert np.ptp(core) < 1e-4 and 110 - 145 <= core[0, 0] <= 110 - 65
    dead = pop.at[5:7, 5:7].set(-1)
    out_dead = np.asarray(_render(jax.random.key(0), hu, organ, dead, level, jnp.ones((12, 12)), LIVER, CFG))
    assert out_dead[5:7, 5:7].mean() < out_dead[3:9, 3:9][np.asarray(dead)[3:9, 3:9] == 10].mean()


SMALL_RUN = dataclasses.replace(CFG, steps=(20, 60), death_prob=1.0)


@functools.cache
def _tumour_fn():
    return jax.jit(jax.vmap(functools.partial(cellular_automaton_tumour, organ_params=LIVER, cfg=SMALL_RUN),
                            (0, None, None)))  # fmt: skip


def test_tumour_stays_in_organ_and_changes_only_near_it():
    yy, xx = np.mgrid[:32, :32]
    organ = ((yy - 16) / 13) ** 2 + ((xx - 16) / 11) ** 2 <= 1
    hu = np.where(organ, 110.0, -100.0).astype(np.float32)
    hu[15:17, 4:28] = 180.0  # a vessel: barrier
    out, tumour = (np.asarray(a) for a in _tumour_fn()(jax.random.split(jax.random.key(3), 4), hu, organ))
    assert tumour.any(axis=(1, 2)).all()
    for image, mask in zip(out, tumour):
        assert not np.any(mask & ~organ)
        np.testing.assert_array_equal(image[~organ], hu[~organ])
        near = ndi.binary_dilation(mask, np.ones((3, 3)))
        np.testing.assert_array_equal(image[~near], hu[~near])
        assert (hu - image)[mask & (hu == 110.0)].mean() > 10.0  # hypo-attenuating tumour
    again, _ = _tumour_fn()(jax.random.split(jax.random.key(3), 4), hu, organ)
    np.testing.assert_array_equal(out, again)  # determinism for a fixed key


def test_tumour_3d_runs_and_dead_is_tumour_flag():
    organ = np.zeros((12, 16, 16), bool)
    organ[2:10, 3:13, 3:13] = True
    hu = np.where(organ, 110.0, -100.0).astype(np.float32)
    cfg = dataclasses.replace(SMALL_RUN, steps=(55, 60), dead_is_tumour=False)
    run = jax.jit(functools.partial(cellular_automaton_tumour, organ_params=LIVER, cfg=cfg))
    out, tumour = run(jax.random.key(4), hu, organ)
    assert out.shape == (12, 16, 16) and np.asarray(tumour).any()
    assert not np.any(np.asarray(tumour) & ~organ)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="hu"):
        cellular_automaton_tumour(jax.random.key(0), jnp.zeros(8), jnp.ones(8, bool))
    with pytest.raises(ValueError, match="organ"):
        cellular_automaton_tumour(jax.random.key(0), jnp.zeros((8, 8)), jnp.ones((8, 9), bool))
