"""E4: 3D sparse-view CT with a 2D prior (spec Sect. 10.3 E4).

A stack of axial MNI152 slices (quick: the 30 slices of the 4 mm volume at 32 px, voxels about
5.7 x 5.7 x 4 mm; full: 58 slices of the 2 mm volume) is measured slice by slice with 8-view
parallel-beam CT. Variants: slice-independent DDS; DDS with one ADMM-TV-z iteration per step
(rho = 10, lambda = 0.04); DiffusionMBIR (VE PC with ADMM-TV-z, N = 100 quick / 1000 full).
Reported: PSNR averaged over the axial, coronal and sagittal planes, the relative z-gradient
error ``||D_z x - D_z x_ref|| / ||D_z x_ref||`` and the NFE per slice. The stack comes from the
same template the prior was trained on (all its axial slices but the held-out ones), so this
measures inter-slice consistency, not generalisation.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from ch07 import prior as prior_lib
from ch07 import tasks
from gensynth import data, inverse
from gensynth.recipes import reconstruct

VIEWS = 8


def plane_psnr(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB) over the planes of volumes ``[Z, H, W]`` cut along each axis (planes of an
    all-background reference are skipped)."""
    out = {}
    for name, axis in (("axial", 0), ("coronal", 1), ("sagittal", 2)):
        xs, rs = np.moveaxis(x, axis, 0), np.moveaxis(ref, axis, 0)
        keep = rs.reshape(len(rs), -1).max(axis=1) > -0.99
        out[f"psnr_{name}"] = float(np.mean(tasks.quality(xs[keep], rs[keep])["psnr"]))
    return out


def z_gradient_error(x: np.ndarray, ref: np.ndarray) -> float:
    """``||D_z x - D_z ref|| / ||D_z ref||`` with forward differences along axis 0 (not circular)."""
    dx, dr = np.diff(x, axis=0), np.diff(ref, axis=0)
    return float(np.linalg.norm(dx - dr) / np.linalg.norm(dr))


def run(prior: prior_lib.Prior, *, quick: bool, seed: int = 0, log=print) -> tuple[list[dict], dict]:
    """Runs E4; returns one record per variant and the volumes for the figure."""
    size = prior.cfg.data.image_size
    ref = data.mni152_slices(size, spacing_mm=4 if quick else 2)[..., 0]  # [Z, H, W]
    op = inverse.Radon.create(inverse.sparse_view_angles(VIEWS), size)
    y = tasks.simulate(jax.random.key(seed), op, ref)  # [Z, V, D]
    score_fn, sde = reconstruct.make_ve_score_fn(prior.model_fn, prior.schedule, prior.prediction)
    gamma = 1.0 / tasks.NOISE**2
    key = jax.random.key(seed + 1)
    variants = {
        "FBP": lambda: tasks.baseline(op, y),
        "DDS (slices)": lambda: inverse.dds(
            key, prior.model_fn, prior.schedule, op, y, gamma=gamma, prediction=prior.prediction)[0],
        "DDS + TV-z": lambda: inverse.dds_3d(
            key, prior.model_fn, prior.schedule, op, y[None], gamma=gamma, prediction=prior.prediction)[0][0],
        "DiffusionMBIR": lambda: inverse.diffusion_mbir(
            key, score_fn, op, y[None], sde=sde, num_steps=100 if quick else 1000)[0][0],
    }
    nfe = {"FBP": 0, "DDS (slices)": 50, "DDS + TV-z": 50, "DiffusionMBIR": 2 * (100 if quick else 1000)}
    records, volumes = [], {"reference": ref}
    for name, solve in variants.items():
        began = time.perf_counter()
        x = np.asarray(jax.block_until_ready(solve()))
        seconds = time.perf_counter() - began
        volumes[name] = x
        records.append({"variant": name, **plane_psnr(x, ref), "z_grad_err": z_gradient_error(x, ref),
                        "nfe_per_slice": nfe[name], "seconds": round(seconds, 1), "slices": int(ref.shape[0])})
        log(f"  {name}: axial {records[-1]['psnr_axial']:.2f} / coronal {records[-1]['psnr_coronal']:.2f} / "
            f"sagittal {records[-1]['psnr_sagittal']:.2f} dB, z-grad err {records[-1]['z_grad_err']:.3f}")
    return records, volumes
