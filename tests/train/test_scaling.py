"""Scaling on 8 fake CPU devices: data parallel and FSDP train a U-Net to the same numbers as one
device, the parameters really are split under FSDP, sharded DDIM sampling equals one-device
sampling, and neither the train loop nor a sampler compiles more than once.

Tolerances (float32). Sharding changes only the order of the reductions (the loss mean over the
batch, the gradient sums over devices, the global gradient norm), so the numbers differ by a few
float32 roundings; measured on 2/4/8 devices (DP and FSDP) after three AdamW steps (lr 1e-3):
loss and gradient norm within 1.2e-7 relative, parameters and EMA within 3.5e-7 absolute (weights
up to 1.0, where one ulp is 1.2e-7), Adam's moments within 1.5e-5 of each leaf's largest value,
4-step stochastic DDIM samples in [-1, 1] within 1.2e-7. The tests allow about 10x that:
``rtol=1e-6`` for loss and gradient norm, ``atol=2e-6`` for parameters and EMA (one AdamW step
moves a weight by ~1e-3), ``1e-4`` x max|leaf| for the optimiser state (its second moments are
~1e-6 in size, so only a relative bound says anything), ``atol=1e-6`` for the samples.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.data import ArraySource, make_loader
from gensynth.diffusion import ddim_sample, diffusion_loss, linear_betas, vp_schedule
from gensynth.models import UNet
from gensynth.train import (
    create_train_state,
    data_sharding,
    make_mesh,
    make_optimizer,
    make_train_step,
    param_sharding,
    shard_batch,
    train_loop,
)

from .train_testkit import EMA_DECAY, OPTIMIZER, denoise_loss, example_images, fresh_copy, init_wide_model

NUM_STEPS, BATCH = 3, 16
METRIC_RTOL, PARAM_ATOL, OPT_STATE_RTOL, SAMPLE_ATOL = 1e-6, 2e-6, 1e-4, 1e-6
SCHEDULE = vp_schedule(linear_betas(1000))
UNET_OPTIMIZER = make_optimizer(1e-3)
# (num_devices, fsdp) of each mesh compared with one device.
MESHES = {"dp2": (2, 1), "dp4": (4, 1), "dp8": (8, 1), "fsdp2x4": (8, 4), "fsdp1x8": (8, 8)}


def init_unet() -> UNet:
    """A one-level U-Net (ResBlocks, mid attention): 46k parameters, 8x8 images. Drawn with an
    rbg key (its init compiles ~3x faster on CPU than threefry's; it runs on one device only)."""
    return UNet(
        1, 1, channels=16, channel_mult=(1,), num_res_blocks=1, attention_levels=(), head_dim=16, groups=4,
        rngs=nnx.Rngs(jax.random.key(0, impl="rbg")),
    )  # fmt: skip


def unet_loss(model, key, batch):
    return diffusion_loss(key, lambda x, t: model(x, t), batch["image"], SCHEDULE)


def _batches():
    images = example_images(NUM_STEPS * BATCH)
    return [{"image": images[i * BATCH : (i + 1) * BATCH]} for i in range(NUM_STEPS)]


def _train(mesh, state, graphdef):
    """NUM_STEPS steps on ``mesh`` from ``state``; returns the final state and each step's
    ``[loss, grad_norm]`` (``[NUM_STEPS, 2]``)."""
    train_step = make_train_step(graphdef, unet_loss, UNET_OPTIMIZER, ema_decay=EMA_DECAY, mesh=mesh)
    metrics_per_step = []
    for batch in _batches():
        state, metrics = train_step(state, shard_batch(batch, mesh))
        metrics_per_step.append([float(metrics["loss"]), float(metrics["grad_norm"])])
    return state, np.array(metrics_per_step)


@functools.cache
def _fresh_unet_state():
    """The step-0 U-Net state on a one-device mesh (its init compiles once)."""
    return create_train_state(jax.random.key(3), init_unet, UNET_OPTIMIZER, mesh=make_mesh(1))


@functools.cache
def _one_device_run():
    graphdef, state = _fresh_unet_state()
    return _train(make_mesh(1), fresh_copy(state), graphdef)


def _host(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]


def _assert_close(tree_a, tree_b, atol=0.0, rtol_of_max=0.0):
    """Leaf by leaf, ``|a - b| <= atol + rtol_of_max * max|b|``."""
    for a, b in zip(_host(tree_a), _host(tree_b), strict=True):
        np.testing.assert_allclose(a, b, atol=atol + rtol_of_max * np.max(np.abs(b), initial=0), rtol=0)


def _sharded_leaves(tree):
    return [leaf for leaf in jax.tree.leaves(tree) if not leaf.sharding.is_fully_replicated]


@pytest.mark.parametrize("name", MESHES)
def test_data_parallel_and_fsdp_match_one_device(name):
    num_devices, fsdp = MESHES[name]
    mesh = make_mesh(num_devices, fsdp=fsdp)
    graphdef, fresh = _fresh_unet_state()
    # A copy: device_put may alias the one-device buffers, and the train step donates its state.
    state, metrics = _train(mesh, fresh_copy(jax.device_put(fresh, param_sharding(fresh, mesh))), graphdef)
    state_1, metrics_1 = _one_device_run()

    np.testing.assert_allclose(metrics, metrics_1, rtol=METRIC_RTOL)
    assert int(state.step) == NUM_STEPS
    _assert_close(state.params, state_1.params, atol=PARAM_ATOL)
    _assert_close(state.ema_params, state_1.ema_params, atol=PARAM_ATOL)
    _assert_close(state.opt_state, state_1.opt_state, rtol_of_max=OPT_STATE_RTOL)
    # The state keeps the rule's sharding through the steps (no silent gather or replication).
    for leaf, expected in zip(jax.tree.leaves(state), jax.tree.leaves(param_sharding(state, mesh)), strict=True):
        assert leaf.sharding == expected
    if fsdp == 1:
        assert _sharded_leaves(state) == []
    else:
        kernel = state.params["up"][0]["res"]["in_conv"]["kernel"][...]  # [3, 3, 32, 16]
        assert kernel.sharding.spec == jax.P(None, None, "fsdp")
        assert {s.data.shape for s in kernel.addressable_shards} == {(3, 3, 32 // fsdp, 16)}
        mu = state.opt_state[1][0].mu["up"][0]["res"]["in_conv"]["kernel"][...]  # Adam's first moment
        assert mu.sharding == kernel.sharding
        num_params = sum(x.size for x in jax.tree.leaves(state.params))
        sharded = sum(x.size for x in _sharded_leaves(state.params))
        assert sharded > 0.9 * num_params  # all but the small leaves
        on_device_0 = sum(
            s.data.size
            for x in jax.tree.leaves(state.params)
            for s in x.addressable_shards
            if s.device == mesh.devices.flat[0]
        )
        assert on_device_0 == num_params - sharded + sharded // fsdp


def _make_sample_fn(graphdef, num_steps=4):
    """Jitted ``sample_fn(params, key, x_T) -> x_0`` (stochastic DDIM, eta=1, one program)."""

    @jax.jit
    def sample_fn(params, key, x_T):
        model = nnx.merge(graphdef, params)
        return ddim_sample(key, lambda x, t: model(x, t), SCHEDULE, None, num_steps=num_steps, eta=1.0, x_T=x_T)

    return sample_fn


def test_sharded_ddim_sampling_matches_one_device():
    num_devices, fsdp = 8, 2  # the batch split 8 ways over ("data", "fsdp"), the kernels 2 ways
    mesh = make_mesh(num_devices, fsdp=fsdp)
    graphdef, _ = _fresh_unet_state()
    params = _one_device_run()[0].params  # trained, so the head conv is no longer zero
    sample_fn = _make_sample_fn(graphdef)
    key, x_T = jax.random.key(7), jax.random.normal(jax.random.key(8), (BATCH, 8, 8, 1))

    x_1 = sample_fn(params, key, x_T)
    sharded_params = jax.device_put(params, param_sharding(params, mesh))
    assert len(_sharded_leaves(sharded_params)) > 0
    x_mesh = sample_fn(sharded_params, key, jax.device_put(x_T, data_sharding(mesh, 4)))
    assert len(x_mesh.sharding.device_set) == num_devices  # the batch stayed split: 2 images per device
    assert {s.data.shape[0] for s in x_mesh.addressable_shards} == {BATCH // num_devices}
    np.testing.assert_allclose(np.asarray(x_mesh), np.asarray(x_1), atol=SAMPLE_ATOL, rtol=0)
    assert float(jnp.std(x_1 - x_T)) > 0.1  # the chain moved


class CompileCounter:
    """Counts XLA compilations (``jax.monitoring``'s backend-compile events) per function name.

    A persistent-cache hit still goes through the event, so the count does not depend on
    whether this process or an earlier one compiled the program.
    """

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.names: list[str] = []

    def _listener(self, event, duration_secs, **kwargs):
        if event == self.EVENT:
            self.names.append(kwargs.get("fun_name", "?"))

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc_info):
        jax.monitoring.unregister_event_duration_listener(self._listener)

    def count(self, fun_name: str) -> int:
        return self.names.count(fun_name)


def test_fsdp_train_loop_and_sampler_compile_once():
    mesh = make_mesh(8, fsdp=4)
    graphdef, state = create_train_state(jax.random.key(1), init_wide_model, OPTIMIZER, mesh=mesh)
    assert len(_sharded_leaves(state.params)) == 2  # both kernels: the inputs of later steps must match
    train_step = make_train_step(graphdef, denoise_loss, OPTIMIZER, ema_decay=EMA_DECAY, mesh=mesh)
    loader = make_loader(ArraySource(example_images(32)), batch_size=8, seed=0)
    with CompileCounter() as compiles:
        state = train_loop(
            state,
            train_step,
            iter(loader),
            num_steps=6,
            shard_fn=functools.partial(shard_batch, mesh=mesh),
            log_every=2,
            progress=False,
        )
    assert int(state.step) == 6
    assert compiles.count("jit(single_step)") == 1, compiles.names

    @jax.jit
    def sample_fn(params, key, x_T):
        model = nnx.merge(graphdef, params)
        return ddim_sample(key, lambda x, t: model(x), SCHEDULE, None, num_steps=3, eta=1.0, x_T=x_T)

    x_T = jax.device_put(np.ones((8, 8, 8, 1), np.float32), data_sharding(mesh, 4))
    with CompileCounter() as compiles:
        samples = [sample_fn(state.params, jax.random.key(seed), x_T) for seed in (0, 1)]
    assert compiles.count("jit(sample_fn)") == 1, compiles.names
    assert not np.allclose(samples[0], samples[1])  # two real calls, different keys
