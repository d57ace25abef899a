"""Memory and FLOPs of one 3D diffusion train step: pixel space, wavelet space (WDM) and latent space.

For volumes of side R (one channel) the same U-Net is compiled ahead of time into the whole train
step (forward, backward, gradient clipping, AdamW, EMA: ``gensynth.train.make_train_step``) on
three inputs of batch B:

- ``pixel``:   ``[B, R, R, R, 1]``, a voxel-space DDPM;
- ``wavelet``: ``[B, R/2, R/2, R/2, 8]``, WDM: one level of the 3D Haar DWT (8 sub-bands);
- ``latent``:  ``[B, R/4, R/4, R/4, 4]``, an LDM on the latents of an f = 4 autoencoder with 4
  channels, taken as cached: the autoencoder (its training, or encoding each batch) is not counted.

each with and without rematerialisation (``UNet(remat=True)``: every ResBlock stage recomputed in
the backward pass) and with float32 or bfloat16 compute (float32 parameters and optimiser state).
Nothing runs: the numbers are XLA's ``memory_analysis`` and ``cost_analysis`` of the compiled
programs (``gensynth.train.compile_aot``), so 128^3 volumes cost only compile time on a CPU.

- ``temp``: scratch memory of the step (activations kept for the backward pass, workspaces);
- ``peak``: ``arguments + outputs - aliased + temp``, the bytes the step holds at once at most
  (train state and batch in, new state out, the donated state reused in place). XLA's own
  ``peak_memory_in_bytes`` is kept in the JSON (``peak_bytes``); on CPU it reports the arguments only;
- ``GFLOP``: XLA's FLOP count of one step (remat adds the recomputed forward passes).

On CPU the step is compiled with XLA's memory-minimising scheduler
(``--xla_cpu_enable_concurrency_optimized_scheduler=false``): the default CPU scheduler orders for
parallelism and moves the recomputation of remat back into the forward pass, which cancels its
saving (equal temp bytes with and without remat); GPU backends schedule for memory already. The
programs are never run, so their machine code is not optimised (``--xla_backend_optimization_level=0``,
about 40% less compile time on CPU); memory and FLOPs come from the HLO and do not change with it.
CPU numbers include XLA CPU's own convolution workspaces (e.g. eight phase-split copies, each
``[B, R/2 + 1, ..., 2, 2, 2, C]``, made for a resampling convolution's gradient), which GPU
backends lower differently. They (and the decoder's concatenated inputs) stay live across the backward pass whether or not the
ResBlock stages are rematerialised, so on CPU remat saves far less of the step's temp bytes (float32
pixel space at 64^3: -1.3%; bfloat16: -26%) than of a stack of six 3D ResBlocks alone (88 -> 56 MiB).

Programs are compiled without remat first (float32, then bfloat16; every R and space), then with
it, until ``--max-minutes`` has passed; the rest are listed as skipped.

Usage::

  python benchmarks/memory_3d.py                   # R = 64 and 128: 24 programs, stops after 9 minutes
  python benchmarks/memory_3d.py --max-minutes 35  # the committed CPU run: 22 of 24 programs, 40-120 s
                                                   # each on 2 shared cores (load 10-16)

Writes ``OUT/memory_3d-TAG.json`` and ``.md`` (TAG: the JAX backend unless ``--tag``).
"""

from __future__ import annotations

import os

os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"  # compile times are reported
for _flag in ("--xla_cpu_enable_concurrency_optimized_scheduler=false", "--xla_backend_optimization_level=0"):
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

from gensynth import runtime

runtime.configure()  # the project's XLA CPU flags, before jax starts its backend

import argparse
import dataclasses
import datetime
import pathlib
import sys
import time

import _common as common
import jax
import jax.numpy as jnp
from flax import nnx

from gensynth import diffusion, models, train

HERE = pathlib.Path(__file__).resolve().parent
PACKAGES = ("gensynth", "jax", "jaxlib", "flax", "optax", "numpy")
# The U-Net shared by the three spaces (only its input and output channels differ).
UNET = {"channels": 32, "channel_mult": (1, 2, 2, 4), "num_res_blocks": 1, "attention_levels": (), "head_dim": 32,
        "groups": 16}  # fmt: skip
# space -> (spatial downsampling factor, channels) of the diffused tensor for a one-channel volume
SPACES = {"pixel": (1, 1), "wavelet": (2, 8), "latent": (4, 4)}
DTYPES = ("float32", "bfloat16")
SCHEDULE = diffusion.vp_schedule(diffusion.linear_betas(1000))
OPTIMIZER = train.make_optimizer(1e-4)
MIB, GIB = 2**20, 2**30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="volume sides R (default: 64 128)")
    parser.add_argument("--batch", type=int, default=1, help="volumes per step B (default: 1)")
    parser.add_argument("--max-minutes", type=float, default=9.0,
                        help="stop compiling new programs after this long; the rest are listed as skipped")
    parser.add_argument("--out", default=str(HERE / "results"), help="output folder (default: benchmarks/results)")
    parser.add_argument("--tag", help="file tag (default: the JAX backend, e.g. cpu)")
    return parser.parse_args(argv)  # fmt: skip


def _loss_fn(model, key, batch):
    return diffusion.diffusion_loss(key, lambda x, t: model(x, t), batch["image"], SCHEDULE)


def compile_step(space: str, size: int, batch: int, dtype: str, remat: bool) -> train.CompileStats:
    """Compiles the train step of the shared U-Net on ``space``'s tensor for volumes of side ``size``."""
    factor, channels = SPACES[space]
    side = size // factor

    def init_model():
        return models.UNet(channels, channels, spatial_dims=3, remat=remat, dtype=jnp.dtype(dtype),
                           rngs=nnx.Rngs(0), **UNET)  # fmt: skip

    graphdef = nnx.split(nnx.eval_shape(init_model))[0]
    abstract_state = jax.eval_shape(lambda k: train.create_train_state(k, init_model, OPTIMIZER)[1], jax.random.key(0))
    step = train.make_train_step(graphdef, _loss_fn, OPTIMIZER, compute_dtype=jnp.dtype(dtype))
    image = jax.ShapeDtypeStruct((batch, side, side, side, channels), jnp.float32)
    return train.compile_aot(step, abstract_state, {"image": image})[1]


def peak_bytes(stats: train.CompileStats) -> int | None:
    """Arguments + outputs - aliased + temp (None when the backend reports none of them)."""
    parts = (stats.argument_bytes, stats.output_bytes, stats.alias_bytes, stats.temp_bytes)
    if any(p is None for p in parts):
        return None
    arguments, outputs, aliased, temp = parts
    return arguments + outputs - aliased + temp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if any(size % 32 for size in args.sizes):
        raise SystemExit(f"--sizes {args.sizes}: each R must be divisible by 32 (latent R/4 over 4 U-Net levels)")
    began = time.perf_counter()
    num_params = {space: models.count_params(nnx.eval_shape(lambda c=c: models.UNet(c, c, spatial_dims=3,
                  rngs=nnx.Rngs(0), **UNET))) for space, (_, c) in SPACES.items()}  # fmt: skip
    results, skipped = [], []
    configs = [
        {"size": size, "space": space, "dtype": dtype, "remat": remat}
        for remat in (False, True) for dtype in DTYPES for size in sorted(args.sizes) for space in SPACES
    ]  # fmt: skip
    for config in configs:
        if time.perf_counter() - began > 60 * args.max_minutes:
            skipped.append(config)
            continue
        stats = compile_step(config["space"], config["size"], args.batch, config["dtype"], config["remat"])
        results.append({**config, **dataclasses.asdict(stats), "peak_estimate_bytes": peak_bytes(stats)})
        print(f"{config}: temp {stats.temp_bytes / MIB:.1f} MiB, compile {stats.compile_s:.1f} s", flush=True)
    seconds = time.perf_counter() - began

    tag = args.tag or jax.default_backend()
    markdown = report(results, skipped, args, num_params, seconds)
    print(markdown)
    record = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv]),
        "tag": tag,
        "backend": jax.default_backend(),
        "jax_device": str(jax.devices()[0]),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": common.machine(),
        "versions": common.package_versions(PACKAGES),
        "git": common.git_revision(HERE.parent),
        "config": {
            "unet": {**UNET, "spatial_dims": 3, "remat_policy": "nothing_saveable (remat=True)"},
            "num_params": num_params,
            "spaces": {name: {"downsampling": f, "channels": c} for name, (f, c) in SPACES.items()},
            "batch": args.batch,
            "step": "diffusion_loss (eps, linear betas, T = 1000) + grad + clip + AdamW + EMA, state donated",
        },
        "results": results,
        "skipped": skipped,
        "seconds": round(seconds, 1),
    }
    paths = common.write_results(args.out, f"memory_3d-{tag}", record, markdown)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _scaled(row: dict | None, key: str, unit: float = 1.0) -> float | None:
    """``row[key] / unit``, or None when the row or its value is missing."""
    return None if row is None or row[key] is None else row[key] / unit


def report(results, skipped, args, num_params, seconds) -> str:
    """One table per R: memory (no remat / remat) and FLOPs per space and dtype, with ratios to pixel space."""
    u = UNET
    lines = [
        "# Memory and FLOPs of one 3D diffusion train step: pixel vs wavelet (WDM) vs latent space",
        "",
        (
            f"The same 3D U-Net (base width {u['channels']}, multipliers {list(u['channel_mult'])}, "
            f"{u['num_res_blocks']} res block per level, attention only in the middle block, "
            f"{num_params['pixel'] / 1e6:.2f} M parameters with 1 channel in and out) trained on "
            f"`pixel` [B, R, R, R, 1], `wavelet` [B, R/2, R/2, R/2, 8] (one Haar DWT level) and `latent` "
            f"[B, R/4, R/4, R/4, 4] (cached latents of an f = 4 autoencoder; the autoencoder is not counted). "
            f"B = {args.batch}. Whole train step (forward, backward, clip, AdamW, EMA) compiled ahead of time "
            f"and not run; memory and FLOPs from XLA's analyses (`{jax.default_backend()}` backend"
            f"{', memory-minimising scheduler' if jax.default_backend() == 'cpu' else ''}). "
            f"`remat`: every ResBlock stage recomputed in the backward pass (`UNet(remat=True)`). "
            f"{len(results)} programs compiled in {seconds:.0f} s."
        ),
    ]
    columns = ["space", "dtype", "temp GiB", "temp GiB (remat)", "peak GiB", "peak GiB (remat)", "GFLOP",
               "GFLOP (remat)", "peak / pixel peak", "compile s"]  # fmt: skip
    for size in sorted({r["size"] for r in results}):
        picked = {(r["space"], r["dtype"], r["remat"]): r for r in results if r["size"] == size}
        rows = []
        for space in SPACES:
            for dtype in DTYPES:
                plain, remat = picked.get((space, dtype, False)), picked.get((space, dtype, True))
                if plain is None:
                    continue
                reference = picked.get(("pixel", dtype, False))
                peak, pixel_peak = _scaled(plain, "peak_estimate_bytes"), _scaled(reference, "peak_estimate_bytes")
                rows.append([
                    space, dtype, _scaled(plain, "temp_bytes", GIB), _scaled(remat, "temp_bytes", GIB),
                    _scaled(plain, "peak_estimate_bytes", GIB), _scaled(remat, "peak_estimate_bytes", GIB),
                    _scaled(plain, "flops", 1e9), _scaled(remat, "flops", 1e9),
                    None if peak is None or not pixel_peak else peak / pixel_peak, round(plain["compile_s"], 1),
                ])  # fmt: skip
        lines += ["", f"## R = {size} (volumes {size}^3)", "", common.markdown_table(columns, rows)]
    plain_temp = {(r["size"], r["space"], r["dtype"]): r["temp_bytes"] for r in results if not r["remat"]}
    changes = [r["temp_bytes"] / plain_temp[key] - 1 for r in results
               if r["remat"] and (key := (r["size"], r["space"], r["dtype"])) in plain_temp]  # fmt: skip
    if changes:
        change = f"{100 * min(changes):+.1f}% to {100 * max(changes):+.1f}%"
        lines += ["", f"Remat changes the temp bytes by {change} ({len(changes)} pairs) and adds recomputed FLOPs."]
    if skipped:
        listed = ", ".join(f"{c['space']} {c['dtype']} R={c['size']}{' remat' if c['remat'] else ''}" for c in skipped)
        lines += ["", f"Skipped (past --max-minutes {args.max_minutes}): {listed}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
