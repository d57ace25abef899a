"""`gensynth reconstruct`: solve a simulated inverse problem with a trained diffusion run as prior.

Wiring only; the operators and solvers live in :mod:`gensynth.inverse`. Steps:

1. reference: one image of a data set at the run's image size, preprocessed as in training
   (``[H, W]`` float32 in [-1, 1]);
2. operator (``mri``, ``mri-multicoil``, ``ct``, ``inpaint``, ``sr``, ``blur``) and
   ``y = A x_ref + noise`` (Gaussian, std ``noise`` in the measurement's units; MRI and
   inpainting noise only on the sampled entries);
3. a baseline (zero-filled MRI, FBP, the observed pixels, nearest upsampling, the blurred image);
4. the solver with the run's EMA network as prior; writes a NEW folder with ``reference.png``,
   ``measurement.png``, ``baseline.png``, ``recon.png`` (reference | baseline | reconstruction
   | |error|), ``recon.nii.gz`` and ``metrics.json``.

Decisions:

- ``--accel`` is the undersampling ratio (pixels per measurement) for every operator that has
  one: MRI masks (nominal R; the effective R goes to metrics.json), inpainting (a random
  ``1 - 1/accel`` of the pixels hidden) and super-resolution (pooling factor
  ``round(sqrt(accel))``). Blur (Gaussian, std 1.5 px) and CT (``--views`` over
  ``--angle-range`` degrees) ignore it.
- MRI with a one-channel real network: the reference is a real image with zero phase, and the
  unknown is kept REAL. :class:`gensynth.inverse.RealImage` restricts the complex operator to real images
  (``A_r x = A x``, ``A_r^T y = Re(A^H y)``, the exact adjoint for ``<u, v> = Re(u^H v)``), so
  every solver, CG included, works on real images with the default channel layout. Since
  ``A_r A_r^T != I``, its data-consistency step is one Landweber step
  ``x + Re(A^H (y - A x))``, not an exact projection. The zero-filled baseline is
  ``Re(A^H y)``. Metrics compare real images in [-1, 1] (``data_range = 2``), not magnitudes:
  the magnitude of a signed image is meaningless.
- ``projection`` (score-MRI) is a VE predictor-corrector solver; the VP network becomes a VE
  score by :func:`make_ve_score_fn` (``x_vp = s_t x_ve``, ``score = -eps / sigma_t`` at the
  nearest trained VP level), on the VE SDE spanning the schedule's own noise levels.

References:
  Book ch. 7 (solvers), spec ch. 7, Sect. 10.3 (E2 setting).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
from flax import nnx

from gensynth import data, diffusion, figures, inverse, metrics, runs
from gensynth.recipes import image_diffusion as recipe

OPERATORS = ("mri", "mri-multicoil", "ct", "inpaint", "sr", "blur")
MASKS = ("uniform1d", "random1d", "gaussian1d", "gaussian2d", "poisson", "radial")
SOLVERS = ("projection", "mcg", "dps", "dds", "ccdf")
DATA_RANGE = 2.0  # images in [-1, 1]
N_COILS = 4  # birdcage coils for mri-multicoil
BLUR_SIGMA = 1.5  # Gaussian blur std in pixels

_MASK_FNS = {
    "uniform1d": inverse.uniform1d,
    "random1d": inverse.random1d,
    "gaussian1d": inverse.gaussian1d,
    "gaussian2d": inverse.gaussian2d,
    "poisson": inverse.poisson_vd,
    "radial": inverse.radial,
}


def make_ve_score_fn(model_fn, schedule: diffusion.VPSchedule, prediction: str):
    """Turns a VP model function into a VE score function on the schedule's noise levels.

    With ``s_k = sqrt(alpha_bar_k)`` and ``sigma_k = sqrt((1 - alpha_bar_k) / alpha_bar_k)``
    (Eq. 7.9, :func:`gensynth.diffusion.vp_s_sigma`), a VE state ``x_ve = x_0 + sigma z`` is
    the VP state ``x_vp = s_k x_ve`` at the level ``k`` with ``sigma_k = sigma``, and
    ``grad log p(x_ve) = -eps(x_vp, k) / sigma_k`` (Eq. 7.19 with ``s = 1``). Continuous VE
    times map to the nearest trained level in ``log sigma``.

    Args:
      model_fn: ``model_fn(x, t) -> out``, ``x [B, ...]``, ``t [B]`` int32 in 0..T-1.
      schedule: the training VP schedule (T levels).
      prediction: what the network predicts (``"eps"``, ``"x0"`` or ``"v"``).

    Returns:
      ``(score_fn, sde)``: ``score_fn(x, t) -> [B, ...]`` with ``t [B]`` continuous in (0, 1],
      and the :class:`gensynth.diffusion.VESDE` with ``sigma_min = sigma_0`` and
      ``sigma_max = sigma_{T-1}`` whose ``sigma(t)`` the times refer to.

    References:
      Book ch. 7, Sect. 7.2.1 (VP as a scaled VE process); Song et al. 2021, Sect. 3.4.
    """
    s_all, sigma_all = diffusion.vp_s_sigma(schedule.alpha_bar)  # [T] each
    sde = diffusion.VESDE(sigma_min=float(sigma_all[0]), sigma_max=float(sigma_all[-1]))
    log_sigma = jnp.log(sigma_all)

    def score_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        k = jnp.argmin(jnp.abs(jnp.log(sde.sigma(t))[:, None] - log_sigma[None]), axis=1)  # [B]
        k = k.astype(jnp.int32)
        x_vp = diffusion.broadcast_coef(s_all[k], x) * x
        out = model_fn(x_vp, k).astype(x.dtype)
        eps, _, _ = diffusion.model_output_to_eps_x0(out, x_vp, k, schedule, prediction)
        return diffusion.eps_to_score(eps, 1.0, sigma_all[k])

    return score_fn, sde


# ---------------------------------------------------------------- reference image


def load_reference(source: str, size: int, index: int | None) -> tuple[np.ndarray, int, float]:
    """One reference image ``[size, size]`` float32 in [-1, 1], its index and pixel size (mm).

    Args:
      source: a built-in data set (one channel) or a ``.nii``/``.nii.gz`` file (reoriented to
        RAS, scaled per volume at its 0.5/99.5 percentiles and cut axially, as in training).
      size: the model's image side.
      index: slice index (None: the middle one).

    Raises:
      ValueError: for an unknown data set, a multi-channel one or an index out of range.
    """
    if source.endswith(data.nifti.NIFTI_SUFFIXES):
        slices = data.NiftiFolderSource(source, mode="slices", size=size)
        images = np.stack([slices[i]["image"] for i in range(len(slices))])[..., :1]  # [N, size, size, 1]
        canonical = nib.as_closest_canonical(nib.load(source))  # header only; the grid the slices came from
        spacing = float(canonical.header.get_zooms()[0]) * max(canonical.shape[:2]) / size
    elif source in data.BUILTIN_DATASETS and source != "mni152_tissue":
        images = data.builtin_dataset(source, size)
        spacing = recipe.pixel_spacing_mm(recipe.DataConfig(dataset=source, image_size=size))
    else:
        raise ValueError(
            f"--data {source!r}: expected a .nii/.nii.gz file or one of "
            f"{tuple(n for n in data.BUILTIN_DATASETS if n != 'mni152_tissue')}"
        )
    n = images.shape[0]
    index = n // 2 if index is None else index
    if not 0 <= index < n:
        raise ValueError(f"--slice {index}: expected 0..{n - 1} for {source}")
    return images[index, ..., 0], index, spacing


# ---------------------------------------------------------------- operators


def build_operator(
    name: str, size: int, *, mask: str, accel: float, views: int, angle_range: float, seed: int
) -> tuple[Any, dict[str, Any]]:
    """The operator on one real ``[size, size]`` image and facts about it for metrics.json.

    Raises:
      ValueError: for an unknown operator or mask, or bad ``accel``/``views``/``angle_range``.
    """
    if name in ("mri", "mri-multicoil"):
        if mask not in _MASK_FNS:
            raise ValueError(f"--mask {mask!r}: expected one of {MASKS}")
        if mask == "uniform1d":  # deterministic: no seed
            m, effective = inverse.uniform1d((size, size), accel)
        else:
            m, effective = _MASK_FNS[mask]((size, size), accel, seed=seed)
        m = jnp.asarray(m)
        if name == "mri":
            op = inverse.SingleCoilMRI(mask=m)
        else:
            op = inverse.MultiCoilMRI(mask=m, maps=inverse.birdcage_maps((size, size), N_COILS))
        return inverse.RealImage(op), {"mask": mask, "accel_nominal": accel, "accel_effective": effective}
    if name == "ct":
        if views < 1 or not 0 < angle_range <= 180:
            raise ValueError(f"--views {views} / --angle-range {angle_range}: need >= 1 view over (0, 180] deg")
        if angle_range == 180:
            angles = inverse.sparse_view_angles(views)
        else:
            angles = inverse.limited_angle_angles(views, step_deg=angle_range / views)
        return inverse.Radon.create(angles, size), {"views": views, "angle_range_deg": angle_range}
    if not accel >= 1:
        raise ValueError(f"--accel {accel}: expected >= 1")
    if name == "inpaint":
        missing = 1.0 - 1.0 / accel
        return inverse.Inpaint(mask=inverse.random_pixel_mask((size, size), missing, seed)), {
            "missing_fraction": missing
        }
    if name == "sr":
        factor = max(1, round(accel**0.5))
        if size % factor:
            raise ValueError(f"--accel {accel}: pooling factor {factor} must divide the image size {size}")
        return inverse.AvgPoolSR(factor=factor), {"factor": factor}
    if name == "blur":
        return inverse.Blur.gaussian((size, size), BLUR_SIGMA), {"blur_sigma_px": BLUR_SIGMA}
    raise ValueError(f"--operator {name!r}: expected one of {OPERATORS}")


def simulate(key: jax.Array, op: Any, x: jax.Array, noise: float) -> jax.Array:
    """``y = A x + noise n`` for one real image ``x [H, W]`` (noise only where sampled)."""
    y = op.A(x)
    if noise == 0:
        return y
    n = inverse.add_gaussian_noise(key, jnp.zeros_like(y), noise)
    inner = op.op if isinstance(op, inverse.RealImage) else op
    return y + (inner.mask * n if hasattr(inner, "mask") else n)


def baseline(op: Any, y: jax.Array) -> tuple[jax.Array, str]:
    """The classical estimate ``[H, W]`` and its name."""
    if isinstance(op, inverse.RealImage):
        return op.A_adjoint(y), "zero-filled"
    if isinstance(op, inverse.Radon):
        return inverse.fbp(op, y), "FBP"
    if isinstance(op, inverse.Blur):
        return y, "blurred"
    return op.A_dagger(y), "pseudo-inverse"


# ---------------------------------------------------------------- solve


def run_solver(
    key: jax.Array,
    solver: str,
    model_fn,
    schedule: diffusion.VPSchedule,
    prediction: str,
    op: Any,
    y: jax.Array,
    x_init: jax.Array,
    *,
    steps: int | None,
    noise: float,
) -> tuple[jax.Array, dict[str, Any]]:
    """Runs one solver with its book defaults (``steps`` None) on ``y [B, *meas_shape]``.

    ``x_init [B, H, W]`` starts CCDF; DDS uses its noisy variant with ``gamma = 1 / noise^2``
    when ``noise > 0``; projection ignores the noise (it projects onto the noisy data).

    Returns:
      ``(x [B, H, W], info)`` as the solvers return them.
    """
    if solver == "dds":
        gamma = None if noise == 0 else 1.0 / noise**2
        return inverse.dds(key, model_fn, schedule, op, y, num_steps=steps or 50, gamma=gamma, prediction=prediction)
    if solver == "ccdf":
        return inverse.ccdf(key, model_fn, schedule, op, y, x_init, num_steps=steps, prediction=prediction)
    if solver == "dps":
        return inverse.dps(key, model_fn, schedule, op, y, num_steps=steps, prediction=prediction)
    if solver == "mcg":
        return inverse.mcg(key, model_fn, schedule, op, y, num_steps=steps, prediction=prediction)
    if solver == "projection":
        score_fn, sde = make_ve_score_fn(model_fn, schedule, prediction)
        return inverse.score_mri(key, score_fn, op, y, sde=sde, num_steps=steps or 2000)
    raise ValueError(f"--solver {solver!r}: expected one of {SOLVERS}")


def _quality(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    x, ref = jnp.asarray(x)[..., None], jnp.asarray(ref)[..., None]
    return {
        "psnr": float(metrics.psnr(x, ref, DATA_RANGE)),
        "ssim": float(metrics.ssim(x, ref, DATA_RANGE, filter_size=min(11, x.shape[0]))),
        "nmse": float(metrics.nmse(x, ref)),
    }


def _measurement_image(y: np.ndarray) -> np.ndarray:
    """A displayable ``[h, w]`` view of ``y`` in [-1, 1]: log-magnitude summed over coils."""
    m = np.log1p(np.abs(y))
    m = m.sum(0) if m.ndim == 3 else m
    lo, hi = m.min(), m.max()
    return (2.0 * (m - lo) / (hi - lo) - 1.0) if hi > lo else np.zeros_like(m)


def reconstruct(
    *,
    checkpoint: str,
    source: str,
    operator: str,
    solver: str,
    index: int | None = None,
    mask: str = "uniform1d",
    accel: float = 4.0,
    views: int = 30,
    angle_range: float = 180.0,
    noise: float = 0.0,
    steps: int | None = None,
    seed: int = 0,
    out: str | None = None,
) -> pathlib.Path:
    """`gensynth reconstruct`: simulate, reconstruct, write figures, NIfTI and metrics.

    Args:
      checkpoint: a run folder of `gensynth train` / `demo` (a one-channel model).
      source: built-in data set name or NIfTI file (see :func:`load_reference`).
      operator: one of :data:`OPERATORS`.
      solver: one of :data:`SOLVERS`.
      index: slice index (None: middle).
      mask: MRI mask, one of :data:`MASKS`.
      accel: undersampling ratio (see the module docstring).
      views: CT views.
      angle_range: CT angular range in degrees (180: sparse-view; less: limited-angle).
      noise: Gaussian noise std in the measurement's units.
      steps: solver steps (None: the solver's default; projection 2000, DDS 50).
      seed: seed of the mask, the noise and the solver.
      out: a new output folder (refused if it exists and is not empty); None: a new
        ``reconstruct-*`` folder in the run.

    Returns:
      The output folder.

    Raises:
      ValueError: for bad arguments or a multi-channel model; FileExistsError for a non-empty
      ``out``.
    """
    if noise < 0:
        raise ValueError(f"--noise {noise}: expected >= 0")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps {steps}: expected >= 1")
    if solver not in SOLVERS:
        raise ValueError(f"--solver {solver!r}: expected one of {SOLVERS}")
    cfg, graphdef, state = recipe.restore_run(checkpoint)
    if recipe.image_channels(cfg.data) != 1:
        raise ValueError(f"--checkpoint {checkpoint}: reconstruct needs a one-channel model")
    size = cfg.data.image_size
    ref, index, spacing = load_reference(source, size, index)
    op, op_facts = build_operator(
        operator, size, mask=mask, accel=accel, views=views, angle_range=angle_range, seed=seed
    )
    if out is None:
        out_dir = runs.new_run_dir(checkpoint, "reconstruct")
    else:
        out_dir = pathlib.Path(out)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise FileExistsError(f"--out {out_dir}: exists and is not empty; choose a new folder")
        out_dir.mkdir(parents=True, exist_ok=True)

    noise_key, solve_key = jax.random.split(jax.random.key(seed))
    y = simulate(noise_key, op, jnp.asarray(ref), noise)
    base, base_name = baseline(op, y)
    schedule = recipe.build_schedule(cfg.diffusion)
    model = nnx.merge(graphdef, state.ema_params)

    def model_fn(x, t):
        return model(x, t)

    began = time.perf_counter()
    x, info = run_solver(
        solve_key, solver, model_fn, schedule, cfg.diffusion.prediction, op, y[None], base[None],
        steps=steps, noise=noise,
    )
    x = np.asarray(jax.block_until_ready(x))[0]
    seconds = time.perf_counter() - began
    base = np.asarray(base)
    residual = float(jnp.linalg.norm(op.A(jnp.asarray(x)) - y) / jnp.linalg.norm(y))

    figures.save_image_grid(out_dir / "reference.png", ref[None, ..., None], title="reference")
    figures.save_image_grid(out_dir / "measurement.png", _measurement_image(np.asarray(y))[None, ..., None],
                            title=f"measurement ({operator})")
    figures.save_image_grid(out_dir / "baseline.png", base[None, ..., None], title=base_name)
    error = 2.0 * np.clip(np.abs(x - ref), 0.0, 1.0) - 1.0  # |error| in [0, 1] shown black to white
    figures.save_image_grid(
        out_dir / "recon.png", np.stack([ref, base, x, error])[..., None], ncols=4,
        title=f"reference | {base_name} | {solver} | |error| (0-1)",
    )
    volume = recipe.samples_to_volume(x[None, ..., None])[..., 0]  # [X, Y, 1]
    data.save_nifti(out_dir / "recon.nii.gz", volume.astype(np.float32), np.diag([spacing, spacing, spacing, 1.0]))
    record = {
        "checkpoint": str(checkpoint),
        "data": source,
        "slice": index,
        "image_size": size,
        "operator": operator,
        **op_facts,
        "noise": noise,
        "solver": solver,
        "seed": seed,
        "baseline_name": base_name,
        "baseline": _quality(base, ref),
        "reconstruction": _quality(x, ref),
        "relative_residual": residual,
        "nfe": info["nfe"],
        "vjps": info["vjps"],
        "needs_vjp": info["needs_vjp"],
        "seconds": round(seconds, 3),
        "backend": jax.default_backend(),
    }
    runs.atomic_write_json(out_dir / "metrics.json", record)
    print(
        f"{solver} on {operator}: PSNR {record['reconstruction']['psnr']:.2f} dB "
        f"({base_name} {record['baseline']['psnr']:.2f} dB), NFE {info['nfe']}, {seconds:.1f} s"
    )
    return out_dir
