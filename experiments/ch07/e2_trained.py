"""E2: the solvers with a trained prior on MRI and CT (spec Sect. 10.3 E2), plus the
pattern-agnostic check against a supervised U-Net.

Settings: single-coil and 4-coil (birdcage maps) MRI with uniform1d x4, gaussian1d x4,
gaussian2d x8 and Poisson-disc x8 masks on the held-out MNI152 slices (real images, via
:class:`gensynth.inverse.RealImage`); sparse-view CT with 8, 16 and 30 views and limited-angle CT
(60 views, 2 degrees apart, over 120 degrees) on held-out phantoms plus pydicom's CT slice.
Noise std :data:`~ch07.tasks.NOISE` on the measured entries.

Methods: zero-filled / FBP; TV (ADMM, lambda picked per setting from a small grid by mean PSNR on
the test images, i.e. TV's best case); DDS (50 NFE) on every setting; score-POCS (the projection
solver, VE PC with N = 500, M = 1: 1000 NFE), DPS, MCG and CCDF on the "full" settings, where
``quick`` shortens DPS and MCG (see :func:`solver_steps`). The supervised U-Net is trained on
single-coil uniform1d x4 and tested on it and on the two x8 masks.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from ch07 import prior as prior_lib
from ch07 import supervised, tasks
from ch07.tasks import Setting

SETTINGS = (
    *(Setting(f"MRI 1c {m} x{a}", "mri", m, a) for m, a in
      (("uniform1d", 4), ("gaussian1d", 4), ("gaussian2d", 8), ("poisson", 8))),
    *(Setting(f"MRI 4c {m} x{a}", "mri-multicoil", m, a) for m, a in
      (("uniform1d", 4), ("gaussian1d", 4), ("gaussian2d", 8), ("poisson", 8))),
    Setting("CT 8 views", "ct", views=8),
    Setting("CT 16 views", "ct", views=16),
    Setting("CT 30 views", "ct", views=30),
    Setting("CT limited 120deg", "ct", views=60, angle_range=120.0),
)
FULL = ("MRI 1c gaussian1d x4", "CT 16 views")  # settings that get every solver
SLOW_SOLVERS = ("projection", "dps", "mcg", "ccdf")
SUPERVISED_TRAIN = "MRI 1c uniform1d x4"
SUPERVISED_TEST = ("MRI 1c uniform1d x4", "MRI 1c gaussian2d x8", "MRI 1c poisson x8")


def solver_steps(solver: str, quick: bool) -> int | None:
    """Steps per solver: the book's defaults (None) except score-POCS's N = 500 (1000 NFE, spec
    E2); with ``quick``, DPS and MCG run 250 of their 1000 steps (respaced) to fit the CPU budget
    (each step is a forward and a backward pass through the network, and for CT through the
    Radon transform)."""
    if solver == "projection":
        return 500
    if quick and solver in ("dps", "mcg"):
        return 250
    return None


def _record(setting: Setting, method: str, x, ref, **facts) -> dict:
    return {"setting": setting.name, "method": method, **tasks.summary(tasks.quality(x, ref)), **facts}


def run(prior: prior_lib.Prior, *, quick: bool, seed: int = 0, log=print) -> tuple[list[dict], dict]:
    """Runs E2; returns one record per (setting, method) and, for the :data:`FULL` settings, the
    middle test image's reference and reconstructions ``{setting: {method: [H, W]}}``."""
    size = prior.cfg.data.image_size
    refs = {"mri": prior_lib.mri_test_images(prior.cfg), "ct": prior_lib.ct_test_images(prior.cfg)}
    runner = tasks.SolverRunner(prior)
    records, examples = [], {}
    key = jax.random.key(seed)
    for i, setting in enumerate(SETTINGS):
        op, facts = setting.build(size, seed)
        ref = refs[setting.images]
        y = tasks.simulate(jax.random.fold_in(key, i), op, ref)
        base = tasks.baseline(op, y)
        records.append(_record(setting, "zero-filled/FBP", np.asarray(base), ref, nfe=0, **facts))
        k = len(ref) // 2  # the example image: a mid-brain slice / a phantom
        shown = examples.setdefault(setting.name, {"reference": ref[k], "zero-filled/FBP": np.asarray(base[k])})
        began = time.perf_counter()
        x, lam = tasks.tv(op, y, ref)
        shown["TV"] = x[k]
        records.append(_record(setting, "TV", x, ref, nfe=0, tv_lambda=lam, s_per_image=None, **facts))
        log(f"  {setting.name}: baseline {records[-2]['psnr_mean']:.2f} dB, TV {records[-1]['psnr_mean']:.2f} dB "
            f"({time.perf_counter() - began:.0f} s)")
        solvers = ("dds", *SLOW_SOLVERS) if setting.name in FULL else ("dds",)
        for j, solver in enumerate(solvers):
            x, run_facts = runner.run(
                jax.random.fold_in(key, 1000 * i + j), solver, op, y, base, steps=solver_steps(solver, quick)
            )
            records.append(_record(setting, solver, x, ref, **run_facts, **facts))
            shown[solver] = x[k]
            log(f"  {setting.name}: {solver} {records[-1]['psnr_mean']:.2f} dB, NFE {run_facts['nfe']}, "
                f"{run_facts['s_per_image']:.2f} s/image, compile {run_facts['compile_s']:.0f} s")
    records += run_supervised(prior, refs["mri"], quick=quick, seed=seed, log=log)
    return records, {name: examples[name] for name in FULL}


def run_supervised(prior: prior_lib.Prior, ref: np.ndarray, *, quick: bool, seed: int, log=print) -> list[dict]:
    """The supervised U-Net trained on :data:`SUPERVISED_TRAIN`, tested on :data:`SUPERVISED_TEST`."""
    size = prior.cfg.data.image_size
    by_name = {s.name: s for s in SETTINGS}
    train_images = prior_lib.mri_train_images(prior.cfg)
    began = time.perf_counter()
    apply = supervised.train_supervised(
        train_images, by_name[SUPERVISED_TRAIN].build(size, seed)[0], steps=400 if quick else 5000, seed=seed
    )
    log(f"  supervised U-Net trained on {SUPERVISED_TRAIN} ({time.perf_counter() - began:.0f} s)")
    records = []
    for i, name in enumerate(SUPERVISED_TEST):
        setting = by_name[name]
        op, facts = setting.build(size, seed)
        y = tasks.simulate(jax.random.fold_in(jax.random.key(seed), SETTINGS.index(setting)), op, ref)
        x = np.asarray(apply(tasks.baseline(op, y).real))
        records.append(_record(setting, "supervised U-Net", x, ref, nfe=0, trained_on=SUPERVISED_TRAIN, **facts))
    return records
