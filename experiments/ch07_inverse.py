"""Chapter 7 experiments (spec ch. 7, Sect. 10.3): diffusion solvers for inverse problems.

  E1  every solver against the exact posterior of an analytic Gaussian prior (no training);
  E2  a trained prior on MRI (single/4-coil, 1D/2D masks, x4/x8) and CT (8/16 views, 120 degrees):
      zero-filled/FBP, TV, DDS, score-POCS, DPS, MCG, CCDF, and a supervised U-Net off its mask;
  E3  posterior spread vs acceleration;
  E4  3D sparse-view CT from the 2D prior: slice-wise DDS, DDS + TV-z, DiffusionMBIR.

Each experiment writes ``table.md``, ``metrics.json`` and ``figure.png`` into ``OUT/eN`` (E2 also
``examples.png``, one test image per method); E2-E4
also write ``OUT/report.md`` with their tables and the chapter's directions checked against the
numbers. The prior is trained into ``OUT/prior`` (reused on the next run) unless ``--prior`` names
a run folder. ``--quick`` is the CPU setting (32 px prior, shortened DPS/MCG, DDS-only E3, short
DiffusionMBIR); without it, the GPU setting (128 px ADM-size prior, full step counts).

Usage::

  python experiments/ch07_inverse.py --quick [--only e2,e3] [--out experiments/results/ch07]
"""

from __future__ import annotations

from gensynth import runtime

runtime.configure()  # XLA's CPU convolutions and the compile cache, before jax starts its backend

import argparse
import pathlib
import time

import jax
from ch07 import e1_gaussian, e2_trained, e3_uncertainty, e4_volume, report
from ch07 import prior as prior_lib

from gensynth import runs

EXPERIMENTS = ("e1", "e2", "e3", "e4")
TRAINED = {  # name: (title, run(prior, quick, seed) -> (records, extra), table, figures(folder, records, extra))
    "e2": ("trained prior, MRI and CT", e2_trained.run, report.e2_table, report.e2_figures),
    "e3": ("posterior spread vs acceleration", e3_uncertainty.run, report.e3_table, report.e3_figures),
    "e4": ("3D sparse-view CT, 8 views per slice", e4_volume.run, report.e4_table, report.e4_figures),
}


def _write(out: pathlib.Path, name: str, text: str, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(out / "table.md", text)
    runs.atomic_write_json(out / "metrics.json", {"experiment": f"ch07 {name.upper()}", **payload})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Chapter 7 experiments E1-E4 (diffusion inverse solvers).")
    parser.add_argument("--quick", action="store_true", help="the CPU setting (about 15 minutes on 2 cores)")
    parser.add_argument("--out", default="experiments/results/ch07", help="output folder")
    parser.add_argument("--prior", default=None, help="a trained one-channel run folder (default: train OUT/prior)")
    parser.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated subset of e1,e2,e3,e4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    only = [e.strip() for e in args.only.split(",") if e.strip()]
    if unknown := set(only) - set(EXPERIMENTS):
        parser.error(f"--only: unknown experiments {sorted(unknown)}; expected a subset of {EXPERIMENTS}")
    out = pathlib.Path(args.out)
    began = time.perf_counter()
    common = {"quick": args.quick, "backend": jax.default_backend(), "seed": args.seed}
    if "e1" in only:
        print("E1: exact Gaussian posterior", flush=True)
        e1_gaussian.run(out / "e1", quick=args.quick, seed=args.seed)
    trained = [e for e in only if e != "e1"]
    if not trained:
        return
    print("prior: training or loading", flush=True)
    prior = prior_lib.load_prior(args.prior or out / "prior", quick=args.quick)
    common |= {"prior": str(args.prior or out / "prior"), "prior_params": prior.num_params,
               "image_size": prior.cfg.data.image_size}
    results, sections = {}, []
    for name in trained:
        title, run, table, figures = TRAINED[name]
        print(f"{name.upper()}: {title}", flush=True)
        records, extra = run(prior, quick=args.quick, seed=args.seed)
        text = table(records)
        _write(out / name, name, text, {**common, "records": records})
        figures(out / name, records, extra)
        results[name] = records
        sections.append(f"## {name.upper()}: {title}\n\n" + text)
    header = (
        f"# Chapter 7 experiments ({'quick, CPU' if args.quick else 'full'}; backend {common['backend']}; "
        f"prior {prior.num_params:,} parameters at {prior.cfg.data.image_size} px; "
        f"{time.perf_counter() - began:.0f} s wall for {', '.join(only)})\n\n"
        "## Directions of the chapter, checked\n\n"
        + report.directions(results.get("e2"), results.get("e3"), results.get("e4")) + "\n"
    )
    runs.atomic_write_text(out / "report.md", header + "\n".join(sections))
    print(header)


if __name__ == "__main__":
    main()
