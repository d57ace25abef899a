"""Inverse-problem solvers: seconds per image, images/s and NFE/s of each gensynth solver at its
default NFE, next to deepinv's DPS with a U-Net of the same size, on the same machine in the
same run.

Task: single-coil Cartesian MRI, x4 ``gaussian1d`` mask, noiseless, on the middle MNI152 slice
at the model's image size; the unknown is a real image, wired as
``gensynth reconstruct --operator mri --mask gaussian1d`` wires it.

- gensynth: the recipe's U-Net (``--preset cpu``: 1.1 M parameters, 64 px, one channel) with
  random weights (timing does not depend on them) and each 2D solver of
  :data:`gensynth.recipes.reconstruct.SOLVERS` through ``reconstruct.run_solver`` at its
  defaults (projection and Score-ALD on the VE view of the VP network), under the project's
  XLA settings (:func:`gensynth.runtime.configure`) without the compilation cache. The volume
  solvers (3D DDS, DiffusionMBIR) are left out: per slice they cost what DDS and projection
  cost, plus their TV-z step. Each solve is AOT-compiled once with the parameters as
  arguments (``jax.jit(fn).lower(...).compile()``, timed apart; its ``memory_analysis()``
  recorded).
- peer (``_deepinv_peer.py``): ``deepinv.sampling.DPS`` with a diffusers U-Net of the same
  layout, in a worker under the peers' Python (``--peer-python``, else
  ``$GENSYNTH_PEER_PYTHON``, else this Python if it has torch, else skipped with a message).
  Timed runs alternate with the gensynth solvers, so machine load hits both alike.

``--quick K``: a solver whose default NFE exceeds ``--full-nfe`` runs K steps of its loop
(projection, Score-ALD: K noise levels with their corrector steps) and its time is scaled by
``NFE_default / NFE_measured`` (the same program per step); such rows say "extrapolated".

Usage (see benchmarks/README.md)::

  python benchmarks/inverse_solvers.py --quick 10 --peer-python ../peers-venv/bin/python

Writes ``OUT/inverse_solvers-TAG.json`` and ``.md`` (TAG: the JAX backend unless ``--tag``).
"""

from __future__ import annotations

import os

# Compile times are measured: no persistent cache (read when jax is imported; jax latches the
# cache on at its first compilation, which importing gensynth may already do).
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

from gensynth import runtime

runtime.configure()  # the project's XLA CPU flags, before jax starts its backend

import argparse
import datetime
import pathlib
import sys
import tempfile
from typing import Any

import _common as common
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.models.params import count_params
from gensynth.recipes import image_diffusion as recipe
from gensynth.recipes import reconstruct

HERE = pathlib.Path(__file__).resolve().parent
TASK = {
    "data": "mni152",
    "operator": "mri",
    "mask": "gaussian1d",
    "accel": 4.0,
    "noise": 0.0,
}
# deepinv's solver, compared with gensynth's solver of the same name, and gensynth's solver
# of its quality class, compared with it too
PEER_SOLVER, SAME_CLASS_SOLVER = "dps", "dds"
PACKAGES = ("gensynth", "jax", "jaxlib", "flax", "numpy")
SOLVERS = tuple(s for s in reconstruct.SOLVERS if s not in reconstruct.VOLUME_SOLVERS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--solvers", nargs="+", default=list(SOLVERS), help="solvers to run")
    add("--batch-sizes", nargs="+", type=int, default=[1, 4], help="batch sizes B")
    add("--quick", type=int, default=None, metavar="K", help="K steps, extrapolated")
    add("--full-nfe", type=int, default=200, help="--quick spares NFE up to this")
    add("--repeats", type=int, default=2, help="timed runs after one warm-up")
    add("--net-repeats", type=int, default=10, help="timed bare-network calls")
    add("--preset", choices=("cpu", "gpu"), default="cpu", help="recipe U-Net, size")
    add("--seed", type=int, default=0, help="seed of weights, mask and solvers")
    add("--peer-python", help=f"torch+deepinv Python (else ${common.ENV_PEER_PYTHON})")
    add("--no-peer", action="store_true", help="skip the deepinv peer")
    add("--peer-device", default="auto", help="auto (cuda if available), cpu, cuda")
    add("--peer-threads", type=int, default=common.usable_cores(), help="torch threads")
    add("--peer-omp-wait-policy", default="PASSIVE", help="'': torch's own (spins)")
    add("--out", default=str(HERE / "results"), help="output folder")
    add("--tag", help="file tag (default: the JAX backend, e.g. cpu or gpu)")
    args = p.parse_args(argv)
    if unknown := set(args.solvers) - set(SOLVERS):
        p.error(f"--solvers: unknown {sorted(unknown)}; expected some of {SOLVERS}")
    counts = {"--quick": args.quick, "--full-nfe": args.full_nfe}
    counts.update({"--repeats": args.repeats, "--net-repeats": args.net_repeats})
    counts["--peer-threads"] = args.peer_threads
    for name, value in counts.items():
        if value is not None and value < 1:
            p.error(f"{name} {value}: expected >= 1")
    if any(b < 1 for b in args.batch_sizes):
        p.error(f"--batch-sizes {args.batch_sizes}: expected positive sizes")
    return args


# ---------------------------------------------------------------- the peer


def start_peer(args, setup: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Starts the peer worker and sends ``setup``: ``(peer, its description)``, or
    ``(None, {"skipped": why})`` when it cannot run."""
    if args.no_peer:
        return None, {"skipped": "--no-peer"}
    python, source = common.find_peer_python(args.peer_python)
    if python is None:
        print(f"peer skipped: {source}", flush=True)
        return None, {"skipped": source}
    env = dict(os.environ)
    if args.peer_omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.peer_omp_wait_policy
    peer = None
    try:
        peer = common.PeerProcess([python, str(HERE / "_deepinv_peer.py")], env=env)
        info = peer.request({"cmd": "setup", **setup})
    except (OSError, RuntimeError) as e:
        if peer is not None:
            peer.close()
        why = f"{python} ({source}) could not run the deepinv peer: {e}"
        print(f"peer skipped: {why}", flush=True)
        return None, {"skipped": why}
    info.update(python_source=source, omp_wait_policy=env.get("OMP_WAIT_POLICY"))
    deepinv_version = info["versions"].get("deepinv")
    print(
        f"peer: deepinv {deepinv_version} on {info['device']} via {python}", flush=True
    )
    return peer, info


# ---------------------------------------------------------------- the gensynth side


def _flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return None if cost is None else cost.get("flops")


def _xla_memory(compiled) -> dict[str, int | None]:
    """Bytes from XLA's memory analysis; ``peak`` = arguments + outputs + temporaries -
    aliased."""
    m = compiled.memory_analysis()
    if m is None:
        return {"peak": None}
    kinds = ("argument", "output", "temp", "alias", "generated_code")
    out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in kinds}
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


class Gensynth:
    """The JAX side: random-weight U-Net, schedule, MRI operator and compiled solves."""

    def __init__(self, preset: str, seed: int):
        self.cfg = recipe.default_config(preset)
        if recipe.image_channels(self.cfg.data) != 1:
            raise ValueError(
                f"--preset {preset}: the MRI task needs a one-channel model"
            )
        model = recipe.build_model(self.cfg, jax.random.key(seed))
        self.params_count = count_params(model)
        self.graphdef, self.params = nnx.split(model)
        self.schedule = recipe.build_schedule(self.cfg.diffusion)
        self.prediction = self.cfg.diffusion.prediction
        size = self.cfg.data.image_size
        reference, _, _ = reconstruct.load_reference(TASK["data"], size, None)
        self.reference = reference  # [H, W] in [-1, 1]
        self.op, self.op_facts = reconstruct.build_operator(
            TASK["operator"], size, mask=TASK["mask"], accel=TASK["accel"], views=30,
            angle_range=180.0, seed=seed,
        )  # fmt: skip
        self.key = jax.random.key(seed)
        self.device = jax.devices()[0]

    def model_config(self) -> dict[str, Any]:
        """The U-Net layout the peer copies."""
        m = self.cfg.model
        return {
            "in_channels": 1,
            "out_channels": 2 if self.cfg.diffusion.hybrid_loss else 1,
            "channels": m.channels,
            "channel_mult": list(m.channel_mult),
            "num_res_blocks": m.num_res_blocks,
            "attention_levels": list(m.attention_levels),
            "head_dim": m.head_dim,
            "groups": m.groups,
            "dropout": m.dropout,
        }

    def batch(self, b: int) -> tuple[jax.Array, jax.Array]:
        """``(y [B, H, W] k-space, x_init [B, H, W] zero-filled)`` of B reference copies."""
        x = jnp.broadcast_to(jnp.asarray(self.reference), (b, *self.reference.shape))
        y = jax.vmap(self.op.A)(x)
        return y, jax.vmap(self.op.A_adjoint)(y)

    def make_solve_fn(self, solver: str, steps: int | None):
        """``(solve_fn(params, key, y, x_init) -> x [B, H, W], info)``; tracing ``solve_fn``
        fills ``info`` with the solve's ``nfe`` and ``vjps``."""
        info: dict[str, int] = {}

        def solve_fn(params, key, y, x_init):
            model = nnx.merge(self.graphdef, params)

            def model_fn(x, t):
                return model(x, t)

            with (
                jax.ensure_compile_time_eval()
            ):  # Score-ALD's wiring needs ||A|| concrete
                x, out = reconstruct.run_solver(
                    key, solver, model_fn, self.schedule, self.prediction, self.op, y,
                    x_init, steps=steps, noise=TASK["noise"],
                )  # fmt: skip
            info.update(nfe=out["nfe"], vjps=out["vjps"])
            return x

        return solve_fn, info

    def default_cost(self, solver: str, y, x_init) -> dict[str, int]:
        """NFE and VJPs of the solver at its defaults (traced, not compiled)."""
        solve_fn, info = self.make_solve_fn(solver, None)
        jax.eval_shape(solve_fn, self.params, self.key, y, x_init)
        return info

    def compile(self, solver: str, steps: int | None, y, x_init) -> dict[str, Any]:
        """AOT-compiles one solve: executable, compile seconds, nfe/vjps, XLA memory."""
        solve_fn, info = self.make_solve_fn(solver, steps)
        lowered = jax.jit(solve_fn).lower
        compiled, seconds = common.timed(
            lambda: lowered(self.params, self.key, y, x_init).compile()
        )
        memory = _xla_memory(compiled)
        return {
            "compiled": compiled,
            "compile_seconds": seconds,
            **info,
            "xla_memory": memory,
        }

    def run(self, compiled, y, x_init) -> tuple[float, int | None]:
        """One solve: ``(seconds, peak RSS rise in bytes)``."""

        def solve():
            return jax.block_until_ready(compiled(self.params, self.key, y, x_init))

        (_, seconds), rss = common.peak_rss_delta(lambda: common.timed(solve))
        return seconds, rss

    def network(self, b: int, repeats: int) -> dict[str, Any]:
        """Bare U-Net at batch B: forward and forward + VJP (w.r.t. the input) wall times
        after one warm-up call, and the forward FLOPs (XLA's cost analysis)."""
        size = self.cfg.data.image_size
        x = jnp.ones((b, size, size, 1))  # [B, H, W, C]
        t = jnp.full((b,), 500, jnp.int32)

        def forward(params, x, t):
            return nnx.merge(self.graphdef, params)(x, t)

        def forward_vjp(params, x, t):
            return jax.grad(lambda x: jnp.sum(forward(params, x, t) ** 2))(x)

        out: dict[str, Any] = {"params": self.params_count}
        for name, fn in (("forward", forward), ("forward_vjp", forward_vjp)):
            compiled = jax.jit(fn).lower(self.params, x, t).compile()
            if name == "forward":
                out["flops_forward"] = _flops(compiled)

            def call(compiled=compiled):
                return jax.block_until_ready(compiled(self.params, x, t))

            call()
            times = [common.timed(call)[1] for _ in range(repeats)]
            out[f"{name}_seconds"] = common.summarize(times)
        return out


# ---------------------------------------------------------------- measurement


def measured_steps(args, default_nfe: int) -> int | None:
    """Steps to run: None (the default, measured in full) unless ``--quick`` applies."""
    if args.quick is None or default_nfe <= args.full_nfe:
        return None
    return args.quick


def solver_record(impl: str, solver: str, b: int, plan: dict, net: dict, peak) -> dict:
    """One result row from a plan (``default`` and measured ``nfe``/``vjps``, ``times``,
    ``rss``): timings scaled to the default NFE, throughput, FLOP/s, MFU."""
    seconds = common.summarize(plan["times"])
    default = plan["default"]
    scale = default["nfe"] / plan["nfe"]
    batch_seconds = seconds["median"] * scale
    bare = net["forward_vjp_seconds" if plan["vjps"] else "forward_seconds"]["median"]
    flops = None
    if net.get("flops_forward"):
        network_calls = plan["nfe"] + 2 * plan["vjps"]  # a VJP costs about 2 forwards
        flops = network_calls * net["flops_forward"] / seconds["median"]
    rss = plan["rss"]
    return {
        "impl": impl,
        "solver": solver,
        "batch": b,
        "nfe_default": default["nfe"],
        "vjps_default": default["vjps"],
        "measured": {
            "steps": plan["steps"],
            "nfe": plan["nfe"],
            "vjps": plan["vjps"],
            "seconds": seconds,
        },
        "extrapolated": scale != 1,
        "seconds_per_batch": batch_seconds,
        "seconds_per_image": batch_seconds / b,
        "images_per_second": b / batch_seconds,
        "nfe_per_second": plan["nfe"] / seconds["median"],
        "seconds_per_nfe_over_bare_network": seconds["median"] / plan["nfe"] / bare,
        "compile_seconds": plan.get("compile_seconds"),
        "first_run_seconds": plan["first_run_seconds"],
        "xla_memory_bytes": plan.get("xla_memory"),
        "rss_peak_delta_bytes": None if None in rss else max(rss),
        "device_peak_bytes": plan.get("device_peak_bytes"),
        "model_flops_per_second": flops,
        "mfu": None if flops is None or peak is None else flops / peak,
    }


def _gensynth_plan(args, g: Gensynth, solver: str, b: int, y, x_init) -> dict:
    default = g.default_cost(solver, y, x_init)
    steps = measured_steps(args, default["nfe"])
    plan = g.compile(solver, steps, y, x_init)
    first, rss = g.run(plan["compiled"], y, x_init)
    plan.update(
        default=default, steps=steps, first_run_seconds=first, times=[], rss=[rss]
    )
    print(
        f"  B={b} {solver}: compiled in {plan['compile_seconds']:.1f} s, first run "
        f"{first:.2f} s ({plan['nfe']} NFE)",
        flush=True,
    )
    return plan


def _peer_dps(peer, plan: dict, b: int) -> None:
    reply = peer.request({"cmd": "dps", "batch": b, "steps": plan["steps"]})
    plan.update(nfe=reply["nfe"], vjps=reply["vjps"])
    plan.update(device_peak_bytes=reply["device_peak_bytes"])
    plan["times"].append(reply["seconds"])
    plan["rss"].append(reply["rss_peak_delta_bytes"])


def benchmark_batch(args, g: Gensynth, peer, b: int, nets: dict, peaks: dict) -> list:
    """Every solver (and the peer's DPS at gensynth DPS's measured NFE) at batch B:
    compile, one warm-up run, then ``--repeats`` rounds in which each runs once.
    ``nets`` and ``peaks`` (peak FLOP/s or None) are keyed by implementation."""
    y, x_init = g.batch(b)
    plans = {s: _gensynth_plan(args, g, s, b, y, x_init) for s in args.solvers}
    peer_plan = None
    if peer is not None and PEER_SOLVER in plans:
        dps = plans[PEER_SOLVER]
        peer_plan = {
            "default": dps["default"],
            "steps": dps["nfe"],
            "times": [],
            "rss": [],
        }
        _peer_dps(peer, peer_plan, b)
        peer_plan["first_run_seconds"] = peer_plan["times"].pop()
        print(
            f"  B={b} deepinv dps: first run {peer_plan['first_run_seconds']:.2f} s",
            flush=True,
        )
    for _ in range(args.repeats):
        for plan in plans.values():
            seconds, rss = g.run(plan["compiled"], y, x_init)
            plan["times"].append(seconds)
            plan["rss"].append(rss)
        if peer_plan is not None:
            _peer_dps(peer, peer_plan, b)
    net, peak = nets[("gensynth", b)], peaks["gensynth"]
    rows = [solver_record("gensynth", s, b, p, net, peak) for s, p in plans.items()]
    if peer_plan is not None:
        net, peak = nets[("deepinv", b)], peaks["deepinv"]
        rows.append(solver_record("deepinv", PEER_SOLVER, b, peer_plan, net, peak))
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """gensynth s/image over deepinv DPS s/image at each batch (below 1: gensynth faster)."""
    by = {(r["impl"], r["solver"], r["batch"]): r for r in rows}
    out = []
    for (impl, solver, b), peer in by.items():
        if impl != "deepinv":
            continue
        pairs = (
            (PEER_SOLVER, "same solver"),
            (SAME_CLASS_SOLVER, "same quality class"),
        )
        for mine, kind in pairs:
            if ("gensynth", mine, b) not in by:
                continue
            ours = by[("gensynth", mine, b)]
            out.append(
                {
                    "comparison": f"gensynth {mine} / deepinv {solver}",
                    "kind": kind,
                    "batch": b,
                    "nfe": [ours["nfe_default"], peer["nfe_default"]],
                    "gensynth_seconds_per_image": ours["seconds_per_image"],
                    "deepinv_seconds_per_image": peer["seconds_per_image"],
                    "ratio": ours["seconds_per_image"] / peer["seconds_per_image"],
                    "extrapolated": ours["extrapolated"] or peer["extrapolated"],
                }
            )
    return out


# ---------------------------------------------------------------- report


def _mib(v: int | None) -> float | None:
    return None if v is None else v / common.MIB


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _source(r: dict[str, Any]) -> str:
    m = r["measured"]
    if not r["extrapolated"]:
        return f"measured ({m['nfe']} NFE)"
    return f"extrapolated from {m['steps']} steps ({m['nfe']} NFE)"


def _header(record: dict[str, Any]) -> list[str]:
    """The markdown report's first lines: when, where, what."""
    cfg, mach, peer = record["config"], record["machine"], record["peer"]
    jv, pv, git = (
        record["versions"]["gensynth"],
        peer.get("versions") or {},
        record["git"],
    )
    load = {
        k: ", ".join(f"{v:.2f}" for v in vs) for k, vs in record["load_average"].items()
    }
    task = cfg["task"]
    if "skipped" in peer:
        peer_line = f"- peer: skipped ({peer['skipped']})"
    else:
        peer_line = (
            f"- peer: deepinv {pv.get('deepinv')}, torch {pv.get('torch')}, "
            f"diffusers {pv.get('diffusers')} on {peer['device']} "
            f"({peer['torch_threads']} threads)"
        )
    return [
        f"# Inverse solvers: gensynth vs deepinv DPS ({record['tag']})",
        "",
        f"{record['created']} · `{' '.join(record['command'])}`",
        "",
        (
            f"- machine: {mach['cpu']}, {mach['usable_cpus']} usable cores, JAX device "
            f"{record['jax_device']}; load average (1/5/15 min) start {load['start']}, "
            f"end {load['end']}"
        ),
        (
            f"- gensynth {jv['gensynth']} (git {str(git['commit'])[:8]}"
            f"{', dirty tree' if git['dirty'] else ''}), jax {jv['jax']}, "
            f"jaxlib {jv['jaxlib']}, flax {jv['flax']}"
        ),
        peer_line,
        (
            f"- task: {task['operator']} x{task['accel']:g} {task['mask']} (effective "
            f"x{task['accel_effective']:g}), {cfg['image_size']} px, real unknown, noiseless"
        ),
        (
            f"- U-Net: gensynth {_count(cfg['params']['gensynth'])} parameters, peer "
            f"(diffusers UNet2DModel) {_count(cfg['params'].get('deepinv'))}; random "
            f"weights; {cfg['model']['compute_dtype']}, {cfg['prediction']}-prediction"
        ),
        (
            f"- timings: median of {cfg['repeats']} runs after one warm-up, solvers and "
            f"peer alternating; --quick {cfg['quick']} (solvers over {cfg['full_nfe']} "
            "NFE run K steps, scaled to their default NFE)"
        ),
    ]


SOLVER_LEGEND = (
    "NFE/s: network calls (each on the whole batch) per second. x bare net: seconds per "
    "NFE inside the solver over one bare network call at the same batch (forward + VJP "
    "for solvers with VJPs, forward otherwise). XLA peak: arguments + outputs + "
    "temporaries of the compiled solve. RSS rise: peak resident set during a run above "
    "the resident set before it. GFLOP/s: network FLOPs (forward from XLA's or torch's "
    "counter, a VJP counted as 2 forwards) per second."
)


NETWORK_LEGEND = (
    "Measured before the solvers, gensynth then the peer at each batch size (not "
    "interleaved); medians of --net-repeats calls after warm-up. GFLOP/forward: XLA's "
    "cost analysis (every op) for gensynth, torch's FLOP counter (matmuls and "
    "convolutions) for the peer."
)


def _solver_table(record: dict[str, Any]) -> str:
    cols = [
        "impl",
        "solver",
        "B",
        "NFE (VJPs)",
        "s/image",
        "images/s",
        "NFE/s",
        "x bare net",
        "compile s",
        "XLA peak MiB",
        "RSS rise MiB",
        "GFLOP/s",
        "source",
    ]
    rows = []
    for r in record["solvers"]:
        flops = r["model_flops_per_second"]
        rows.append(
            [
                r["impl"],
                r["solver"],
                r["batch"],
                f"{r['nfe_default']} ({r['vjps_default']})",
                r["seconds_per_image"],
                r["images_per_second"],
                r["nfe_per_second"],
                r["seconds_per_nfe_over_bare_network"],
                r["compile_seconds"],
                _mib((r["xla_memory_bytes"] or {}).get("peak")),
                _mib(r["rss_peak_delta_bytes"]),
                None if flops is None else flops / 1e9,
                _source(r),
            ]
        )
    return common.markdown_table(cols, rows)


def _ratio_table(record: dict[str, Any]) -> str:
    cols = [
        "comparison",
        "kind",
        "B",
        "NFE",
        "gensynth s/image",
        "deepinv s/image",
        "ratio",
        "extrapolated",
    ]
    rows = [
        [
            r["comparison"],
            r["kind"],
            r["batch"],
            f"{r['nfe'][0]} / {r['nfe'][1]}",
            r["gensynth_seconds_per_image"],
            r["deepinv_seconds_per_image"],
            r["ratio"],
            "yes" if r["extrapolated"] else "no",
        ]
        for r in record["ratios"]
    ]
    return common.markdown_table(cols, rows)


def _network_table(record: dict[str, Any]) -> str:
    cols = ["impl", "B", "params", "GFLOP/forward", "forward ms", "forward+VJP ms"]
    rows = [
        [
            n["impl"],
            n["batch"],
            n["params"],
            None if n["flops_forward"] is None else n["flops_forward"] / 1e9,
            n["forward_seconds"]["median"] * 1e3,
            n["forward_vjp_seconds"]["median"] * 1e3,
        ]
        for n in record["network"]
    ]
    return common.markdown_table(cols, rows)


def sections(record: dict[str, Any], level: int = 2) -> list[str]:
    """The report's body as markdown lines, headings at ``level``: solver table, ratios, bare
    network, notes (``benchmarks/suite.py`` nests them under its own heading)."""
    h = "#" * level
    lines = ["", f"{h} Solvers at their default NFE", "", _solver_table(record), ""]
    lines += [SOLVER_LEGEND]
    if record["ratios"]:
        title = "Ratios: gensynth s/image / deepinv s/image (below 1: gensynth faster)"
        lines += ["", f"{h} {title}", "", _ratio_table(record)]
    lines += [
        "",
        f"{h} Bare network (outside any solver loop)",
        "",
        _network_table(record),
        "",
        NETWORK_LEGEND,
    ]
    if record["notes"]:
        lines += ["", f"{h} Notes", ""] + [f"- {n}" for n in record["notes"]]
    return lines


def markdown(record: dict[str, Any]) -> str:
    """The results as a markdown report: header, solver table, ratios, bare network, notes."""
    return "\n".join(_header(record) + sections(record))


def notes(record: dict[str, Any]) -> list[str]:
    """Automatic remarks: parameter mismatch, devices that differ, slow solver loops."""
    out = []
    params = record["config"]["params"]
    if params.get("deepinv") and abs(params["deepinv"] / params["gensynth"] - 1) > 0.1:
        out.append(f"U-Net sizes differ by more than 10%: {params}")
    peer = record["peer"]
    if "device" in peer and (peer["device"] == "cpu") != (record["backend"] == "cpu"):
        out.append(
            f"JAX runs on {record['backend']} but the peer on {peer['device']}: the ratio compares devices"
        )
    for r in record["solvers"]:
        if r["seconds_per_nfe_over_bare_network"] > 2:
            out.append(
                f"{r['impl']} {r['solver']} B={r['batch']}: one NFE inside the solver costs "
                f"{r['seconds_per_nfe_over_bare_network']:.1f}x a bare network call"
            )
    return out


def measure(args) -> dict[str, Any]:
    """Runs the benchmark; returns its JSON record."""
    load_start = os.getloadavg()
    g = Gensynth(args.preset, args.seed)
    backend = jax.default_backend()
    tag = args.tag or backend
    peak = common.peak_flops(g.device.device_kind, g.cfg.train.compute_dtype)
    with tempfile.TemporaryDirectory() as scratch:
        arrays = pathlib.Path(scratch) / "task.npz"  # what the peer needs of the task
        np.savez(
            arrays,
            mask=np.asarray(g.op.op.mask, np.float32),  # [H, W]
            reference=np.asarray(g.reference, np.float32),  # [H, W] in [-1, 1]
            alpha_bar=np.asarray(g.schedule.alpha_bar, np.float64),  # [T]
        )
        setup = {"device": args.peer_device, "threads": args.peer_threads}
        setup.update(seed=args.seed, model=g.model_config(), prediction=g.prediction)
        peer, peer_info = start_peer(args, {**setup, "arrays": str(arrays)})
        peer_kind = peer_info.get("device_name", "")
        peaks = {"gensynth": peak, "deepinv": common.peak_flops(peer_kind, "float32")}
        try:
            nets = {}
            for b in args.batch_sizes:
                nets[("gensynth", b)] = {"impl": "gensynth", "batch": b}
                nets[("gensynth", b)].update(g.network(b, args.net_repeats))
                if peer is not None:
                    reply = peer.request(
                        {"cmd": "network", "batch": b, "repeats": args.net_repeats}
                    )
                    nets[("deepinv", b)] = {"impl": "deepinv", "batch": b, **reply}
            rows = []
            for b in args.batch_sizes:
                rows += benchmark_batch(args, g, peer, b, nets, peaks)
        finally:
            if peer is not None:
                peer.close()
    record = {
        "benchmark": "inverse_solvers",
        "tag": tag,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": ["python", *sys.argv],
        "backend": backend,
        "jax_device": g.device.device_kind,
        "machine": common.machine(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "versions": {
            "gensynth": common.package_versions(PACKAGES),
            "peer": peer_info.get("versions"),
        },
        "git": common.git_revision(HERE.parent),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "config": {
            "task": {**TASK, "accel_effective": g.op_facts["accel_effective"]},
            "image_size": g.cfg.data.image_size,
            "preset": args.preset,
            "model": {**g.model_config(), "compute_dtype": g.cfg.train.compute_dtype},
            "prediction": g.prediction,
            "params": {"gensynth": g.params_count, "deepinv": peer_info.get("params")},
            "solvers": args.solvers,
            "batch_sizes": args.batch_sizes,
            "quick": args.quick,
            "full_nfe": args.full_nfe,
            "repeats": args.repeats,
            "seed": args.seed,
            "peak_flops": peaks,
        },
        "peer": peer_info,
        "network": list(nets.values()),
        "solvers": rows,
        "ratios": ratios(rows),
        "jax_device_peak_bytes": (g.device.memory_stats() or {}).get(
            "peak_bytes_in_use"
        ),
    }
    record["notes"] = notes(record)
    return record


def drive(args) -> None:
    """Runs the benchmark and writes the results."""
    record = measure(args)
    tag = record["tag"]
    text = markdown(record)
    paths = common.write_results(args.out, f"inverse_solvers-{tag}", record, text)
    print(text)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")


def main(argv: list[str] | None = None) -> None:
    drive(parse_args(argv))


if __name__ == "__main__":
    main()
