"""E1: every solver against the exact posterior of an analytic Gaussian prior (no training).

Prior ``x ~ N(mu, diag(sigma2))`` on 8x8 images; the exact VP denoiser
:func:`gensynth.diffusion.gaussian_eps_fn` stands in for the network (linear schedule, T = 1000).
For each linear operator (inpainting with half the pixels hidden, x2 average-pooling
super-resolution, a dense random 32x64 matrix with unit spectral norm, single-coil MRI with a
x2 random 1-D mask on real images via :class:`gensynth.inverse.RealImage`) one
ground truth is drawn, ``y = A x + n`` with Gaussian noise of std ``SIGMA_Y`` per real
component on the measured entries, and every solver draws N samples in one batch (one jitted
program per solver). The exact posterior is ``N(m, C)`` with
``C^-1 = diag(1/sigma2) + A_r^T A_r / SIGMA_Y^2`` (``A_r``: real and imaginary rows stacked)
and ``m = C (mu / sigma2 + A_r^T y_r / SIGMA_Y^2)``.

Reported per (operator, solver):
  - ``w2``: 2-Wasserstein distance between the FULL-covariance Gaussian fitted to the samples
    and the exact posterior (closed form; the "exact" row draws N exact posterior samples, so
    its W2 is the finite-sample floor, and the "prior" row is the no-data reference);
  - ``mean_err``: ``||mean(samples) - m||`` (Euclidean over the 64 pixels);
  - ``residual``: mean over samples of ``||A x - y||`` (exact posterior samples: the "exact" row);
  - ``var_ratio``: total sample variance / total exact posterior variance, ``tr(C_s) / tr(C)``
    (1 is right; < 1 over-confident). A trace ratio rather than a per-pixel mean, so that the
    near-zero posterior variance of observed pixels (inpainting) does not dominate it;
  - ``nfe``, ``vjps`` (per batch), ``seconds`` (a second, compiled run of the whole batch) and
    ``compile_run_s`` (the first call, compile included).

Solver settings: book defaults (DPS scale 0.5 and MCG weight 0.1 over all 1000 steps; DDS 50
steps, 5 CG steps, eta 0.85, ``gamma = 1 / SIGMA_Y^2``; CCDF from ``A^dagger y`` (``A^H y`` for
MRI) at ``t0 = 0.2 T``; projection = score-MRI VE predictor-corrector with one corrector step, on
the VE score converted from the VP denoiser by
:func:`gensynth.recipes.reconstruct.make_ve_score_fn`, 500 steps with --quick, 2000 otherwise;
Score-ALD on the same VE score, ``gamma_t = sigma_t``, 3 Langevin steps per level, 300 levels
with --quick, 1000 otherwise). Projection and CCDF enforce consistency with the NOISY data, and
the Landweber DC of the non-orthonormal operators is not a projection, so neither targets this
posterior exactly; they are reported for completeness.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from gensynth import diffusion, figures, inverse, runs
from gensynth.recipes.reconstruct import make_ve_score_fn

SHAPE = (8, 8)
SIGMA_Y = 0.1  # noise std per real component of the measurement
SOLVERS = ("dps", "mcg", "dds", "ccdf", "projection", "score_ald")


def gaussian_prior(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma2)``, each float32 ``[8, 8]``: a smooth mean in [-0.5, 0.5], variances in [0.1, 0.5]."""
    rng = np.random.default_rng(seed)
    r, c = np.meshgrid(np.linspace(-1, 1, SHAPE[0]), np.linspace(-1, 1, SHAPE[1]), indexing="ij")
    mu = 0.5 * np.cos(2.0 * r) * np.sin(2.5 * c + 0.3)
    sigma2 = rng.uniform(0.1, 0.5, SHAPE)
    return mu.astype(np.float32), sigma2.astype(np.float32)


def operators(seed: int = 0) -> dict[str, object]:
    """The E1 operators on one real ``[8, 8]`` image."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(32, 64))
    mask, _ = inverse.random1d(SHAPE, 2.0, seed=seed)
    return {
        "inpaint": inverse.Inpaint(mask=inverse.random_pixel_mask(SHAPE, 0.5, seed)),
        "sr_x2": inverse.AvgPoolSR(factor=2),
        "dense_32x64": inverse.DenseOperator.create(jnp.asarray(a / np.linalg.norm(a, 2), jnp.float32), SHAPE),
        "mri_1d_x2": inverse.RealImage(inverse.SingleCoilMRI(mask=jnp.asarray(mask))),
    }


def real_rows(op) -> tuple[np.ndarray, np.ndarray]:
    """``(A_r [m_r, 64], measured [m_r] bool)``: the operator as a real matrix (real and imaginary
    rows stacked for complex measurements) and which rows are measured (non-zero)."""
    jac = np.asarray(jax.jacfwd(op.A)(jnp.zeros(SHAPE, jnp.float32))).reshape(-1, SHAPE[0] * SHAPE[1])
    rows = np.concatenate([jac.real, jac.imag]) if np.iscomplexobj(jac) else jac
    return rows.astype(np.float64), np.linalg.norm(rows, axis=1) > 1e-9


def to_real(y: np.ndarray) -> np.ndarray:
    """Flattened measurement as real rows, matching :func:`real_rows`."""
    y = np.asarray(y).ravel()
    return np.concatenate([y.real, y.imag]) if np.iscomplexobj(y) else y


def from_real(yr: np.ndarray, like: jax.Array) -> jax.Array:
    """Inverse of :func:`to_real` for a measurement shaped and typed like ``like``."""
    n = like.size
    y = yr[:n] + 1j * yr[n:] if jnp.iscomplexobj(like) else yr
    return jnp.asarray(y.reshape(like.shape), like.dtype)


def exact_posterior(rows, measured, yr, mu, sigma2) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior ``(mean [64], cov [64, 64])`` in float64 (information form)."""
    ar = rows[measured]
    precision = np.diag(1.0 / sigma2.ravel()) + ar.T @ ar / SIGMA_Y**2
    cov = np.linalg.inv(precision)
    mean = cov @ (mu.ravel() / sigma2.ravel() + ar.T @ yr[measured] / SIGMA_Y**2)
    return mean, 0.5 * (cov + cov.T)


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_w2(m1, c1, m2, c2) -> float:
    """2-Wasserstein distance between ``N(m1, c1)`` and ``N(m2, c2)`` (full covariances).

    ``W2^2 = ||m1 - m2||^2 + tr(c1 + c2 - 2 (c2^1/2 c1 c2^1/2)^1/2)``.

    >>> round(gaussian_w2(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)), 4)
    1.4142
    """
    s2 = _sqrtm_psd(c2)
    cross = _sqrtm_psd(s2 @ c1 @ s2)
    value = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * cross)
    return float(np.sqrt(max(value, 0.0)))


def summarize(samples, op, y, mean, cov) -> dict[str, float]:
    """The E1 metrics of ``samples [N, 8, 8]`` against the exact posterior."""
    flat = np.asarray(samples, np.float64).reshape(samples.shape[0], -1)
    m, c = flat.mean(0), np.cov(flat, rowvar=False)
    resid = np.asarray(jax.vmap(lambda x: jnp.linalg.norm(op.A(x) - y))(jnp.asarray(samples, jnp.float32)))
    return {
        "w2": gaussian_w2(m, c, mean, cov),
        "mean_err": float(np.linalg.norm(m - mean)),
        "residual": float(resid.mean()),
        "var_ratio": float(np.trace(c) / np.trace(cov)),
    }


def solve(name, key, eps_fn, ve, schedule, op, ys, x_init, *, quick: bool, gamma: float):
    """One solver on the batch ``ys [N, ...]``; ``ve = (score_fn, sde)`` for projection and Score-ALD (made
    once, so that the jitted solver is compiled once). Returns ``(x [N, 8, 8], info)``."""
    if name == "dps":
        return inverse.dps(key, eps_fn, schedule, op, ys)
    if name == "mcg":
        return inverse.mcg(key, eps_fn, schedule, op, ys)
    if name == "dds":
        return inverse.dds(key, eps_fn, schedule, op, ys, gamma=gamma)
    if name == "ccdf":
        return inverse.ccdf(key, eps_fn, schedule, op, ys, x_init)
    if name == "projection":
        return inverse.score_mri(key, ve[0], op, ys, sde=ve[1], num_steps=500 if quick else 2000)
    if name == "score_ald":
        return inverse.score_ald(key, ve[0], op, ys, sde=ve[1], num_steps=300 if quick else 1000, sigma_y=SIGMA_Y)
    raise ValueError(f"solver: expected one of {SOLVERS}, got {name!r}")


def run_e1(*, quick: bool, seed: int = 0) -> list[dict]:
    """Runs E1; returns one record per (operator, method)."""
    n = 1024 if quick else 8192
    mu, sigma2 = gaussian_prior(seed)
    schedule = diffusion.vp_schedule(diffusion.linear_betas(1000))
    eps_fn = diffusion.gaussian_eps_fn(jnp.asarray(mu)[..., None], jnp.asarray(sigma2)[..., None], schedule)
    ve = make_ve_score_fn(eps_fn, schedule, "eps")
    rng = np.random.default_rng(seed + 1)
    records = []
    for op_name, op in operators(seed).items():
        rows, measured = real_rows(op)
        x_true = mu + np.sqrt(sigma2) * rng.normal(size=SHAPE)
        y_clean = op.A(jnp.asarray(x_true, jnp.float32))
        yr = to_real(y_clean) + SIGMA_Y * measured * rng.normal(size=rows.shape[0])
        y = from_real(yr, y_clean)
        mean, cov = exact_posterior(rows, measured, yr, mu, sigma2)
        ys = jnp.broadcast_to(y, (n, *y.shape))
        x_init = jnp.broadcast_to(op.A_dagger(y) if hasattr(op, "A_dagger") else op.A_adjoint(y), (n, *SHAPE))
        exact = rng.multivariate_normal(mean, cov, size=n).reshape(n, *SHAPE)
        prior = (mu + np.sqrt(sigma2) * rng.normal(size=(n, *SHAPE)))
        for method, samples in (("exact", exact), ("prior", prior)):
            records.append({"operator": op_name, "method": method, **summarize(samples, op, y, mean, cov),
                            "nfe": 0, "vjps": 0, "seconds": 0.0, "compile_run_s": 0.0})
        for k, name in enumerate(SOLVERS):
            key = jax.random.fold_in(jax.random.key(seed), k)
            began = time.perf_counter()
            jax.block_until_ready(
                solve(name, key, eps_fn, ve, schedule, op, ys, x_init, quick=quick, gamma=1 / SIGMA_Y**2)[0]
            )
            first = time.perf_counter() - began
            began = time.perf_counter()
            x, info = solve(name, jax.random.fold_in(key, 1), eps_fn, ve, schedule, op, ys, x_init, quick=quick,
                            gamma=1 / SIGMA_Y**2)
            x = jax.block_until_ready(x)
            seconds = time.perf_counter() - began
            records.append({"operator": op_name, "method": name, **summarize(np.asarray(x), op, y, mean, cov),
                            "nfe": info["nfe"], "vjps": info["vjps"], "seconds": round(seconds, 3),
                            "compile_run_s": round(first, 3)})
            print(f"  {op_name:12s} {name:10s} W2 {records[-1]['w2']:.3f}  ({seconds:.1f} s)", flush=True)
    return records


def table(records: list[dict], n: int) -> str:
    """Markdown table of the E1 records."""
    lines = [
        (
            f"E1: Gaussian prior on 8x8, noise std {SIGMA_Y}, N = {n} samples per method; "
            "W2 between full-covariance Gaussians (exact row = finite-sample floor); "
            "var ratio = tr(sample cov) / tr(posterior cov)."
        ),
        "",
        "| operator | method | W2 | mean err | mean ‖Ax−y‖ | var ratio | NFE | VJPs | s (run) | s (compile+run) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['operator']} | {r['method']} | {r['w2']:.3f} | {r['mean_err']:.3f} | {r['residual']:.3f} | "
            f"{r['var_ratio']:.2f} | {r['nfe']} | {r['vjps']} | {r['seconds']:.2f} | {r['compile_run_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def figure(path: pathlib.Path, records: list[dict]) -> None:
    """Grouped bar chart of W2 per operator and method (log scale), written atomically."""
    from matplotlib.figure import Figure

    ops = list(dict.fromkeys(r["operator"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    w2 = {(r["operator"], r["method"]): r["w2"] for r in records}
    fig = Figure(figsize=(9, 4), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        xs = np.arange(len(ops)) + (j - (len(methods) - 1) / 2) * width
        ax.bar(xs, [w2[(o, method)] for o in ops], width, label=method)
    ax.set_xticks(np.arange(len(ops)), ops)
    ax.set_yscale("log")
    ax.set_ylabel("W2 to the exact posterior")
    ax.set_title("E1: solvers vs the exact Gaussian posterior")
    ax.legend(ncol=4, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    figures.save_figure(fig, path)


def run(out: pathlib.Path, *, quick: bool, seed: int = 0) -> list[dict]:
    """Runs E1 and writes ``table.md``, ``metrics.json`` and ``figure.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    records = run_e1(quick=quick, seed=seed)
    n = 1024 if quick else 8192
    runs.atomic_write_text(out / "table.md", table(records, n))
    runs.atomic_write_json(out / "metrics.json", {
        "experiment": "ch07 E1", "quick": quick, "sigma_y": SIGMA_Y, "shape": list(SHAPE), "samples": n,
        "backend": jax.default_backend(), "wall_seconds": round(time.perf_counter() - began, 1), "records": records,
    })
    figure(out / "figure.png", records)
    return records
