"""Inverse problems: forward operators (MRI, CT, restoration), sampling masks, coil maps, noise
models, data-consistency steps, and the diffusion solvers built on them (score-MRI/projection,
Score-ALD, MCG and its CT variant, DPS, DDS, 3D DDS, DiffusionMBIR, CCDF), and the
TV-regularised baseline ``tv_reconstruct``.

Operator convention: an operator is a small pytree (``flax.struct.dataclass``; masks, coil maps
and angles are array leaves, shapes are static fields) acting on ONE image without batch or
channel axis, batched by ``jax.vmap``:

  - ``op.A(x) -> y``, ``op.A_adjoint(y) -> x`` (exact adjoint), optional ``op.A_dagger(y)``;
  - ``op.project(x, y)``: exact projection onto ``{A x = y}`` when ``op.AAH_is_identity``,
    otherwise the operator's documented data-consistency step (erratum E10): one unit Landweber
    step ``x + A^H (y - A x)`` for SENSE, blur and dense; the exact pseudo-inverse projection for
    average pooling (``A A^H = I / f^2``); the preconditioned step ``x + A^T (y - A x) / A^T A 1``
    for CT, where a unit step would diverge;
  - images: MRI complex64 ``[H, W]``; CT and restoration float32 ``[H, W]``;
  - measurements: single-coil k-space ``[H, W]``, multi-coil ``[K, H, W]`` (complex64, zeros off
    the mask); CT sinogram ``[V, D]`` float32; inpainting ``[H, W]``; pooling ``[H/f, W/f]``.

A diffusion network sees images as ``[B, H, W, C]``; solvers convert (``x[..., 0]`` for real
images, real/imaginary channels for complex ones) and ``jax.vmap`` the operator over B.
"""

from gensynth.inverse.ccdf import ccdf
from gensynth.inverse.coils import birdcage_maps, estimate_coil_maps
from gensynth.inverse.ct import (
    Radon,
    default_n_det,
    fbp,
    limited_angle_angles,
    ramp_filter,
    sparse_view_angles,
)
from gensynth.inverse.dc import (
    ADMMState,
    Dz,
    DzT,
    admm_tv_z,
    admm_tv_z_init,
    cg,
    cg_data_consistency,
    kspace_replace,
    landweber,
    normalized_backprojection,
    project,
    soft_threshold,
)
from gensynth.inverse.dds import dc_ddim_chain, dds, stateful_dc_ddim_chain
from gensynth.inverse.dds3d import dds_3d
from gensynth.inverse.dense import DenseOperator
from gensynth.inverse.dps import dps, likelihood_grad, residual_sq_norm
from gensynth.inverse.fft import fft2c, ifft2c
from gensynth.inverse.layout import (
    CHANNEL,
    COMPLEX_BATCH,
    COMPLEX_CHANNELS,
    REAL,
    ImageLayout,
    default_layout,
)
from gensynth.inverse.masks import (
    gaussian1d,
    gaussian2d,
    poisson_vd,
    radial,
    random1d,
    uniform1d,
)
from gensynth.inverse.mbir import diffusion_mbir
from gensynth.inverse.mcg import mcg, mcg_ct
from gensynth.inverse.mri import MultiCoilMRI, SingleCoilMRI, rss
from gensynth.inverse.real import RealImage
from gensynth.inverse.noise import add_gaussian_noise, poisson_counts
from gensynth.inverse.restoration import (
    AvgPoolSR,
    Blur,
    Inpaint,
    box_mask,
    gaussian_kernel,
    random_pixel_mask,
)
from gensynth.inverse.score_ald import score_ald
from gensynth.inverse.score_mri import SCORE_MRI_SDE, score_mri, score_mri_per_coil
from gensynth.inverse.tv import Dxy, DxyT, group_soft_threshold, tv_norm, tv_reconstruct
from gensynth.inverse.solver_base import solver_info
