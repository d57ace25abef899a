"""E3: posterior spread vs acceleration (spec Sect. 10.3 E3, book Fig. 7.4).

For 5 held-out MNI152 slices and single-coil MRI with gaussian1d masks at R = 2, 4, 6, 8, draw
16 posterior samples per image with DDS (eta = 0.85, noise as in E2) and, without ``quick``, with
score-POCS. Reported per R: the mean pixelwise standard deviation (in [0, 1] intensity units, the
book's display scale), and the Pearson correlation between the std map and the error map
|mean - ground truth| over all pixels of the 5 images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ch07 import prior as prior_lib
from ch07 import tasks
from ch07.tasks import Setting

ACCELS = (2, 4, 6, 8)
NUM_IMAGES = 5
NUM_SAMPLES = 16


def spread(samples: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Uncertainty facts of ``samples [I, S, H, W]`` for ``ref [I, H, W]`` (images in [-1, 1]).

    >>> s = np.stack([np.zeros((2, 4, 4)), np.ones((2, 4, 4))], axis=1)  # two samples: 0 and 1
    >>> round(spread(s, np.zeros((2, 4, 4)))["std_mean"], 3)
    0.25
    """
    std = samples.std(axis=1) / 2.0  # [I, H, W], [0, 1] units
    err = np.abs(samples.mean(axis=1) - ref) / 2.0
    corr = np.corrcoef(std.ravel(), err.ravel())[0, 1] if std.std() > 0 and err.std() > 0 else 0.0
    return {"std_mean": float(std.mean()), "std_max": float(std.max()), "err_mean": float(err.mean()),
            "corr_std_err": float(corr)}


def run(prior: prior_lib.Prior, *, quick: bool, seed: int = 0, log=print) -> tuple[list[dict], dict]:
    """Runs E3; returns one record per (solver, R) and the std maps ``{(solver, R): [I, H, W]}``."""
    size = prior.cfg.data.image_size
    ref = prior_lib.mri_test_images(prior.cfg)[5 : 5 + NUM_IMAGES]
    runner = tasks.SolverRunner(prior)
    records, maps = [], {}
    solvers = ("dds",) if quick else ("dds", "projection")
    for r in ACCELS:
        setting = Setting(f"MRI 1c gaussian1d x{r}", "mri", "gaussian1d", r)
        op, facts = setting.build(size, seed)
        y = tasks.simulate(jax.random.fold_in(jax.random.key(seed), r), op, ref)
        ys = jnp.repeat(y, NUM_SAMPLES, axis=0)
        base = jnp.repeat(tasks.baseline(op, y), NUM_SAMPLES, axis=0)
        for solver in solvers:
            steps = 500 if solver == "projection" else None
            x, run_facts = runner.run(jax.random.key(seed + r), solver, op, ys, base, steps=steps)
            samples = x.reshape(NUM_IMAGES, NUM_SAMPLES, size, size)
            records.append({"solver": solver, "accel": r, "accel_effective": facts["accel_effective"],
                            **spread(samples, ref), "nfe": run_facts["nfe"], "seconds": run_facts["seconds"]})
            maps[(solver, r)] = samples.std(axis=1) / 2.0
            log(f"  R={r} {solver}: mean std {records[-1]['std_mean']:.4f}, corr(std, err) "
                f"{records[-1]['corr_std_err']:.2f}")
    return records, {"maps": maps, "ref": ref}
