"""The gensynth side of ``suite.py``: each workload compiled ahead of time, ready to time.

The network is the suite's layout built exactly as MONAI's ``DiffusionModelUNet`` builds it
(``gensynth.models.monai_unet_kwargs``: additive time conditioning, GroupNorm eps 1e-6; the
diffusers layout differs only in that eps, which costs nothing), with random weights, in
``dtype``, eps-prediction on DDPM's linear schedule (T = 1000, the peers' defaults).

- train: ``gensynth.train.make_train_step`` (AdamW after clipping to norm 1, EMA 0.999) of
  ``diffusion_loss``, on one device, state donated; FLOPs from XLA's cost analysis of the
  whole step.
- ddim: ``diffusion.ddim_sample`` (eta 0, x0 clipped) over K steps, one program; FLOPs per
  step = one forward (XLA's cost analysis of the bare network; that of the sampler counts
  its loop body once).
- pc: ``diffusion.pc_sample`` on the VE view of the VP network
  (``reconstruct.make_ve_score_fn``, as score-MRI samples), snr 0.16, K levels.

Each program is compiled with ``gensynth.train.compile_aot`` (lower + compile timed, XLA's
FLOPs and memory read from the executable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import suites
from flax import nnx

from gensynth import diffusion, models, train
from gensynth.recipes import reconstruct

NUM_TIMESTEPS = 1000
LEARNING_RATE = 1e-4
EMA_DECAY = 0.999
PC_SNR = 0.16  # score-MRI's Langevin signal-to-noise ratio


@dataclasses.dataclass
class Program:
    """One compiled workload: ``run()`` makes ``steps`` steps and blocks until done."""

    run: Callable[[], Any]
    steps: int  # steps per call: 1 optimiser step, or K sampler steps
    nfe_per_step: int  # network calls per step (train: 1 forward + backward)
    stats: train.CompileStats
    flops_per_step: float | None  # XLA's cost analysis; None if the backend has none
    params: int


def unet_kwargs(net: suites.Net, spatial_dims: int) -> dict[str, Any]:
    """``UNet`` keyword arguments equal to MONAI's ``DiffusionModelUNet`` of ``net``."""
    return models.monai_unet_kwargs(net.monai_config(spatial_dims))


def unet_params(net: suites.Net, spatial_dims: int) -> int:
    """Parameter count of the network (from shapes; nothing is computed)."""
    kwargs = unet_kwargs(net, spatial_dims)
    return models.count_params(
        nnx.eval_shape(lambda: models.UNet(**kwargs, rngs=nnx.Rngs(0)))
    )


def _schedule() -> diffusion.VPSchedule:
    return diffusion.vp_schedule(diffusion.linear_betas(NUM_TIMESTEPS))


def _build(net: suites.Net, spatial_dims: int, dtype: str, seed: int):
    """``(graphdef, params, count)`` of the network with random weights."""
    model = models.UNet(
        **unet_kwargs(net, spatial_dims), dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed)
    )
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, params, models.count_params(model)


def xla_memory(stats: train.CompileStats) -> dict[str, int | None]:
    """XLA's memory analysis in bytes; ``peak`` = arguments + outputs + temporaries -
    aliased (as ``inverse_solvers.py``), ``reported_peak`` XLA's own figure (on CPU it
    leaves out the temporaries)."""
    out = {
        "argument": stats.argument_bytes,
        "output": stats.output_bytes,
        "temp": stats.temp_bytes,
        "alias": stats.alias_bytes,
    }
    parts = list(out.values())
    out["peak"] = None if None in parts else parts[0] + parts[1] + parts[2] - parts[3]
    return {**out, "reported_peak": stats.peak_bytes}


def compile_train(net: suites.Net, w: suites.Train, dtype: str, seed: int) -> Program:
    """One optimiser step of the eps loss on a fixed batch ``[B, *S, 1]`` in [-1, 1]."""
    kwargs = unet_kwargs(net, w.spatial_dims)
    optimizer = train.make_optimizer(LEARNING_RATE, clip_norm=1.0)
    key = jax.random.key(seed)
    graphdef, state = train.create_train_state(
        key,
        lambda: models.UNet(**kwargs, dtype=jnp.dtype(dtype), rngs=nnx.Rngs(seed)),
        optimizer,
    )
    schedule = _schedule()

    def loss_fn(model, key, batch):
        return diffusion.diffusion_loss(
            key, lambda x, t: model(x, t), batch["image"], schedule, prediction="eps"
        )

    step_fn = train.make_train_step(
        graphdef,
        loss_fn,
        optimizer,
        ema_decay=EMA_DECAY,
        compute_dtype=jnp.dtype(dtype),
    )
    shape = (w.batch, *[w.size] * w.spatial_dims, 1)  # [B, *S, C]
    batch = {"image": jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)}
    compiled, stats = train.compile_aot(step_fn, state, batch)
    params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    holder = {"state": state}  # the step donates its input state

    def run():
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready((holder["state"], metrics))

    return Program(run, 1, 1, stats, stats.flops, params)


class Samplers:
    """DDIM and PC programs of one network on ``[B, S, S, 1]`` images; the bare forward's
    FLOPs are computed once per shape."""

    def __init__(self, net: suites.Net, dtype: str, seed: int):
        self.graphdef, self.params, self.count = _build(net, 2, dtype, seed)
        self.schedule = _schedule()
        self.key = jax.random.key(seed)
        self._flops: dict[tuple[int, ...], float | None] = {}

    def forward_flops(self, shape: tuple[int, ...]) -> float | None:
        """XLA's FLOPs of one forward on ``shape`` ``[B, H, W, C]``, from the lowered
        program (no compile: within 1 % of the compiled count for the reference U-Net)."""
        if shape not in self._flops:
            graphdef = self.graphdef

            def forward(params, x, t):
                return nnx.merge(graphdef, params)(x, t)

            x = jax.ShapeDtypeStruct(shape, jnp.float32)
            t = jax.ShapeDtypeStruct(shape[:1], jnp.int32)
            cost = jax.jit(forward).lower(self.params, x, t).cost_analysis()
            self._flops[shape] = None if cost is None else cost.get("flops")
        return self._flops[shape]

    def _program(self, sample_fn, shape, steps: int, nfe_per_step: int) -> Program:
        compiled, stats = train.compile_aot(jax.jit(sample_fn), self.params, self.key)

        def run():
            jax.block_until_ready(compiled(self.params, self.key))

        flops = self.forward_flops(shape)
        flops = None if flops is None else nfe_per_step * flops
        return Program(run, steps, nfe_per_step, stats, flops, self.count)

    def ddim(self, w: suites.DDIM, steps: int) -> Program:
        """``steps``-step deterministic DDIM from ``x_T ~ N(0, I)``."""
        graphdef, schedule = self.graphdef, self.schedule
        shape = (w.batch, w.size, w.size, 1)  # [B, H, W, C]

        def sample_fn(params, key):
            model = nnx.merge(graphdef, params)
            return diffusion.ddim_sample(
                key, lambda x, t: model(x, t), schedule, shape, num_steps=steps,
                prediction="eps",
            )  # fmt: skip

        return self._program(sample_fn, shape, steps, 1)

    def pc(self, w: suites.PC, steps: int) -> Program:
        """Predictor-corrector over ``steps`` noise levels, ``w.n_corrector`` Langevin steps
        each."""
        graphdef, schedule = self.graphdef, self.schedule
        shape = (w.batch, w.size, w.size, 1)  # [B, H, W, C]

        def sample_fn(params, key):
            model = nnx.merge(graphdef, params)
            score_fn, sde = reconstruct.make_ve_score_fn(
                lambda x, t: model(x, t), schedule, "eps"
            )
            return diffusion.pc_sample(
                key, score_fn, sde, shape, num_steps=steps, n_corrector=w.n_corrector,
                snr=PC_SNR,
            )  # fmt: skip

        return self._program(sample_fn, shape, steps, 1 + w.n_corrector)
