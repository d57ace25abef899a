"""Sampler quality against NFE: exact W2 distance to Gaussian data for DDIM and DPM-Solver++.

Data: 16 x 16 one-channel images ``x0 ~ N(mu, Sigma)``, ``mu`` a smooth bright disc on a dark
background and ``Sigma`` a squared-exponential covariance (length 3 px, pixel variance 0.2) plus
a white floor 1e-3: eigenvalues from 1e-3 to 9, so its modes resolve at very different noise
levels. Its optimal noise predictor is known in closed form and replaces the network.

With that predictor every step of a deterministic sampler (DDIM with eta = 0, DPM-Solver++ ODE)
is affine in the state, so the sampler maps the prior draw to ``x0 = c + G x_T`` and its samples
follow exactly ``N(c, G G^T)`` for ``x_T ~ N(0, I)``: no Monte Carlo, no fitted Gaussian. Each
step combines ``x``, ``eps`` and ``x0`` with scalar coefficients, so the samplers commute with
the rotation ``U`` to the eigenbasis of ``Sigma`` (and ``N(0, I)`` is invariant under it): in
that basis the data are 256 independent 1-D Gaussians with the eigenvalues as variances, ``G``
is diagonal, and two runs (``x_T = 0`` and ``x_T = 1``) give ``c`` and ``G``. The benchmark runs
there, with :func:`gensynth.diffusion.gaussian_eps_fn`, and checks the equivalence once in image
space (the full-covariance denoiser on ``[257, 16, 16, 1]`` images: ``x_T = 0`` and the 256 unit
images), recording both W2 values. Reported:

- ``w2_data``: W2 between the samplers' law and the data Gaussian (quality);
- ``w2_limit``: W2 to the law every sampler tends to as its steps shrink, the exact
  probability-flow map from the largest step to step 0 followed by the exact last denoising step
  (pure discretisation error; ``floor`` = W2 of that limit to the data, from the prior mismatch
  at ``t = T - 1`` and the noise left at ``t = 0``).

Everything runs in float64 (``jax_enable_x64``) so that the numbers are discretisation, not
rounding. Grids: ``time`` is DDIM's ``round(linspace(0, T-1, K))`` (the default of both
samplers), ``logsnr`` is :func:`gensynth.diffusion.logsnr_timesteps`. "NFE to match DDIM-100" is
the smallest K whose W2 reaches DDIM's at 100 NFE: a first guess interpolated (log W2 against
log K) between the measured NFEs, then K - 1 or K + 1 until the crossing.

Usage::

  python benchmarks/sampler_quality.py            # about a minute on 2 idle CPU cores

Writes ``OUT/sampler_quality-TAG.json``, ``.md`` and ``.png`` (TAG: the JAX backend unless ``--tag``).
"""

from __future__ import annotations

from gensynth import runtime

runtime.configure()  # the project's XLA CPU flags, before jax starts its backend

import argparse
import datetime
import math
import pathlib
import sys
import time

import _common as common
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # before any array exists

from gensynth import diffusion

HERE = pathlib.Path(__file__).resolve().parent
PACKAGES = ("gensynth", "jax", "jaxlib", "flax", "numpy", "matplotlib")
SIZE = 16  # image side (px)
LENGTH_PX = 3.0  # correlation length of the covariance
PIXEL_VAR = 0.2  # variance of the smooth part per pixel
FLOOR_VAR = 1e-3  # white variance added to every pixel
NFES = (10, 20, 50, 100)
T = 1000
SCHEDULES = {"linear": diffusion.linear_betas, "cosine": diffusion.cosine_betas}
# (solver, DPM-Solver++ order or None for DDIM, grid)
ROWS = (
    ("ddim", None, "time"),
    ("dpm++2m", 2, "time"),
    ("dpm++3m", 3, "time"),
    ("dpm++2m", 2, "logsnr"),
    ("dpm++3m", 3, "logsnr"),
)
CHECK = (
    "linear",
    "dpm++2m",
    2,
    "time",
    20,
)  # the configuration also run in image space


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        default=str(HERE / "results"),
        help="output folder (default: benchmarks/results)",
    )
    parser.add_argument("--tag", help="file tag (default: the JAX backend, e.g. cpu)")
    return parser.parse_args(argv)


def gaussian_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu [256], eigenvalues [256], eigenvectors [256, 256])`` of the image Gaussian (float64)."""
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    pixels = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)  # [256, 2]
    dist2 = ((pixels[:, None] - pixels[None]) ** 2).sum(-1)
    cov = PIXEL_VAR * np.exp(-dist2 / (2 * LENGTH_PX**2)) + FLOOR_VAR * np.eye(
        SIZE * SIZE
    )
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    r2 = ((pixels - (SIZE - 1) / 2) ** 2).sum(1)
    mu = -0.5 + 0.8 * np.exp(-r2 / (2 * 5.0**2))
    return mu, eigenvalues, eigenvectors


def run_sampler(schedule, eps_fn, x_T, solver_order, grid, K):
    """DDIM (``solver_order`` None) or DPM-Solver++ of that order from ``x_T``, K steps on ``grid``."""
    if grid == "logsnr":
        steps = {"timesteps": diffusion.logsnr_timesteps(schedule, K)}
    else:
        steps = {"num_steps": K}
    key = jax.random.key(
        0
    )  # no noise is drawn into the result: eta = 0 / the ODE solver
    if solver_order is None:
        return diffusion.ddim_sample(
            key, eps_fn, schedule, None, x_T=x_T, clip_x0=False, **steps
        )
    return diffusion.dpm_solver_pp_sample(
        key, eps_fn, schedule, None, x_T=x_T, order=solver_order, clip_x0=False, **steps
    )


def w2_diagonal(m1, s1, m2, s2) -> float:
    """W2 between ``N(m1, diag(s1^2))`` and ``N(m2, diag(s2^2))`` (``s`` the standard deviations)."""
    return float(np.sqrt(np.sum((m1 - m2) ** 2 + (np.abs(s1) - np.abs(s2)) ** 2)))


def w2_gaussians(m1, C1, m2, C2) -> float:
    """W2 between ``N(m1, C1)`` and ``N(m2, C2)``: ``|m1 - m2|^2 + tr C1 + tr C2 - 2 tr (C2^1/2 C1 C2^1/2)^1/2``."""
    w, V = np.linalg.eigh(C2)
    root2 = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    cross = np.linalg.eigvalsh(root2 @ C1 @ root2)
    d2 = (
        np.sum((m1 - m2) ** 2)
        + np.trace(C1)
        + np.trace(C2)
        - 2 * np.sum(np.sqrt(np.clip(cross, 0, None)))
    )
    return float(np.sqrt(max(d2, 0.0)))


def exact_limit(mean, variances, alpha_bar) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the samplers' common limit (module docstring) in the eigenbasis, for a grid
    from step ``T - 1`` to step 0: ``x0 = mean + g (x_T - sqrt(a_T) mean)`` with
    ``g = sqrt(a_0) var / (std_0 std_T)``, ``std^2 = a var + 1 - a``."""
    a0, aT = alpha_bar[0], alpha_bar[-1]
    g = (
        np.sqrt(a0)
        * variances
        / np.sqrt((a0 * variances + 1 - a0) * (aT * variances + 1 - aT))
    )
    return mean - g * np.sqrt(aT) * mean, g


def image_space_w2(
    schedule, mu, eigenvalues, eigenvectors, solver_order, grid, K
) -> float:
    """W2 to the data of one sampler run on ``[257, 16, 16, 1]`` images with the full-covariance
    denoiser ``sqrt(1 - a) (a Sigma + (1 - a) I)^-1 (x - sqrt(a) mu)``: the consistency check."""
    mu_j, lam, U = jnp.asarray(mu), jnp.asarray(eigenvalues), jnp.asarray(eigenvectors)

    def eps_fn(x, t):  # x: [B, 16, 16, 1]
        a = schedule.alpha_bar[t][:, None]  # [B, 1]
        y = (x.reshape(x.shape[0], -1) - jnp.sqrt(a) * mu_j) @ U  # [B, 256]
        return ((y * jnp.sqrt(1.0 - a) / (a * lam + 1.0 - a)) @ U.T).reshape(x.shape)

    n = SIZE * SIZE
    x_T = jnp.concatenate([jnp.zeros((1, n)), jnp.eye(n)]).reshape(n + 1, SIZE, SIZE, 1)
    out = np.asarray(run_sampler(schedule, eps_fn, x_T, solver_order, grid, K)).reshape(
        n + 1, n
    )
    c, G = out[0], (out[1:] - out[0]).T  # x0 = c + G x_T
    return w2_gaussians(c, G @ G.T, mu, (eigenvectors * eigenvalues) @ eigenvectors.T)


def nfe_to_match(w2_at: dict[int, float], evaluate, target: float) -> int | None:
    """The smallest K with ``W2(K) <= target`` near the first measured NFE that reaches it: a
    log-log interpolation from the measured neighbours, then single steps to the crossing.
    ``w2_at`` holds the measured NFEs and gains every K evaluated here."""
    reached = [K for K in sorted(w2_at) if w2_at[K] <= target]
    if not reached:
        return None
    hi = reached[0]
    below = [K for K in sorted(w2_at) if K < hi]
    if below:
        lo = below[-1]
        slope = math.log(w2_at[hi] / w2_at[lo]) / math.log(hi / lo)
        guess = lo * math.exp(math.log(target / w2_at[lo]) / slope)
        K = min(max(math.ceil(guess), lo + 1), hi)
    else:
        lo, K = 0, hi

    def w2(K):
        if K not in w2_at:
            w2_at[K] = evaluate(K)
        return w2_at[K]

    if w2(K) <= target:
        while K - 1 > lo and w2(K - 1) <= target:
            K -= 1
        return K
    while w2(K + 1) > target:
        K += 1
    return K + 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    mu, lam, U = gaussian_data()
    mean = U.T @ mu  # the data in the eigenbasis: N(mean, diag(lam))
    x_T = jnp.stack([jnp.zeros_like(mean), jnp.ones_like(mean)])  # [2, 256]
    results, matches, floors, check = [], [], {}, {}
    for name, betas_fn in SCHEDULES.items():
        betas = betas_fn(T)
        schedule = diffusion.vp_schedule(betas)
        eps_fn = diffusion.gaussian_eps_fn(mean, lam, schedule)
        m_lim, g_lim = exact_limit(mean, lam, np.cumprod(1.0 - betas))
        floors[name] = w2_diagonal(m_lim, g_lim, mean, np.sqrt(lam))

        def evaluate(
            order, grid, K, schedule=schedule, eps_fn=eps_fn, m_lim=m_lim, g_lim=g_lim
        ):
            """``(W2 to the data, W2 to the limit)`` of one sampler run in the eigenbasis."""
            out = np.asarray(run_sampler(schedule, eps_fn, x_T, order, grid, K))
            c, g = out[0], out[1] - out[0]  # x0 = c + g x_T per eigen-direction
            return w2_diagonal(c, g, mean, np.sqrt(lam)), w2_diagonal(
                c, g, m_lim, g_lim
            )

        measured = {}
        for solver, order, grid in ROWS:
            for K in NFES:
                w2_data, w2_limit = evaluate(order, grid, K)
                measured[(solver, grid, K)] = w2_data
                row = {
                    "schedule": name,
                    "solver": solver,
                    "grid": grid,
                    "nfe": K,
                    "w2_data": w2_data,
                }
                results.append({**row, "w2_limit": w2_limit})
                print(
                    f"{name:6s} {solver:8s} {grid:6s} NFE {K:3d}: W2 data {w2_data:.4g}, limit {w2_limit:.4g}"
                )
        target = measured[("ddim", "time", 100)]
        for solver, order, grid in ROWS:
            w2_at = {K: measured[(solver, grid, K)] for K in NFES}
            nfe = nfe_to_match(
                w2_at,
                lambda K, order=order, grid=grid: evaluate(order, grid, K)[0],
                target,
            )
            row = {
                "schedule": name,
                "solver": solver,
                "grid": grid,
                "target_w2": target,
                "nfe": nfe,
            }
            matches.append({**row, "evaluated": dict(sorted(w2_at.items()))})
        if name == CHECK[0]:
            _, solver, order, grid, K = CHECK
            check = {
                "schedule": name,
                "solver": solver,
                "grid": grid,
                "nfe": K,
                "w2_data_eigenbasis": measured[(solver, grid, K)],
                "w2_data_image_space": image_space_w2(
                    schedule, mu, lam, U, order, grid, K
                ),
            }
            print(f"image-space check: {check}")
    seconds = time.perf_counter() - began

    tag = args.tag or jax.default_backend()
    markdown = report(results, matches, floors, check, seconds)
    print(markdown)
    record = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv]),
        "tag": tag,
        "backend": jax.default_backend(),
        "jax_device": str(jax.devices()[0]),
        "machine": common.machine(),
        "versions": common.package_versions(PACKAGES),
        "git": common.git_revision(HERE.parent),
        "config": {
            "data": {
                "image": [SIZE, SIZE, 1],
                "mean": "-0.5 + 0.8 exp(-r^2 / (2 * 5^2)), r the distance to the image centre in px",
                "covariance": f"{PIXEL_VAR} exp(-d^2 / (2 * {LENGTH_PX}^2)) + {FLOOR_VAR} I, d the pixel distance in px",
                "eigenvalue_min": float(lam.min()),
                "eigenvalue_max": float(lam.max()),
            },
            "schedules": {
                name: f"{fn.__name__}({T})" for name, fn in SCHEDULES.items()
            },
            "nfes": list(NFES),
            "rows": [{"solver": s, "order": o, "grid": g} for s, o, g in ROWS],
            "dtype": "float64",
            "ddim_eta": 0.0,
            "clip_x0": False,
            "denoiser": "the exact (optimal) noise predictor of the data Gaussian, run in its eigenbasis",
        },
        "floor_w2": floors,
        "image_space_check": check,
        "results": results,
        "nfe_to_match_ddim_100": matches,
        "seconds": round(seconds, 1),
    }
    paths = common.write_results(args.out, f"sampler_quality-{tag}", record, markdown)
    paths.append(
        plot(results, floors, pathlib.Path(args.out) / f"sampler_quality-{tag}.png")
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def report(results, matches, floors, check, seconds) -> str:
    """The markdown tables: W2 to the data and to the exact limit per NFE, and the NFE matching DDIM-100."""
    lines = [
        "# Sampler quality against NFE (exact W2 on 16x16 Gaussian images, float64)",
        "",
        (
            f"{len(results)} configurations and the NFE searches in {seconds:.0f} s. `floor`: W2 of the samplers' "
            "common limit to the data (prior mismatch at t = T-1, noise left at t = 0); no sampler gets below it. "
            f"Image-space check ({check['solver']}, {check['grid']} grid, {check['nfe']} NFE, {check['schedule']}): "
            f"W2 {check['w2_data_image_space']:.6g} on 16x16 images, {check['w2_data_eigenbasis']:.6g} in the "
            "eigenbasis."
        ),
    ]
    for name in SCHEDULES:
        rows, limit_rows = [], []
        for solver, _, grid in ROWS:
            picked = {
                r["nfe"]: r
                for r in results
                if r["schedule"] == name and r["solver"] == solver and r["grid"] == grid
            }
            match = next(
                m
                for m in matches
                if m["schedule"] == name and m["solver"] == solver and m["grid"] == grid
            )
            nfe = "> 100" if match["nfe"] is None else match["nfe"]
            rows.append([solver, grid, *(picked[K]["w2_data"] for K in NFES), nfe])
            limit_rows.append([solver, grid, *(picked[K]["w2_limit"] for K in NFES)])
        columns = ["solver", "grid", *(f"NFE {K}" for K in NFES)]
        lines += [
            "",
            f"## {name} schedule (T = {T}); floor {floors[name]:.4g}",
            "",
            "W2 to the data Gaussian, and the NFE each solver needs to reach DDIM's W2 at 100 NFE:",
            "",
            common.markdown_table([*columns, "NFE to match DDIM-100"], rows),
            "",
            "W2 to the exact limit (discretisation error):",
            "",
            common.markdown_table(columns, limit_rows),
        ]
    return "\n".join(lines)


def plot(results, floors, path: pathlib.Path) -> pathlib.Path:
    """log W2 (to the data) against NFE, one panel per schedule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(SCHEDULES), figsize=(5.5 * len(SCHEDULES), 4.2), sharey=True
    )
    for ax, name in zip(axes, SCHEDULES, strict=True):
        for solver, _, grid in ROWS:
            points = sorted(
                (r["nfe"], r["w2_data"])
                for r in results
                if r["schedule"] == name and r["solver"] == solver and r["grid"] == grid
            )
            ax.loglog(
                *zip(*points, strict=True),
                "o-" if grid == "time" else "s--",
                label=f"{solver} ({grid})",
            )
        target = next(
            r["w2_data"]
            for r in results
            if r["schedule"] == name and r["solver"] == "ddim" and r["nfe"] == 100
        )
        ax.axhline(target, color="gray", lw=0.8, ls="--", label="DDIM at 100 NFE")
        ax.axhline(
            floors[name], color="black", lw=0.8, ls=":", label="floor (exact limit)"
        )
        ax.set(
            title=f"{name} schedule",
            xlabel="NFE",
            xticks=list(NFES),
            xticklabels=[str(k) for k in NFES],
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("W2 to the data Gaussian")
    axes[-1].legend(fontsize=8)
    fig.suptitle("DDIM vs DPM-Solver++ on 16x16 Gaussian images (exact W2, float64)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
