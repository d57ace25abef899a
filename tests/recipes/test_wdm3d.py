"""WDM-3D: the scaled wavelet coefficients and their image-space clipping, the MNI152 cube, a tiny
net that learns at 16^3, samples in image space, and a 4-device train step equal to one device."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.recipes import wdm3d
from gensynth.train import make_mesh, param_sharding, shard_batch

SIZE = 16
TINY = wdm3d.WDMConfig(
    data=wdm3d.DataConfig(size=SIZE),
    model=wdm3d.ModelConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, groups=4),
    train=wdm3d.OptimConfig(batch_size=4, learning_rate=2e-3, ema_decay=0.0),
    sample=wdm3d.SampleConfig(num_steps=3),
)


def _volumes(n=4, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 8, 6, 4, 1)).astype(np.float32)


def test_encode_decode_round_trip_and_lll_range():
    x = jnp.asarray(_volumes())
    z = wdm3d.wdm_encode(x)
    assert z.shape == (4, 4, 3, 2, 8)
    np.testing.assert_allclose(np.asarray(wdm3d.wdm_decode(z)), np.asarray(x), atol=1e-6)
    bound = 2 * math.sqrt(2) / 3  # |LLL| <= 2 sqrt(2) / 3 for x in [-1, 1], reached by constants
    assert float(jnp.abs(z[..., 0]).max()) <= bound + 1e-6
    np.testing.assert_allclose(float(wdm3d.wdm_encode(-jnp.ones((1, 2, 2, 2, 1)))[0, 0, 0, 0, 0]), -bound, rtol=1e-6)


def test_band_scales_divide_each_band():
    x = jnp.asarray(_volumes(2, seed=1)).repeat(2, axis=-1)  # two channels: bands are (band, channel)
    scales = (3.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 4.0)
    plain = np.asarray(wdm3d.wdm_encode(x, (1.0,) * 8)).reshape(2, 4, 3, 2, 8, 2)
    scaled = np.asarray(wdm3d.wdm_encode(x, scales)).reshape(2, 4, 3, 2, 8, 2)
    np.testing.assert_allclose(scaled, plain / np.asarray(scales)[:, None], rtol=1e-6)


def test_clip_in_image_space():
    x = jnp.asarray(_volumes())
    z = wdm3d.wdm_encode(x)
    np.testing.assert_allclose(np.asarray(wdm3d.clip_in_image_space(z)), np.asarray(z), atol=1e-6)  # in range
    wild = wdm3d.wdm_encode(3 * x)  # mostly outside [-1, 1]
    clipped = wdm3d.clip_in_image_space(wild)
    np.testing.assert_allclose(np.asarray(wdm3d.wdm_decode(clipped)), np.clip(3 * np.asarray(x), -1, 1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(wdm3d.clip_in_image_space(clipped)), np.asarray(clipped), atol=1e-6)


def test_mni152_cube():
    cube = wdm3d.mni152_cubes(SIZE, ("t1", "gm"))
    assert cube.shape == (1, SIZE, SIZE, SIZE, 2) and cube.dtype == np.float32
    assert cube.min() >= -1 and cube.max() <= 1
    assert np.all(cube[0, 0, 0, 0] == -1)  # background corner
    centre = cube[0, SIZE // 2 - 2 : SIZE // 2 + 2, SIZE // 2 - 2 : SIZE // 2 + 2, SIZE // 2 - 2 : SIZE // 2 + 2, 0]
    assert centre.mean() > -0.5  # brain in the middle


@pytest.mark.parametrize(
    "override, match",
    [
        ({"data": wdm3d.DataConfig(size=18)}, "data.size"),
        ({"model": wdm3d.ModelConfig(remat="all")}, "model.remat"),
        ({"diffusion": wdm3d.DiffusionConfig(band_scales=(3.0, 1.0))}, "band_scales"),
        ({"sample": wdm3d.SampleConfig(sampler="pc")}, "sample.sampler"),
    ],
)
def test_validate_names_the_key(override, match):
    with pytest.raises(ValueError, match=match):
        wdm3d.validate(wdm3d.WDMConfig(**override))


def test_model_options_reach_the_unet():
    cfg = dataclasses.replace(
        TINY,
        model=dataclasses.replace(TINY.model, remat="nothing_saveable"),
        train=dataclasses.replace(TINY.train, compute_dtype="bfloat16"),
        data=dataclasses.replace(TINY.data, kinds=("t1", "wm")),
    )
    net = nnx.eval_shape(lambda: wdm3d.build_model(cfg, jax.random.key(0)))
    assert net.remat == "nothing_saveable" and net.dtype == jnp.bfloat16
    assert net.in_channels == 16  # 8 bands x 2 maps


def test_paper_config_builds_the_wdm_sized_net():
    cfg = wdm3d.validate(wdm3d.paper_config())
    net = nnx.eval_shape(lambda: wdm3d.build_model(cfg, jax.random.key(0)))
    assert (net.in_channels, net.num_levels, cfg.data.size // 2) == (8, 5, 64)  # 8 x 64^3 coefficients


@functools.cache
def _brain_batch():
    """Four flipped/shifted copies of the MNI152 T1 cube at 16^3, ``[4, 16, 16, 16, 1]``."""
    cube = wdm3d.mni152_cubes(SIZE)[0]
    return np.stack([cube, cube[::-1], np.roll(cube, 1, axis=2), np.roll(cube, -1, axis=1)])


@functools.cache
def _one_device_training():
    """``(graphdef, step-0 state, train_step)`` on one device, built once (copy the state: it is donated)."""
    return wdm3d.init_training(TINY, make_mesh(1))


def test_train_step_learns_on_the_brain():
    mesh = make_mesh(1)
    graphdef, state, train_step = _one_device_training()
    state = jax.tree.map(jnp.copy, state)
    batch = {"image": jnp.asarray(_brain_batch())}
    loss_fn = wdm3d.make_loss_fn(TINY, wdm3d.build_schedule(TINY.diffusion))
    keys = [jax.random.key(k) for k in range(4)]

    @jax.jit
    def eval_loss(params, key):  # deterministic given the key: same steps, noise and flips
        return loss_fn(nnx.merge(graphdef, params), key, batch)[0]

    before = np.mean([float(eval_loss(state.params, k)) for k in keys])
    losses = []
    for _ in range(15):
        state, metrics = train_step(state, shard_batch({"image": _brain_batch()}, mesh))
        losses.append(float(metrics["loss"]))
    after = np.mean([float(eval_loss(state.params, k)) for k in keys])
    assert np.all(np.isfinite(losses)) and int(state.step) == 15
    assert after < 0.7 * before, (before, after, losses)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampling_returns_volumes_in_image_space(sampler):
    cfg = dataclasses.replace(TINY, sample=wdm3d.SampleConfig(sampler=sampler, num_steps=3))
    graphdef, params = nnx.split(wdm3d.build_model(cfg, jax.random.key(0)), nnx.Param)
    # the zero-initialised head would predict z0 = 0: perturb all weights so the net outputs something
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)
    sample_fn = wdm3d.make_sample_fn(graphdef, cfg, wdm3d.build_schedule(cfg.diffusion))
    volumes = np.asarray(sample_fn(params, jax.random.key(2), 2))
    assert volumes.shape == (2, SIZE, SIZE, SIZE, 1)
    # the last step returns the image-space-clipped z0 prediction (posterior coefficient of x_t is 0)
    assert volumes.min() >= -1 - 1e-5 and volumes.max() <= 1 + 1e-5
    assert volumes.std() > 0.05


def test_four_device_train_step_equals_one_device():
    batch = _brain_batch()
    results = {}
    for devices in (1, 4):
        mesh = make_mesh(devices)
        _, state, train_step = _one_device_training() if devices == 1 else wdm3d.init_training(TINY, mesh)
        state = jax.device_put(jax.tree.map(jnp.copy, state), param_sharding(state, mesh))
        state, metrics = train_step(state, shard_batch({"image": batch}, mesh))
        results[devices] = (float(metrics["loss"]), float(metrics["grad_norm"]), jax.device_get(state.params))
    np.testing.assert_allclose(results[4][:2], results[1][:2], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[4][2]), jax.tree.leaves(results[1][2]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=0)


def test_train_wdm_runs_the_loop_and_checks_volumes():
    cfg = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, num_steps=2))
    with pytest.raises(ValueError, match="volumes: expected"):
        wdm3d.train_wdm(cfg, _brain_batch()[:, :8], mesh=make_mesh(1))
    trained = wdm3d.train_wdm(cfg, _brain_batch(), mesh=make_mesh(1))
    assert int(trained.state.step) == 2 and trained.losses.shape == (2,) and np.all(np.isfinite(trained.losses))
