"""Benchmark suites: gensynth's U-Net train step, DDIM and PC sampling and MRI solves, next to
the PyTorch peers (MONAI, diffusers, deepinv) on the same machine, in the same run.

Usage (see benchmarks/README.md)::

  gensynth bench --suite quick --peer-python ../peers-venv/bin/python
  python benchmarks/suite.py --suite quick --peer-python ../peers-venv/bin/python

Writes ``OUT/suite-NAME-TAG.json`` and ``.md`` (TAG: the JAX backend unless ``--tag``) and
prints the markdown, whose first table is gensynth's time over each peer's per workload.

Order: per workload, gensynth compiles and runs once and each peer builds and runs once
(warm-ups), then ``repeats`` rounds run every implementation once, the first of each round
rotating, so that load changes on a shared machine hit all of them alike; medians are
reported. The MRI solves run through ``inverse_solvers.measure`` (same alternation).
"""

from __future__ import annotations

import os

# Compile times are measured: no persistent cache (read when jax is imported).
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

from gensynth import runtime

runtime.configure()  # the project's XLA CPU flags, before jax starts its backend

import argparse
import dataclasses
import datetime
import functools
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import _common as common
import _gensynth_side as gside
import inverse_solvers
import jax
import suites

from gensynth import bench

HERE = pathlib.Path(__file__).resolve().parent
PACKAGES = ("gensynth", "jax", "jaxlib", "flax", "optax", "numpy")
# The peers of each workload kind (train by spatial dims); UNet2DModel is 2D only.
PEERS = {
    ("train", 2): ("monai", "diffusers"),
    ("train", 3): ("monai",),
    ("ddim", 2): ("monai", "diffusers"),
    ("pc", 2): (),
}


@dataclasses.dataclass
class Contender:
    """One implementation of one workload: its facts and its timed runs."""

    impl: str  # "gensynth", "monai" or "diffusers"
    run: Callable[[], dict[str, Any]]  # one timed run: seconds, RSS rise, device peak
    facts: dict[str, Any]  # params, steps per run, FLOPs per step, compile, first run
    close: Callable[[], Any] = lambda: None  # frees what the workload holds
    runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _jax_device_peak() -> int | None:
    """The JAX device's peak bytes in use so far in this process (accelerators only)."""
    return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")


def gensynth_contender(program: gside.Program) -> Contender:
    """Runs ``program`` once (warm-up) and wraps it for timing."""
    _, first = common.timed(program.run)

    def run():
        (_, seconds), rss = common.peak_rss_delta(lambda: common.timed(program.run))
        return {
            "seconds": seconds,
            "rss_peak_delta_bytes": rss,
            "device_peak_bytes": _jax_device_peak(),
        }

    facts = {
        "params": program.params,
        "steps": program.steps,
        "nfe_per_step": program.nfe_per_step,
        "flops_per_step": program.flops_per_step,
        "flops_source": "XLA cost analysis",
        "compile_seconds": program.stats.lower_s + program.stats.compile_s,
        "first_run_seconds": first,
        "xla_memory_bytes": gside.xla_memory(program.stats),
    }
    return Contender("gensynth", run, facts)


class TorchPeers:
    """The MONAI + diffusers worker (``_torch_peer.py``) under the peers' Python;
    ``info`` describes it (or says why there is none), ``skipped`` why a library is out."""

    def __init__(self, args: argparse.Namespace):
        self.proc, self.info, self.skipped = None, {}, {}
        if args.no_peers:
            self.info = {"skipped": "--no-peers"}
            return
        python, source = common.find_peer_python(args.peer_python)
        if python is None:
            print(f"MONAI and diffusers skipped: {source}", flush=True)
            self.info = {"skipped": source}
            return
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # README: spinning threads
        setup = {"cmd": "setup", "device": args.peer_device, "seed": args.seed}
        try:
            worker = [python, str(HERE / "_torch_peer.py")]
            self.proc = common.PeerProcess(worker, env=env)
            self.info = self.proc.request({**setup, "threads": common.usable_cores()})
        except (OSError, RuntimeError) as e:
            self.close()
            why = f"{python} ({source}) could not start the torch peers: {e}"
            print(f"MONAI and diffusers skipped: {why}", flush=True)
            self.info = {"skipped": why}
            return
        self.info.update(python_source=source, omp_wait_policy="PASSIVE")
        for library in ("monai", "diffusers"):
            if self.info["versions"].get(library) is None:
                self._skip(library, f"not installed in {python}")

    def _skip(self, library: str, why: str) -> None:
        self.skipped[library] = why
        print(f"{library} skipped: {why}", flush=True)

    def contender(self, library: str, spec: dict[str, Any]) -> Contender | None:
        """Builds and warms up one peer workload (``spec``: the worker's ``prepare``
        fields), or None (the reason in ``skipped``)."""
        if self.proc is None or library in self.skipped:
            return None
        wid = f"{library} {spec['kind']} {spec['shape']} {spec['steps']}"
        try:
            reply = self.proc.request(
                {"cmd": "prepare", "id": wid, "library": library, **spec}
            )
        except RuntimeError as e:
            self._skip(library, str(e))
            return None
        facts = {
            "params": reply["params"],
            "steps": spec["steps"] or 1,
            "nfe_per_step": 1,
            "flops_per_step": reply["flops_per_step"],
            "flops_source": "torch FLOP counter (matmuls, convolutions)",
            "compile_seconds": None,
            "first_run_seconds": reply["first_run_seconds"],
            "xla_memory_bytes": None,
        }
        return Contender(
            library,
            lambda: self.proc.request({"cmd": "run", "id": wid}),
            facts,
            close=lambda: self.proc.request({"cmd": "drop", "id": wid}),
        )

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
            self.proc = None


# ---------------------------------------------------------------- measurement


def alternate(contenders: list[Contender], repeats: int) -> None:
    """``repeats`` rounds, each running every contender once; round r starts with
    contender r mod n, so that no implementation always runs first."""
    n = len(contenders)
    for r in range(repeats):
        for i in range(n):
            c = contenders[(r + i) % n]
            c.runs.append(c.run())


def plans(kind: str, w) -> list[tuple[int | None, tuple[int | None, ...]]]:
    """``(steps run, step counts reported)`` per compiled program of workload ``w``: a
    train step runs once (``None``); a sampler runs K steps scaled to every N, or each N.

    >>> plans("ddim", suites.DDIM(64, 8, (50, 100), measured_steps=4))
    [(4, (50, 100))]
    >>> plans("ddim", suites.DDIM(64, 8, (50, 100), measured_steps=None))
    [(50, (50,)), (100, (100,))]
    """
    if kind == "train":
        return [(None, (None,))]
    counts = w.num_steps if kind == "ddim" else (w.num_steps,)
    if w.measured_steps is not None:
        return [(w.measured_steps, counts)]
    return [(n, (n,)) for n in counts]


def result_rows(w, kind: str, contenders, reported: tuple, context: dict) -> list[dict]:
    """One row per implementation and reported step count N (None: a train step): time
    per step and per image, throughput, compile time, FLOPs, MFU, memory. ``context``:
    ``dtype``, ``peaks`` (peak FLOP/s by implementation or None), ``load`` (averages)."""
    rows = []
    for c in contenders:
        seconds = common.summarize([r["seconds"] for r in c.runs])
        per_step = seconds["median"] / c.facts["steps"]
        flops = c.facts["flops_per_step"]
        flops_per_second = None if flops is None else flops / per_step
        peak = context["peaks"].get(c.impl)
        rss = [r["rss_peak_delta_bytes"] for r in c.runs]
        device = [r["device_peak_bytes"] for r in c.runs]
        for n in reported:
            batch_seconds = per_step * (n or 1)
            rows.append({
                "workload": w.name,
                "kind": kind,
                "impl": c.impl,
                "batch": w.batch,
                "size": w.size,
                "spatial_dims": getattr(w, "spatial_dims", 2),
                "dtype": context["dtype"],
                "num_steps": n,
                "nfe": None if n is None else n * c.facts["nfe_per_step"],
                "measured": {"steps": c.facts["steps"], "seconds": seconds},
                "extrapolated": n is not None and n != c.facts["steps"],
                "ms_per_step": per_step * 1e3,
                "steps_per_second": 1 / per_step,
                "seconds_per_batch": batch_seconds,
                "seconds_per_image": batch_seconds / w.batch,
                "images_per_second": w.batch / batch_seconds,
                "params": c.facts["params"],
                "nfe_per_step": c.facts["nfe_per_step"],
                "compile_seconds": c.facts["compile_seconds"],
                "first_run_seconds": c.facts["first_run_seconds"],
                "flops_per_step": flops,
                "flops_source": c.facts["flops_source"],
                "model_flops_per_second": flops_per_second,
                "peak_flops": peak,
                "mfu": None if None in (flops_per_second, peak) else flops_per_second / peak,
                "xla_memory_bytes": c.facts["xla_memory_bytes"],
                "rss_peak_delta_bytes": None if None in rss else max(rss),
                "device_peak_bytes": None if None in device else max(device),
                "load_average": context["load"],
            })  # fmt: skip
    return rows


def _peer_spec(kind: str, net: suites.Net, library: str, w, steps, dtype: str) -> dict:
    """The worker's ``prepare`` fields for ``library``'s version of workload ``w``."""
    dims = getattr(w, "spatial_dims", 2)
    config = (
        net.monai_config(dims) if library == "monai" else net.diffusers_config(w.size)
    )
    shape = [w.batch, 1, *[w.size] * dims]  # [B, C, *S]
    return {
        "kind": kind,
        "config": config,
        "shape": shape,
        "steps": steps,
        "dtype": dtype,
    }


def run_workload(kind: str, w, build, peers: TorchPeers, net, repeats: int, context):
    """Workload ``w``: per plan, gensynth's program (``build(steps)``) and the peers'
    versions, warmed up, then alternating timed runs; returns the result rows."""
    rows = []
    for steps, reported in plans(kind, w):
        label = w.name if steps is None else f"{w.name}, {steps} steps"
        load_start = os.getloadavg()
        contenders = [gensynth_contender(build(steps))]
        facts = contenders[0].facts
        print(
            f"{label}: gensynth compiled in {facts['compile_seconds']:.1f} s, first run "
            f"{facts['first_run_seconds']:.2f} s",
            flush=True,
        )
        for library in PEERS[(kind, getattr(w, "spatial_dims", 2))]:
            spec = _peer_spec(kind, net, library, w, steps, context["dtype"])
            if (peer := peers.contender(library, spec)) is not None:
                first = peer.facts["first_run_seconds"]
                print(f"{label}: {library} first run {first:.2f} s", flush=True)
                contenders.append(peer)
        alternate(contenders, repeats)
        load = {"start": list(load_start), "end": list(os.getloadavg())}
        rows += result_rows(w, kind, contenders, reported, {**context, "load": load})
        for c in contenders:
            c.close()
    return rows


def gensynth_builders(suite: suites.Suite, dtype: str, seed: int) -> dict:
    """``kind -> build(w, steps) -> Program`` for the suite's network; the samplers share
    one network, made at the first sampler workload."""
    samplers = functools.cache(lambda: gside.Samplers(suite.net, dtype, seed))
    return {
        "train": lambda w, steps: gside.compile_train(suite.net, w, dtype, seed),
        "ddim": lambda w, steps: samplers().ddim(w, steps),
        "pc": lambda w, steps: samplers().pc(w, steps),
    }


def run_inverse(inv: suites.Inverse, args: argparse.Namespace, repeats: int) -> dict:
    """The MRI solves through ``inverse_solvers.measure``; returns its record."""
    argv = ["--solvers", *inv.solvers, "--batch-sizes", *map(str, inv.batch_sizes)]
    argv += ["--preset", inv.preset, "--seed", str(args.seed)]
    argv += ["--repeats", str(repeats), "--net-repeats", "3"]
    argv += ["--peer-device", args.peer_device]
    if inv.quick is not None:
        argv += ["--quick", str(inv.quick)]
    if args.no_peers:
        argv += ["--no-peer"]
    elif args.peer_python:
        argv += ["--peer-python", args.peer_python]
    print(f"inverse solvers: inverse_solvers.py {' '.join(argv)}", flush=True)
    return inverse_solvers.measure(inverse_solvers.parse_args(argv))


# ---------------------------------------------------------------- ratios and report


def ratios(rows: list[dict], inverse: dict | None) -> list[dict[str, Any]]:
    """gensynth s/image over each peer's at the same workload and step count (below 1:
    gensynth faster), then the MRI solves' ratios against deepinv's DPS."""
    by = {(r["workload"], r["num_steps"], r["impl"]): r for r in rows}
    out = []
    for (workload, n, impl), peer in by.items():
        ours = by.get((workload, n, "gensynth"))
        if impl == "gensynth" or ours is None:
            continue
        out.append({
            "workload": workload,
            "steps": "1 optimiser step" if n is None else f"{n} ({ours['nfe']} NFE)",
            "batch": peer["batch"],
            "peer": impl,
            "gensynth_seconds_per_image": ours["seconds_per_image"],
            "peer_seconds_per_image": peer["seconds_per_image"],
            "ratio": ours["seconds_per_image"] / peer["seconds_per_image"],
            "extrapolated": ours["extrapolated"] or peer["extrapolated"],
        })  # fmt: skip
    for r in (inverse or {}).get("ratios", []):
        mine, theirs = r["comparison"].split(" / ")
        out.append({
            "workload": f"mri x4 {mine.split()[1]} ({r['kind']})",
            "steps": f"{r['nfe'][0]} / {r['nfe'][1]} NFE",
            "batch": r["batch"],
            "peer": theirs,
            "gensynth_seconds_per_image": r["gensynth_seconds_per_image"],
            "peer_seconds_per_image": r["deepinv_seconds_per_image"],
            "ratio": r["ratio"],
            "extrapolated": r["extrapolated"],
        })  # fmt: skip
    return out


def notes(record: dict[str, Any]) -> list[str]:
    """Automatic remarks: peers skipped, networks of different sizes, a loaded machine."""
    out = [f"{lib} skipped: {why}" for lib, why in record["peers"]["skipped"].items()]
    if "skipped" in record["peers"]["torch"]:
        out.append(
            f"MONAI and diffusers skipped: {record['peers']['torch']['skipped']}"
        )
    params = record["config"]["params"]
    for name, count in params.items():
        if count is not None and count != params["gensynth"]:
            out.append(
                f"{name}'s network has {count:,} parameters, gensynth's "
                f"{params['gensynth']:,}"
            )
    inverse = record["inverse"]
    if inverse is not None and "skipped" in inverse["peer"]:
        out.append(f"deepinv skipped: {inverse['peer']['skipped']}")
    cores = record["machine"]["usable_cpus"]
    loads = [record["load_average"]] + [r["load_average"] for r in record["results"]]
    worst = max(v[0] for load in loads for v in load.values())
    if record["backend"] == "cpu" and worst > cores:
        out.append(
            f"shared machine: 1-minute load average up to {worst:.1f} on {cores} usable "
            "cores during the runs; compare ratios, not absolute times"
        )
    return out


def _mib(v: int | None) -> float | None:
    return None if v is None else v / common.MIB


def _source(r: dict[str, Any]) -> str:
    k = r["measured"]["steps"]
    return f"extrapolated from {k} steps" if r["extrapolated"] else "measured"


def _steps(n: int | None) -> str:
    return "1 (train)" if n is None else str(n)


def _header(record: dict[str, Any]) -> list[str]:
    """The report's first lines: when, where, what."""
    mach, cfg, torch_info = (
        record["machine"],
        record["config"],
        record["peers"]["torch"],
    )
    load = {
        k: ", ".join(f"{v:.2f}" for v in vs) for k, vs in record["load_average"].items()
    }
    jv, git, net = record["versions"]["gensynth"], record["git"], cfg["net"]
    if "skipped" in torch_info:
        peers = f"- MONAI, diffusers: skipped ({torch_info['skipped']})"
    else:
        pv = torch_info["versions"]
        deepinv = ((record["inverse"] or {}).get("peer") or {}).get("versions") or {}
        peers = (
            f"- peers: torch {pv.get('torch')}, MONAI {pv.get('monai')}, diffusers "
            f"{pv.get('diffusers')}, deepinv {deepinv.get('deepinv', '-')} on "
            f"{torch_info['device']} ({torch_info['torch_threads']} threads, "
            "OMP_WAIT_POLICY=PASSIVE)"
        )
    params = ", ".join(f"{k} {v:,}" for k, v in cfg["params"].items() if v is not None)
    attention = [i for i, a in enumerate(net["attention"]) if a]
    return [
        f"# Benchmark suite `{cfg['suite']['name']}` ({record['tag']})",
        "",
        (
            f"{record['created']} · `{' '.join(record['command'])}` · "
            f"{record['wall_seconds'] / 60:.1f} min"
        ),
        "",
        (
            f"- machine: {mach['cpu']}, {mach['usable_cpus']} usable cores; JAX "
            f"{record['backend']} device {record['device']['kind']} (1 of "
            f"{record['device']['count']} used); load average (1/5/15 min) start "
            f"{load['start']}, end {load['end']}"
        ),
        (
            f"- gensynth {jv['gensynth']} (git {str(git['commit'])[:8]}"
            f"{', dirty tree' if git['dirty'] else ''}), jax {jv['jax']}, jaxlib "
            f"{jv['jaxlib']}, flax {jv['flax']}, optax {jv['optax']}; compilation cache "
            f"{'on' if record['compilation_cache'] else 'off'}"
        ),
        peers,
        (
            f"- network: MONAI-layout U-Net, widths {tuple(net['channels'])}, "
            f"{net['num_res_blocks']} res blocks, attention at levels {attention} and the "
            f"middle, head dim {net['head_dim']}, {net['groups']} groups; parameters: "
            f"{params}; random weights, eps-prediction, linear betas (T = 1000); "
            f"{cfg['dtype']}"
        ),
        (
            f"- timings: median of {cfg['repeats']} runs after one warm-up, implementations "
            "alternating (the first of each round rotating); 'extrapolated' samplers ran "
            "K steps, scaled to N (the same program per step)"
        ),
    ]


RESULT_LEGEND = (
    "A step: one optimiser step (train), one DDIM step (1 NFE), one PC noise level "
    "(predictor + corrector NFE). s/image at N steps. compile s: trace + XLA compile "
    "(gensynth; torch runs eagerly). GFLOP/step: XLA's cost analysis of the train step or "
    "of one forward per NFE (gensynth), torch's FLOP counter (peers: matmuls and "
    "convolutions only). MFU: FLOP/s over the device's dense peak (none listed for CPUs). "
    "XLA peak: arguments + outputs + temporaries of the compiled program. RSS rise: peak "
    "resident set during a run above the resident set before it."
)


def _ratio_table(record: dict[str, Any]) -> str:
    cols = ["workload", "B", "steps", "peer", "gensynth s/image", "peer s/image"]
    cols += ["ratio", "source"]
    rows = [
        [
            r["workload"], r["batch"], r["steps"], r["peer"],
            r["gensynth_seconds_per_image"], r["peer_seconds_per_image"], r["ratio"],
            "extrapolated" if r["extrapolated"] else "measured",
        ]
        for r in record["ratios"]
    ]  # fmt: skip
    return common.markdown_table(cols, rows)


def _result_table(record: dict[str, Any]) -> str:
    cols = ["workload", "impl", "steps", "ms/step", "steps/s", "images/s", "compile s"]
    cols += ["GFLOP/step", "GFLOP/s", "MFU", "XLA peak MiB", "RSS rise MiB", "source"]
    rows = []
    for r in record["results"]:
        flops, fps = r["flops_per_step"], r["model_flops_per_second"]
        rows.append([
            r["workload"], r["impl"], _steps(r["num_steps"]), r["ms_per_step"],
            r["steps_per_second"], r["images_per_second"], r["compile_seconds"],
            None if flops is None else flops / 1e9, None if fps is None else fps / 1e9,
            r["mfu"], _mib((r["xla_memory_bytes"] or {}).get("peak")),
            _mib(r["rss_peak_delta_bytes"]), _source(r),
        ])  # fmt: skip
    return common.markdown_table(cols, rows)


def markdown(record: dict[str, Any]) -> str:
    """The report: header, ratio table, results, the MRI solves, notes."""
    lines = _header(record)
    if record["ratios"]:
        title = "Ratios: gensynth s/image / peer s/image (below 1: gensynth faster)"
        lines += ["", f"## {title}", "", _ratio_table(record)]
    if record["results"]:
        lines += ["", "## Workloads", "", _result_table(record), "", RESULT_LEGEND]
    inverse = record["inverse"]
    if inverse is not None:
        cfg = inverse["config"]
        lines += [
            "",
            "## MRI solves (inverse_solvers.py)",
            "",
            (
                f"Single-coil MRI x4 gaussian1d, {cfg['image_size']} px, preset "
                f"`{cfg['preset']}` U-Net ({cfg['params']['gensynth']:,} parameters, "
                f"{cfg['model']['compute_dtype']}); peer: deepinv DPS with a diffusers U-Net "
                "of the same layout; --quick "
                f"{cfg['quick']} (solvers over {cfg['full_nfe']} NFE run K steps, scaled)."
            ),
        ]
        lines += inverse_solvers.sections(inverse, level=3)
    if record["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in record["notes"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- driver


def resolve(args: argparse.Namespace) -> tuple[suites.Suite, str, list[str], int]:
    """The suite, the compute dtype, the workload kinds to run and the repeats, from the
    options. Raises ValueError naming a bad option."""
    suite = suites.get_suite(args.suite)
    repeats = suite.repeats if args.repeats is None else args.repeats
    if repeats < 1:
        raise ValueError(f"--repeats {repeats}: expected >= 1")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    kinds = [k for k in bench.KINDS if k in (args.only or bench.KINDS)]
    return suite, dtype, kinds, repeats


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the suite of ``args`` (options of ``gensynth.bench.add_arguments``); returns
    its JSON record."""
    began, load_start = time.perf_counter(), os.getloadavg()
    suite, dtype, kinds, repeats = resolve(args)
    device = jax.devices()[0]
    peaks = {"gensynth": common.peak_flops(device.device_kind, dtype)}
    print(f"suite {suite.name}: {suite.description}", flush=True)
    peers = TorchPeers(args)
    peer_kind = peers.info.get("device_name", "")
    peaks.update(
        {lib: common.peak_flops(peer_kind, dtype) for lib in PEERS[("ddim", 2)]}
    )
    builders = gensynth_builders(suite, dtype, args.seed)
    context = {"dtype": dtype, "peaks": peaks}
    rows = []
    try:
        for kind in [k for k in kinds if k != "inverse"]:
            for w in getattr(suite, kind):
                build = functools.partial(builders[kind], w)
                rows += run_workload(kind, w, build, peers, suite.net, repeats, context)
    finally:
        peers.close()
    inverse = None
    if "inverse" in kinds and suite.inverse is not None:
        inverse = run_inverse(suite.inverse, args, repeats)
    params = {"gensynth": gside.unet_params(suite.net, 2)}  # the 2D network's
    for lib in PEERS[("ddim", 2)]:
        counts = [
            r["params"] for r in rows if (r["impl"], r["spatial_dims"]) == (lib, 2)
        ]
        params[lib] = counts[0] if counts else None
    record = {
        "benchmark": "suite",
        "tag": args.tag or jax.default_backend(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [pathlib.Path(sys.argv[0]).name, *sys.argv[1:]],
        "backend": jax.default_backend(),
        "device": {
            "kind": device.device_kind,
            "platform": device.platform,
            "count": jax.device_count(),
            "used": 1,
        },
        "machine": common.machine(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "versions": {
            "gensynth": common.package_versions(PACKAGES),
            "peers": peers.info.get("versions"),
        },
        "git": common.git_revision(HERE.parent),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compilation_cache": bool(jax.config.jax_enable_compilation_cache),
        "config": {
            "suite": dataclasses.asdict(suite),
            "kinds": kinds,
            "net": dataclasses.asdict(suite.net),
            "gensynth_unet": gside.unet_kwargs(suite.net, 2),
            "params": params,
            "dtype": dtype,
            "repeats": repeats,
            "seed": args.seed,
            "peak_flops": peaks,
        },
        "peers": {"torch": peers.info, "skipped": peers.skipped},
        "results": rows,
        "inverse": inverse,
        "ratios": ratios(rows, inverse),
        "wall_seconds": time.perf_counter() - began,
    }
    record["notes"] = notes(record)
    return record


def run(args: argparse.Namespace) -> list[pathlib.Path]:
    """Runs the suite, writes ``suite-NAME-TAG.json`` and ``.md``, prints the markdown;
    returns the two paths."""
    record = measure(args)
    text = markdown(record)
    out = args.out or HERE / "results"
    stem = f"suite-{record['config']['suite']['name']}-{record['tag']}"
    paths = common.write_results(out, stem, record, text)
    print(text)
    print(f"\nwrote {', '.join(str(p) for p in paths)}", flush=True)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(args)
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()
