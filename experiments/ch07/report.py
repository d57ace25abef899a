"""Tables, figures and the directions check of the chapter 7 experiments E2-E4."""

from __future__ import annotations

import pathlib

import numpy as np
from report_kit import Claims, markdown

from ch07 import e2_trained
from gensynth import figures


def _pm(r: dict, key: str, fmt: str) -> str:
    return f"{r[f'{key}_mean']:{fmt}} ± {r[f'{key}_sd']:{fmt}}"


def _opt(value, fmt: str) -> str:
    return "–" if value is None else f"{value:{fmt}}"


def e2_table(records: list[dict]) -> str:
    rows = [
        [r["setting"], r["method"], _pm(r, "psnr", ".2f"), _pm(r, "ssim", ".3f"), str(r.get("nfe", 0)),
         str(r.get("vjps", 0)), _opt(r.get("s_per_image"), ".3f"), _opt(r.get("peak_mb"), ".0f")]
        for r in records
    ]
    headers = ["setting", "method", "PSNR (dB)", "SSIM", "NFE", "VJPs", "s / image", "peak MB (XLA)"]
    return markdown(headers, rows)


def e3_table(records: list[dict]) -> str:
    rows = [[r["solver"], str(r["accel"]), f"{r['accel_effective']:.2f}", f"{r['std_mean']:.4f}",
             f"{r['std_max']:.3f}", f"{r['err_mean']:.4f}", f"{r['corr_std_err']:.2f}"] for r in records]
    headers = ["solver", "R", "R effective", "mean std", "max std", "mean |mean − GT|", "corr(std, err)"]
    return markdown(headers, rows)


def e4_table(records: list[dict]) -> str:
    rows = [[r["variant"], f"{r['psnr_axial']:.2f}", f"{r['psnr_coronal']:.2f}", f"{r['psnr_sagittal']:.2f}",
             f"{r['z_grad_err']:.3f}", str(r["nfe_per_slice"]), f"{r['seconds']:.1f}"] for r in records]
    headers = ["variant", "axial PSNR", "coronal PSNR", "sagittal PSNR", "z-gradient error", "NFE / slice", "s"]
    return markdown(headers, rows)


def _find(records: list[dict], setting: str, method: str) -> dict | None:
    return next((r for r in records if r["setting"] == setting and r["method"] == method), None)


def directions(e2: list[dict] | None, e3: list[dict] | None, e4: list[dict] | None) -> str:
    """The chapter's directions, each stated with the numbers measured here and a verdict."""
    claims = Claims()
    say = claims.say

    for setting in e2_trained.FULL if e2 else ():
        dds, pocs, base = (_find(e2, setting, m) for m in ("dds", "projection", "zero-filled/FBP"))
        dps, mcg = _find(e2, setting, "dps"), _find(e2, setting, "mcg")
        say(f"DDS at {dds['nfe']} NFE matches or beats score-POCS at {pocs['nfe']} NFE ({setting})",
            dds["psnr_mean"] >= pocs["psnr_mean"] - 0.5,
            f"{dds['psnr_mean']:.2f} vs {pocs['psnr_mean']:.2f} dB (baseline {base['psnr_mean']:.2f} dB; "
            "'matches' = within 0.5 dB)")
        slowest = min(pocs["s_per_image"], dps["s_per_image"]) / dds["s_per_image"]
        say(f"DDS runs >= 10x faster than score-POCS and DPS ({setting})", slowest >= 10,
            f"{pocs['s_per_image'] / dds['s_per_image']:.1f}x vs POCS, {dps['s_per_image'] / dds['s_per_image']:.1f}x "
            f"vs DPS ({dps['nfe']} steps; per-image seconds of a batch of 16)")
        ratio = min(dps["peak_mb"], mcg["peak_mb"]) / dds["peak_mb"]
        say(f"DPS/MCG need far more memory than DDS ({setting})", ratio >= 2,
            f"peak {dps['peak_mb']:.0f} / {mcg['peak_mb']:.0f} MB vs {dds['peak_mb']:.0f} MB ({ratio:.1f}x; "
            "XLA memory analysis of the compiled solve)")
    if e2:
        train, tests = e2_trained.SUPERVISED_TRAIN, e2_trained.SUPERVISED_TEST[1:]
        for test in tests:
            sup = _find(e2, train, "supervised U-Net")["psnr_mean"] - _find(e2, test, "supervised U-Net")["psnr_mean"]
            dds = _find(e2, train, "dds")["psnr_mean"] - _find(e2, test, "dds")["psnr_mean"]
            say(f"diffusion loses less than the supervised U-Net off its training mask ({train} -> {test})",
                dds < sup, f"PSNR drop DDS {dds:.2f} dB vs supervised {sup:.2f} dB")
    for solver in sorted({r["solver"] for r in e3 or ()}):
        stds = [r["std_mean"] for r in e3 if r["solver"] == solver]
        say(f"posterior std grows with acceleration ({solver}, R = 2, 4, 6, 8)",
            bool(np.all(np.diff(stds) > 0)), "mean std " + ", ".join(f"{s:.4f}" for s in stds))
    if e4:
        by = {r["variant"]: r for r in e4}
        a, b = by["DDS (slices)"], by["DDS + TV-z"]
        gain = [b[f"psnr_{p}"] - a[f"psnr_{p}"] for p in ("coronal", "sagittal")]
        say("TV along z improves coronal/sagittal PSNR at no extra NFE", min(gain) > 0,
            f"coronal {a['psnr_coronal']:.2f} -> {b['psnr_coronal']:.2f} dB, sagittal {a['psnr_sagittal']:.2f} -> "
            f"{b['psnr_sagittal']:.2f} dB, z-gradient error {a['z_grad_err']:.3f} -> {b['z_grad_err']:.3f}")
    return claims.markdown()


def e2_figures(folder: pathlib.Path, records: list[dict], examples: dict) -> None:
    """``figure.png`` (PSNR bars) and ``examples.png`` (one test image per method)."""
    e2_figure(folder / "figure.png", records)
    e2_examples(folder / "examples.png", examples)


def e2_figure(path: pathlib.Path, records: list[dict]) -> None:
    """PSNR (mean ± sd) per setting and method, as grouped bars."""
    from matplotlib.figure import Figure

    settings = list(dict.fromkeys(r["setting"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig = Figure(figsize=(13, 4.5), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        found = [_find(records, s, method) for s in settings]
        xs = np.arange(len(settings)) + (j - (len(methods) - 1) / 2) * width
        ax.bar(xs, [f["psnr_mean"] if f else 0.0 for f in found], width,
               yerr=[f["psnr_sd"] if f else 0.0 for f in found], label=method, capsize=1)
    ax.set_xticks(np.arange(len(settings)), settings, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("PSNR (dB), mean ± sd over test images")
    ax.legend(ncol=4, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    figures.save_figure(fig, path)


def e2_examples(path: pathlib.Path, examples: dict) -> None:
    """One test image per full setting: the reference and every method's reconstruction."""
    from matplotlib.figure import Figure

    names = list(next(iter(examples.values())))
    fig = Figure(figsize=(1.6 * len(names), 1.9 * len(examples)), dpi=100)
    for i, (setting, shown) in enumerate(examples.items()):
        for j, name in enumerate(names):
            cell = fig.add_subplot(len(examples), len(names), i * len(names) + j + 1)
            cell.imshow(shown[name], cmap="gray", vmin=-1, vmax=1)
            cell.set_xticks([]), cell.set_yticks([])
            cell.set_title(name, fontsize=8)
            if j == 0:
                cell.set_ylabel(setting, fontsize=8)
    figures.save_figure(fig, path)


def e3_figures(folder: pathlib.Path, records: list[dict], maps: dict) -> None:
    """``figure.png``: mean std vs R per solver, and the std maps of the first image."""
    from matplotlib.figure import Figure

    solvers = sorted({r["solver"] for r in records})
    accels = sorted({r["accel"] for r in records})
    fig = Figure(figsize=(3 + 2 * len(accels), 2.6 * len(solvers)), dpi=100)
    grid = fig.add_gridspec(len(solvers), len(accels) + 1)
    vmax = max(float(m[0].max()) for m in maps["maps"].values())
    cells = []
    for i, solver in enumerate(solvers):
        ax = fig.add_subplot(grid[i, 0])
        ax.plot(accels, [r["std_mean"] for r in records if r["solver"] == solver], "o-")
        ax.set_xlabel("acceleration R"), ax.set_ylabel(f"{solver}: mean std")
        for j, r in enumerate(accels):
            cell = fig.add_subplot(grid[i, j + 1])
            cells.append(cell)
            image = cell.imshow(maps["maps"][(solver, r)][0], cmap="magma", vmin=0, vmax=vmax)
            cell.set_xticks([]), cell.set_yticks([])
            cell.set_title(f"std, R = {r}", fontsize=8)
    fig.colorbar(image, ax=cells, fraction=0.02, label="std ([0, 1] units)")
    figures.save_figure(fig, folder / "figure.png")


def e4_figures(folder: pathlib.Path, records: list[dict], volumes: dict) -> None:
    """``figure.png``: middle coronal and sagittal planes of the reference and every variant."""
    names = list(volumes)
    planes = []
    for axis in (1, 2):
        for name in names:
            v = volumes[name]
            planes.append(np.take(v, v.shape[axis] // 2, axis=axis)[::-1])  # superior up
    figures.save_image_grid(folder / "figure.png", np.stack(planes)[..., None], ncols=len(names),
                            title="coronal (top) and sagittal (bottom): " + " | ".join(names))
