"""`gensynth bench`: runs a benchmark suite from the source checkout's `benchmarks/` folder.

The benchmarks are scripts beside the package, not part of it: they start the PyTorch peers
(MONAI, diffusers, deepinv) from files under another Python and write their results into the
repository (`benchmarks/results/`), so they need the checkout that `pip install -e .` installs
from. This module holds what the command line needs without jax: the options (shared with
`python benchmarks/suite.py`) and the lookup of the folder, with a clear error elsewhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys

SUITE_SCRIPT = "suite.py"  # the runner inside benchmarks/
SUITE_NAMES = ("quick", "full", "smoke")  # benchmarks/suites.py defines them
KINDS = ("train", "ddim", "pc", "inverse")  # workload kinds, for --only


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the suite runner's options to ``parser``."""
    add = parser.add_argument
    add("--suite", default="quick", help=f"{' | '.join(SUITE_NAMES)} (default: quick)")
    add("--peer-python", help="Python of the PyTorch peers (torch, monai, diffusers, "
        "deepinv); default $GENSYNTH_PEER_PYTHON, else this Python if it has torch")  # fmt: skip
    add("--no-peers", action="store_true", help="run gensynth only")
    add("--peer-device", default="auto", help="auto (cuda if available) | cpu | cuda")
    add("--only", nargs="+", choices=KINDS, help="run only these workload kinds")
    add("--repeats", type=int, help="timed runs per workload (default: the suite's)")
    add("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
        help="compute dtype of both sides; auto: float32 on CPU, bfloat16 elsewhere")  # fmt: skip
    add("--seed", type=int, default=0, help="seed of weights and noise (default: 0)")
    add("--out", help="results folder (default: benchmarks/results of the checkout)")
    add("--tag", help="file tag (default: the JAX backend, e.g. cpu or gpu)")


def benchmarks_dir() -> pathlib.Path:
    """The checkout's `benchmarks/` folder (beside the `gensynth` package).

    Raises:
      FileNotFoundError: when gensynth is not installed from a source checkout.
    """
    folder = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    if not (folder / SUITE_SCRIPT).is_file():
        raise FileNotFoundError(
            f"{folder / SUITE_SCRIPT} not found: `gensynth bench` runs the benchmarks of a "
            "source checkout; clone the repository and `pip install -e .` from it"
        )
    return folder


def load_suite():
    """Imports the checkout's ``benchmarks/suite.py`` (its folder goes on ``sys.path`` for
    its sibling modules) and returns the module.

    Importing it turns the persistent compilation cache off (the suite measures compile
    times; jax reads the setting at its first compilation) and applies
    ``gensynth.runtime.configure``'s XLA flags, so call it before jax starts.

    Raises:
      FileNotFoundError: outside a source checkout.
    """
    folder = benchmarks_dir()
    os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    name = "gensynth_benchmarks_suite"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / SUITE_SCRIPT)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def run(args: argparse.Namespace) -> list[pathlib.Path]:
    """Runs the suite ``args.suite`` (options of :func:`add_arguments`), writes its JSON and
    markdown and prints the report; returns the two paths. See :func:`load_suite`.

    Raises:
      FileNotFoundError: outside a source checkout.
      ValueError: for an unknown suite or bad option values.
    """
    return load_suite().run(args)
