"""Building blocks of E2-E4: the reconstruction settings, batched simulation and baselines, image
quality, and a solver runner that compiles each solver once per operator structure.

The runner compiles ahead of time (``jit(...).lower(...).compile()``), so the program that is
timed is the one whose XLA memory analysis gives the peak-memory figure (arguments + outputs +
temporaries of the whole solve; the network's parameters are compiled in as constants, a few MB
at most here). Operators are jit
arguments (masks, coil maps and angles are array leaves), so a new mask of the same shape reuses
the compiled program.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gensynth import inverse, metrics
from gensynth.recipes import reconstruct

NOISE = 0.01  # Gaussian measurement noise std (k-space / sinogram units), on measured entries
DATA_RANGE = 2.0  # images in [-1, 1]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One reconstruction problem: an operator of ``gensynth reconstruct`` and its test images."""

    name: str  # row label, e.g. "MRI 1c gaussian2d x8"
    operator: str  # "mri", "mri-multicoil" or "ct"
    mask: str = "uniform1d"
    accel: float = 4.0
    views: int = 30
    angle_range: float = 180.0

    @property
    def images(self) -> str:
        """Which test images: ``"mri"`` (held-out MNI152 slices) or ``"ct"``."""
        return "ct" if self.operator == "ct" else "mri"

    def build(self, size: int, seed: int = 0) -> tuple[Any, dict[str, Any]]:
        """The operator on one ``[size, size]`` real image and its facts."""
        return reconstruct.build_operator(
            self.operator, size, mask=self.mask, accel=self.accel, views=self.views,
            angle_range=self.angle_range, seed=seed,
        )


def simulate(key: jax.Array, op: Any, x: np.ndarray, noise: float = NOISE) -> jax.Array:
    """``y [N, *meas_shape]`` for the images ``x [N, H, W]`` (independent noise per image)."""
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, xi: reconstruct.simulate(k, op, xi, noise))(keys, jnp.asarray(x))


def baseline(op: Any, y: jax.Array) -> jax.Array:
    """Zero-filled (MRI) or FBP (CT) estimates ``[N, H, W]`` of ``y [N, ...]``."""
    return jax.vmap(lambda yi: reconstruct.baseline(op, yi)[0])(y)


def quality(x: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image PSNR (dB), SSIM and NMSE of ``x [N, H, W]`` against ``ref [N, H, W]``."""
    x, ref = jnp.asarray(x, jnp.float32)[..., None], jnp.asarray(ref, jnp.float32)[..., None]
    return {
        "psnr": np.asarray(metrics.psnr(x, ref, DATA_RANGE)),
        "ssim": np.asarray(metrics.ssim(x, ref, DATA_RANGE, filter_size=min(11, x.shape[1]))),
        "nmse": np.asarray(metrics.nmse(x, ref)),
    }


def summary(q: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean and standard deviation over images of each quality figure."""
    return {f"{k}_{stat}": float(fn(v)) for k, v in q.items() for stat, fn in (("mean", np.mean), ("sd", np.std))}


def tv(op: Any, y: jax.Array, ref: np.ndarray, lams=(0.003, 0.01, 0.03, 0.1)) -> tuple[np.ndarray, float]:
    """TV-regularised least squares (ADMM) for each ``y``, with the ``lam`` of ``lams`` that gives
    the best mean PSNR against ``ref`` (an oracle choice: TV's best case). Returns ``(x, lam)``."""
    solve = jax.jit(jax.vmap(lambda yi, lam: inverse.tv_reconstruct(op, yi, lam=lam), in_axes=(0, None)))
    best = None
    for lam in lams:
        x = np.asarray(solve(y, lam))
        score = float(np.mean(quality(x, ref)["psnr"]))
        if best is None or score > best[0]:
            best = (score, x, lam)
    return best[1], best[2]


class SolverRunner:
    """Runs the solvers of ``gensynth reconstruct`` with a trained prior; one compiled program
    per (solver, steps, operator structure, batch shape)."""

    def __init__(self, prior):
        self.prior = prior
        self._compiled: dict[Any, Any] = {}

    def _program(self, solver: str, steps: int | None, noise: float, op, y, x_init):
        prior = self.prior
        key = (solver, steps, noise, jax.tree.structure(op), tuple(a.shape for a in jax.tree.leaves(op)),
               y.shape, y.dtype)
        if key not in self._compiled:

            def solve(k, op, y, x_init):
                return reconstruct.run_solver(
                    k, solver, prior.model_fn, prior.schedule, prior.prediction, op, y, x_init,
                    steps=steps, noise=noise,
                )

            began = time.perf_counter()
            self._compiled[key] = jax.jit(solve).lower(jax.random.key(0), op, y, x_init).compile()
            return self._compiled[key], time.perf_counter() - began
        return self._compiled[key], 0.0

    def run(
        self, key: jax.Array, solver: str, op: Any, y: jax.Array, x_init: jax.Array,
        *, steps: int | None = None, noise: float = NOISE,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Solves the batch; returns ``(x [N, H, W], facts)`` with NFE, VJPs, seconds (compiled
        run of the whole batch), seconds per image, compile seconds (0 when the program was
        compiled before) and peak bytes."""
        compiled, compile_s = self._program(solver, steps, noise, op, y, x_init)
        began = time.perf_counter()
        x, info = compiled(key, op, y, x_init)
        x = np.asarray(jax.block_until_ready(x))
        seconds = time.perf_counter() - began
        mem = compiled.memory_analysis()
        peak = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        return x, {
            "nfe": int(info["nfe"]), "vjps": int(info["vjps"]), "seconds": seconds,
            "s_per_image": seconds / x.shape[0], "compile_s": compile_s, "peak_mb": peak / 2**20,
        }
