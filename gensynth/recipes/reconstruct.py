"""`gensynth reconstruct`: solve a simulated inverse problem with a trained diffusion run as prior.

Wiring only; the operators and solvers live in :mod:`gensynth.inverse`. Steps:

1. reference: one image of a data set at the run's image size, preprocessed as in training
   (``[H, W]`` float32 in [-1, 1]); for the volume solvers (``dds3d``, ``mbir``) a stack of
   ``--depth`` consecutive axial slices ``[D, H, W]`` of the MNI152 template or a NIfTI file;
2. operator (``mri``, ``mri-multicoil``, ``ct``, ``inpaint``, ``sr``, ``blur``; slice by slice
   for volumes) and ``y = A x_ref + noise`` (see the noise model below);
3. a baseline (zero-filled MRI, FBP, the observed pixels, nearest upsampling, the blurred image);
4. the solver with the run's EMA network as prior; writes a NEW folder with ``reference.png``,
   ``measurement.png``, ``baseline.png``, ``recon.png`` (reference | baseline | reconstruction
   | |error|; volumes: rows of axial, coronal and sagittal mid-planes), ``recon.nii.gz`` (the
   image, or the volume) and ``metrics.json`` (volumes: metrics per mid-plane and of the volume).

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
- ``projection`` (score-MRI), ``score_ald`` and ``mbir`` (DiffusionMBIR) are VE solvers; the VP
  network becomes a VE score by :func:`make_ve_score_fn` (``x_vp = s_t x_ve``,
  ``score = -eps / sigma_t`` at the nearest trained VP level), on the VE SDE spanning the
  schedule's own noise levels. Score-ALD inflates the likelihood noise by
  ``gamma_t = ||A|| sigma_t`` (``||A||`` by power iteration: 1 for MRI, large for CT).
- Noise model. ``gaussian``: ``y = A x + noise n`` (std ``--noise`` in the measurement's units;
  MRI and inpainting noise only on the sampled entries). ``poisson`` (``ct``, ``inpaint``,
  ``sr``, ``blur``: operators with non-negative entries): counts ``c ~ Poisson(s A u)`` of the
  intensity ``u = (x + 1) / 2`` in [0, 1] with ``s = --count-scale`` counts per unit of
  ``A u``. DPS then uses its Poisson likelihood on ``y_c = c / s ~ A u`` with the unknown ``u``
  (an affine net/image layout it differentiates through); every other solver is given the
  unbiased ``y = 2 c / s - A 1 ~ A x`` and treats it as Gaussian, with the noise level
  ``2 sqrt(mean(y_c) / s)`` where it takes one (DDS, 3D DDS, Score-ALD).

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
SOLVERS = ("projection", "mcg", "dps", "dds", "ccdf", "score_ald", "dds3d", "mbir")
VOLUME_SOLVERS = ("dds3d", "mbir")
VOLUME_SOURCES = ("mni152", "a .nii/.nii.gz file")
NOISE_MODELS = ("gaussian", "poisson")
NONNEGATIVE_OPERATORS = ("ct", "inpaint", "sr", "blur")  # A u >= 0 for u >= 0: Poisson counts
DEFAULT_DEPTH = 8  # slices of a volume
DEFAULT_COUNT_SCALE = 100.0  # counts per unit of A u
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
    bounds = np.sqrt((1.0 - np.asarray(schedule.alpha_bar)[[0, -1]]) / np.asarray(schedule.alpha_bar)[[0, -1]])
    sde = diffusion.VESDE(sigma_min=float(bounds[0]), sigma_max=float(bounds[1]))  # concrete inside jit too
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


def _slice_stack(source: str, size: int) -> tuple[np.ndarray, float, float]:
    """All axial slices ``[N, size, size]`` of a data set or NIfTI file, the in-plane pixel size
    and the slice distance (mm; 1 mm for the built-in sets)."""
    if source.endswith(data.nifti.NIFTI_SUFFIXES):
        slices = data.NiftiFolderSource(source, mode="slices", size=size)
        images = np.stack([slices[i]["image"] for i in range(len(slices))])[..., 0]  # [N, size, size]
        canonical = nib.as_closest_canonical(nib.load(source))  # header only; the grid the slices came from
        zooms = canonical.header.get_zooms()
        return images, float(zooms[0]) * max(canonical.shape[:2]) / size, float(zooms[2])
    if source in data.BUILTIN_DATASETS and source != "mni152_tissue":
        images = data.builtin_dataset(source, size)[..., 0]
        return images, recipe.pixel_spacing_mm(recipe.DataConfig(dataset=source, image_size=size)), 1.0
    raise ValueError(
        f"--data {source!r}: expected a .nii/.nii.gz file or one of "
        f"{tuple(n for n in data.BUILTIN_DATASETS if n != 'mni152_tissue')}"
    )


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
    images, spacing, _ = _slice_stack(source, size)
    n = images.shape[0]
    index = n // 2 if index is None else index
    if not 0 <= index < n:
        raise ValueError(f"--slice {index}: expected 0..{n - 1} for {source}")
    return images[index], index, spacing


def load_reference_volume(
    source: str, size: int, index: int | None, depth: int
) -> tuple[np.ndarray, int, tuple[float, float]]:
    """``depth`` consecutive axial slices ``[D, size, size]`` (inferior to superior) centred on
    slice ``index``, the first slice's index and the voxel size ``(in-plane, slice)`` in mm.

    Args:
      source: ``"mni152"`` or a ``.nii``/``.nii.gz`` file (see :func:`load_reference`).
      size: the model's image side.
      index: centre slice (None: the middle one).
      depth: D >= 3.

    Raises:
      ValueError: for another source, ``depth < 3`` or a stack that leaves the volume.
    """
    if source != "mni152" and not source.endswith(data.nifti.NIFTI_SUFFIXES):
        raise ValueError(f"--data {source!r}: the volume solvers need one of {VOLUME_SOURCES}")
    if depth < 3:
        raise ValueError(f"--depth {depth}: expected >= 3 slices")
    images, spacing, thickness = _slice_stack(source, size)
    n = images.shape[0]
    index = n // 2 if index is None else index
    first = index - depth // 2
    if not (0 <= first and first + depth <= n):
        raise ValueError(
            f"--slice {index} / --depth {depth}: the stack {first}..{first + depth - 1} leaves "
            f"the {n} slices of {source}"
        )
    return images[first : first + depth], first, (spacing, thickness)


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


def simulate_counts(key: jax.Array, op: Any, x: jax.Array, count_scale: float) -> jax.Array:
    """Poisson data of one real image ``x [H, W]`` in [-1, 1]: ``c / s`` with
    ``c ~ Poisson(s A u)``, ``u = (x + 1) / 2`` (an unbiased estimate of ``A u``)."""
    return inverse.poisson_counts(key, op.A((x + 1.0) / 2.0), count_scale) / count_scale


def measure(
    keys: jax.Array, op: Any, x: jax.Array, *, noise: float, noise_model: str, count_scale: float
) -> tuple[jax.Array, jax.Array | None, float]:
    """Measurements of the images ``x [S, H, W]`` (one key each) under the noise model.

    Returns:
      ``(y [S, *meas_shape] ~ A x, counts or None, noise std)``: for ``"poisson"``, ``counts`` is
      ``c / s ~ A u`` of :func:`simulate_counts` and ``y = 2 c / s - A 1``; the std is ``noise``
      (Gaussian) or the mean Poisson std of ``y``, ``2 sqrt(mean(c / s) / s)``.
    """
    if noise_model == "gaussian":
        return jax.vmap(lambda k, x: simulate(k, op, x, noise))(keys, x), None, noise
    counts = jax.vmap(lambda k, x: simulate_counts(k, op, x, count_scale))(keys, x)
    y = 2.0 * counts - jax.vmap(op.A)(jnp.ones_like(x))
    return y, counts, 2.0 * float(jnp.sqrt(jnp.mean(counts) / count_scale))


def operator_norm(op: Any, image_shape: tuple[int, ...], n_iter: int = 50) -> jax.Array:
    """``||A||`` (largest singular value, a scalar array; traceable) of a real-image operator by
    power iteration on ``A^T A`` from a fixed random image (slightly below the true norm)."""
    v = jax.random.normal(jax.random.key(0), image_shape)

    def body(_, v):
        w = op.A_adjoint(op.A(v))
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, n_iter, body, v / jnp.linalg.norm(v))
    return jnp.linalg.norm(op.A(v))


def _net_to_intensity(x: jax.Array) -> jax.Array:
    return (x[..., 0] + 1.0) / 2.0


def _intensity_to_net(u: jax.Array) -> jax.Array:
    return (2.0 * u - 1.0)[..., None]


# Net images x in [-1, 1] <-> intensities u = (x + 1) / 2 (affine: only for DPS, which
# differentiates through it).
INTENSITY = inverse.ImageLayout("intensity", _net_to_intensity, _intensity_to_net)


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
    counts: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, Any]]:
    """Runs one solver with its book defaults (``steps`` None) on ``y [B, *meas_shape]``
    (volume solvers: ``[B, D, *meas_shape]``).

    ``x_init [B, H, W]`` starts CCDF; DDS and 3D DDS use their noisy variant with
    ``gamma = 1 / noise^2`` when ``noise > 0``, Score-ALD takes ``noise`` as ``sigma_y``;
    projection and DiffusionMBIR ignore the noise (they project onto the noisy data). With
    ``counts`` (Poisson data ``c / s ~ A u``, see the module docstring) DPS uses its Poisson
    likelihood on them; the other solvers ignore ``counts``.

    Returns:
      ``(x [B, H, W] or [B, D, H, W], info)`` as the solvers return them.
    """
    gamma = None if noise == 0 else 1.0 / noise**2
    if solver == "dds":
        return inverse.dds(key, model_fn, schedule, op, y, num_steps=steps or 50, gamma=gamma, prediction=prediction)
    if solver == "dds3d":
        return inverse.dds_3d(key, model_fn, schedule, op, y, num_steps=steps or 50, gamma=gamma, prediction=prediction)
    if solver == "ccdf":
        return inverse.ccdf(key, model_fn, schedule, op, y, x_init, num_steps=steps, prediction=prediction)
    if solver == "dps" and counts is not None:
        u, info = inverse.dps(
            key, model_fn, schedule, op, counts, likelihood="poisson", num_steps=steps, prediction=prediction,
            layout=INTENSITY,
        )
        return 2.0 * u - 1.0, info
    if solver == "dps":
        return inverse.dps(key, model_fn, schedule, op, y, num_steps=steps, prediction=prediction)
    if solver == "mcg":
        return inverse.mcg(key, model_fn, schedule, op, y, num_steps=steps, prediction=prediction)
    if solver in ("projection", "score_ald", "mbir"):
        score_fn, sde = make_ve_score_fn(model_fn, schedule, prediction)
        if solver == "projection":
            return inverse.score_mri(key, score_fn, op, y, sde=sde, num_steps=steps or 2000)
        if solver == "mbir":
            return inverse.diffusion_mbir(key, score_fn, op, y, sde=sde, num_steps=steps or 2000)
        norm = operator_norm(op, x_init.shape[1:])
        return inverse.score_ald(
            key, score_fn, op, y, sde=sde, num_steps=steps or 1000, sigma_y=noise, gamma_scale=norm
        )
    raise ValueError(f"--solver {solver!r}: expected one of {SOLVERS}")


def _quality(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    x, ref = jnp.asarray(x)[..., None], jnp.asarray(ref)[..., None]
    return {
        "psnr": float(metrics.psnr(x, ref, DATA_RANGE)),
        "ssim": float(metrics.ssim(x, ref, DATA_RANGE, filter_size=min(11, *x.shape[:2]))),
        "nmse": float(metrics.nmse(x, ref)),
    }


def mid_planes(volume: np.ndarray) -> dict[str, np.ndarray]:
    """Axial ``[H, W]``, coronal ``[D, W]`` and sagittal ``[D, H]`` mid-planes of a display-oriented
    axial stack ``[D, H, W]`` (slices inferior to superior), superior at the top."""
    d, h, w = volume.shape
    return {"axial": volume[d // 2], "coronal": volume[::-1, h // 2], "sagittal": volume[::-1, :, w // 2]}


def _volume_quality(x: np.ndarray, ref: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics of each mid-plane, and PSNR / NMSE of the whole volume ``[D, H, W]``."""
    planes = {name: _quality(p, r) for (name, p), r in zip(mid_planes(x).items(), mid_planes(ref).values())}
    flat_x, flat_ref = jnp.asarray(x).reshape(-1, x.shape[-1], 1), jnp.asarray(ref).reshape(-1, x.shape[-1], 1)
    planes["volume"] = {
        "psnr": float(metrics.psnr(flat_x, flat_ref, DATA_RANGE)),
        "nmse": float(metrics.nmse(flat_x, flat_ref)),
    }
    return planes


def _on_canvas(image: np.ndarray, side: int) -> np.ndarray:
    """``image [h, w]`` centred on a ``[side, side]`` canvas of -1 (black)."""
    canvas = np.full((side, side), -1.0, np.float32)
    top, left = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def _plane_panels(volumes: list[np.ndarray]) -> np.ndarray:
    """Rows of axial, coronal and sagittal mid-planes of each ``[D, H, W]`` volume (columns),
    on square canvases: ``[3 len(volumes), side, side, 1]``."""
    side = max(volumes[0].shape)
    rows = [[_on_canvas(mid_planes(v)[name], side) for v in volumes] for name in ("axial", "coronal", "sagittal")]
    return np.stack([panel for row in rows for panel in row])[..., None]


def _measurement_image(y: np.ndarray) -> np.ndarray:
    """A displayable ``[h, w]`` view of ``y`` in [-1, 1]: log-magnitude summed over coils."""
    m = np.log1p(np.abs(y))
    m = m.sum(0) if m.ndim == 3 else m
    lo, hi = m.min(), m.max()
    return (2.0 * (m - lo) / (hi - lo) - 1.0) if hi > lo else np.zeros_like(m)


def _check_options(
    *, solver: str, operator: str, noise: float, noise_model: str, count_scale: float | None,
    depth: int | None, steps: int | None,
) -> None:
    """Validates the options that need no data or run (ValueError naming the option)."""
    if noise < 0:
        raise ValueError(f"--noise {noise}: expected >= 0")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps {steps}: expected >= 1")
    if solver not in SOLVERS:
        raise ValueError(f"--solver {solver!r}: expected one of {SOLVERS}")
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"--noise-model {noise_model!r}: expected one of {NOISE_MODELS}")
    if noise_model == "poisson":
        if operator not in NONNEGATIVE_OPERATORS:
            raise ValueError(f"--noise-model poisson: needs an operator with A u >= 0, one of {NONNEGATIVE_OPERATORS}")
        if noise != 0:
            raise ValueError("--noise is the Gaussian std; with --noise-model poisson set --count-scale instead")
        if count_scale is not None and not count_scale > 0:
            raise ValueError(f"--count-scale {count_scale}: expected > 0")
    elif count_scale is not None:
        raise ValueError("--count-scale applies to --noise-model poisson only")
    if depth is not None and solver not in VOLUME_SOLVERS:
        raise ValueError(f"--depth applies to the volume solvers {VOLUME_SOLVERS} only")


def _new_out_dir(checkpoint: str, out: str | None) -> pathlib.Path:
    if out is None:
        return runs.new_run_dir(checkpoint, "reconstruct")
    out_dir = pathlib.Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"--out {out_dir}: exists and is not empty; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _error_image(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|x - ref|`` clipped to [0, 1] and mapped to [-1, 1] (black to white in the figures)."""
    return 2.0 * np.clip(np.abs(x - ref), 0.0, 1.0) - 1.0


def _write_image_outputs(out_dir, ref, base, x, y, *, base_name, operator, solver, spacing) -> dict[str, Any]:
    """2D figures and NIfTI; returns the metrics of baseline and reconstruction."""
    figures.save_image_grid(out_dir / "reference.png", ref[None, ..., None], title="reference")
    figures.save_image_grid(out_dir / "measurement.png", _measurement_image(np.asarray(y))[None, ..., None],
                            title=f"measurement ({operator})")
    figures.save_image_grid(out_dir / "baseline.png", base[None, ..., None], title=base_name)
    figures.save_image_grid(
        out_dir / "recon.png", np.stack([ref, base, x, _error_image(x, ref)])[..., None], ncols=4,
        title=f"reference | {base_name} | {solver} | |error| (0-1)",
    )
    volume = recipe.samples_to_volume(x[None, ..., None])[..., 0]  # [X, Y, 1]
    data.save_nifti(out_dir / "recon.nii.gz", volume.astype(np.float32), np.diag([spacing, spacing, spacing, 1.0]))
    return {"baseline": _quality(base, ref), "reconstruction": _quality(x, ref)}


def _write_volume_outputs(out_dir, ref, base, x, y, *, base_name, operator, solver, spacing) -> dict[str, Any]:
    """Mid-plane figures and the NIfTI volume of ``[D, H, W]`` stacks; returns per-plane metrics."""
    planes = "rows: axial, coronal, sagittal mid-planes"
    figures.save_image_grid(out_dir / "reference.png", _plane_panels([ref]), ncols=1, title="reference")
    figures.save_image_grid(out_dir / "measurement.png", _measurement_image(np.asarray(y[len(y) // 2]))[None, ..., None],
                            title=f"measurement of the middle slice ({operator})")
    figures.save_image_grid(out_dir / "baseline.png", _plane_panels([base]), ncols=1, title=base_name)
    figures.save_image_grid(
        out_dir / "recon.png", _plane_panels([ref, base, x, _error_image(x, ref)]), ncols=4,
        title=f"reference | {base_name} | {solver} | |error| (0-1); {planes}",
    )
    in_plane, thickness = spacing
    volume = recipe.samples_to_volume(x[..., None])[..., 0]  # [X, Y, D]
    data.save_nifti(out_dir / "recon.nii.gz", volume.astype(np.float32), np.diag([in_plane, in_plane, thickness, 1.0]))
    return {"baseline": _volume_quality(base, ref), "reconstruction": _volume_quality(x, ref)}


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
    noise_model: str = "gaussian",
    count_scale: float | None = None,
    depth: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    out: str | None = None,
) -> pathlib.Path:
    """`gensynth reconstruct`: simulate, reconstruct, write figures, NIfTI and metrics.

    Args:
      checkpoint: a run folder of `gensynth train` / `demo` (a one-channel model).
      source: built-in data set name or NIfTI file (see :func:`load_reference`); the volume
        solvers take ``"mni152"`` or a NIfTI file.
      operator: one of :data:`OPERATORS`.
      solver: one of :data:`SOLVERS`; :data:`VOLUME_SOLVERS` reconstruct ``depth`` slices.
      index: slice index, the centre of the stack for volumes (None: middle).
      mask: MRI mask, one of :data:`MASKS`.
      accel: undersampling ratio (see the module docstring).
      views: CT views.
      angle_range: CT angular range in degrees (180: sparse-view; less: limited-angle).
      noise: Gaussian noise std in the measurement's units.
      noise_model: one of :data:`NOISE_MODELS` (see the module docstring).
      count_scale: Poisson counts per unit of ``A u`` (``poisson`` only; None: 100).
      depth: slices of the volume (volume solvers only, >= 3; None: 8).
      steps: solver steps (None: the solver's default; projection and DiffusionMBIR 2000,
        Score-ALD 1000 levels, DDS and 3D DDS 50).
      seed: seed of the mask, the noise and the solver.
      out: a new output folder (refused if it exists and is not empty); None: a new
        ``reconstruct-*`` folder in the run.

    Returns:
      The output folder.

    Raises:
      ValueError: for bad arguments or a multi-channel model; FileExistsError for a non-empty
      ``out``.
    """
    _check_options(solver=solver, operator=operator, noise=noise, noise_model=noise_model,
                   count_scale=count_scale, depth=depth, steps=steps)
    count_scale = DEFAULT_COUNT_SCALE if count_scale is None else count_scale
    cfg, graphdef, state = recipe.restore_run(checkpoint)
    if recipe.image_channels(cfg.data) != 1:
        raise ValueError(f"--checkpoint {checkpoint}: reconstruct needs a one-channel model")
    size = cfg.data.image_size
    is_volume = solver in VOLUME_SOLVERS
    if is_volume:
        ref, index, spacing = load_reference_volume(source, size, index, depth or DEFAULT_DEPTH)
    else:
        ref, index, spacing = load_reference(source, size, index)
    op, op_facts = build_operator(
        operator, size, mask=mask, accel=accel, views=views, angle_range=angle_range, seed=seed
    )
    out_dir = _new_out_dir(checkpoint, out)

    noise_key, solve_key = jax.random.split(jax.random.key(seed))
    slices = jnp.asarray(ref).reshape((-1, size, size))  # [S, H, W]: S = D, or 1
    keys = jax.random.split(noise_key, len(slices)) if is_volume else noise_key[None]
    y, counts, noise_std = measure(keys, op, slices, noise=noise, noise_model=noise_model, count_scale=count_scale)
    base = jax.vmap(lambda y: baseline(op, y)[0])(y)  # [S, H, W]
    base_name = baseline(op, y[0])[1]
    schedule = recipe.build_schedule(cfg.diffusion)
    model = nnx.merge(graphdef, state.ema_params)

    def model_fn(x, t):
        return model(x, t)

    batch = (lambda a: a[None]) if is_volume else (lambda a: a)  # one volume, or one image
    began = time.perf_counter()
    x, info = run_solver(
        solve_key, solver, model_fn, schedule, cfg.diffusion.prediction, op, batch(y), base,
        steps=steps, noise=noise_std, counts=None if counts is None else batch(counts),
    )
    x = np.asarray(jax.block_until_ready(x))[0]  # [H, W] or [D, H, W]
    seconds = time.perf_counter() - began
    residual = float(
        jnp.linalg.norm(jax.vmap(op.A)(jnp.asarray(x).reshape(slices.shape)) - y) / jnp.linalg.norm(y)
    )
    write = _write_volume_outputs if is_volume else _write_image_outputs
    base = np.asarray(base).reshape(np.shape(ref))
    quality = write(out_dir, ref, base, x, np.asarray(y if is_volume else y[0]), base_name=base_name,
                    operator=operator, solver=solver, spacing=spacing)
    record = {
        "checkpoint": str(checkpoint),
        "data": source,
        **({"slices": [index, index + len(slices) - 1]} if is_volume else {"slice": index}),
        "image_size": size,
        "operator": operator,
        **op_facts,
        "noise_model": noise_model,
        "noise": noise,
        **({"count_scale": count_scale, "noise_std_equivalent": noise_std} if noise_model == "poisson" else {}),
        "solver": solver,
        "seed": seed,
        "baseline_name": base_name,
        **quality,
        "relative_residual": residual,
        "nfe": info["nfe"],
        "vjps": info["vjps"],
        "needs_vjp": info["needs_vjp"],
        "seconds": round(seconds, 3),
        "backend": jax.default_backend(),
    }
    runs.atomic_write_json(out_dir / "metrics.json", record)
    psnr = {part: (q["volume"] if is_volume else q)["psnr"] for part, q in quality.items()}
    print(
        f"{solver} on {operator}: PSNR {psnr['reconstruction']:.2f} dB ({base_name} "
        f"{psnr['baseline']:.2f} dB){' over the volume' if is_volume else ''}, NFE {info['nfe']}, {seconds:.1f} s"
    )
    return out_dir
