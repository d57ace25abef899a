"""Score-MRI / score-POCS: VE predictor-corrector sampling with a data-consistency step after
every predictor and every corrector update (book ch. 7, Sect. 7.3.1, Algorithms 7.1-7.2).

Grid (as :func:`gensynth.diffusion.pc_sample`): ``t_i = linspace(1, t_eps, N)``, ``t_N = 0``.
Step ``i``: with ``corrector_first`` (the reference code's order) M Langevin steps at ``t_i``,
each followed by DC, then the reverse-diffusion predictor ``t_i -> t_{i+1}`` followed by DC;
otherwise Algorithm 7.1's order (predict, DC, then correct at the new level), which skips the
corrector at ``t = 0``. The last predictor step returns its noise-free mean (``denoise=True``)
and the result is data-consistent: ``A x = y`` exactly when ``op.AAH_is_identity``.

DC is ``op.project`` (Eq. 7.27): ``x + A^H (y - A x)``, an exact projection only when
``A A^H = I`` (single-coil Cartesian), one unit Landweber step otherwise (erratum E10); CT
operators supply their normalised backprojection step there (spec Sect. 5.1).

Complex images: with ``layout=COMPLEX_BATCH`` a real network runs two parallel reverse
processes on ``Re x`` and ``Im x`` (one call on ``[2B, ...]``) that couple only through DC
(Sect. 5.1 prior (a)); ``COMPLEX_CHANNELS`` is the 2-channel prior (b). Algorithm 7.2
(per-coil + root-sum-of-squares) is this solver on the coil images as a batch ``[B c, ...]``
with a single-coil operator (:func:`score_mri_per_coil`), followed by an RSS over the coils
(:func:`gensynth.inverse.mri.rss` on axis 1).

NFE: ``N (1 + M)`` network calls (``N + (N - 1) M`` without ``corrector_first``), each on the
whole batch (``2B`` images for ``COMPLEX_BATCH``); no backprop through the network.

References:
  Chung & Ye 2022, "Score-based diffusion models for accelerated MRI", Algorithm 1 and code;
  Song et al. 2022, "Solving inverse problems in medical imaging with score-based generative
  models"; book ch. 7, Algorithms 7.1-7.2 (errata E9, E10, E12).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gensynth.diffusion import VESDE, langevin_step, reverse_diffusion_step
from gensynth.inverse.layout import ImageLayout
from gensynth.inverse.mri import SingleCoilMRI
from gensynth.inverse.solver_base import (
    ModelFn,
    batch_project,
    net_struct,
    resolve_layout,
    run_net_steps,
    solver_info,
    split_prior,
)

SCORE_MRI_SDE = VESDE(sigma_min=0.01, sigma_max=378.0)
CorrectorFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def ve_time_grid(num_steps: int, t_eps: float, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """``(t_i, t_{i+1})``, each ``[N]``: ``t_i = linspace(1, t_eps, N)`` continuous in (0, 1],
    ``t_N = 0``.

    >>> [t.tolist() for t in ve_time_grid(3, 0.5, jnp.float32)]
    [[1.0, 0.75, 0.5], [0.75, 0.5, 0.0]]
    """
    ts = jnp.linspace(1.0, t_eps, num_steps, dtype=dtype)
    return ts, jnp.concatenate([ts[1:], jnp.zeros((1,), dtype)])


def ve_pc_step(
    key: jax.Array,
    x: jax.Array,
    i: jax.Array,
    score_fn: ModelFn,
    sde: VESDE,
    ts: jax.Array,
    ts_next: jax.Array,
    *,
    snr: float | jax.Array,
    n_corrector: int,
    corrector_first: bool = True,
    corrector_dc: Callable[[jax.Array], jax.Array] | None = None,
    corrector: CorrectorFn | None = None,
) -> jax.Array:
    """Predictor-corrector step ``i`` of the grid, ``t_i -> t_{i+1}``, without the final DC.

    M corrector updates at ``t_i`` (skipped at ``i = 0`` unless ``corrector_first``), each a
    Langevin step followed by ``corrector_dc`` if given, or ``corrector`` instead; then the
    reverse-diffusion predictor, whose noise-free mean is returned at the last step
    (``denoise=True``).

    Args:
      key: PRNG key of this step (split into corrector and predictor keys).
      x: ``[B', ...]`` state in net layout.
      i: scalar int32 step index into ``ts``.
      score_fn: ``score_fn(x, t) -> [B', ...]``, ``t [B']`` continuous.
      sde: the VE SDE of the prior.
      ts: ``[N]`` times, ``ts_next``: ``[N]`` next times (:func:`ve_time_grid`).
      snr: corrector signal-to-noise ratio r.
      n_corrector: M Langevin steps.
      corrector_first: the reference code's order (True) or Algorithm 7.1's (False).
      corrector_dc: data consistency after every corrector step (None: none).
      corrector: one whole corrector update ``corrector(key, x, t, t_next) -> x`` (``t``,
        ``t_next`` ``[B']``) replacing the Langevin step and ``corrector_dc`` (MCG-CT: Langevin
        step, DC and the manifold-constrained gradient from one network call).

    Returns:
      ``[B', ...]`` state at ``t_{i+1}`` in net layout.

    Raises:
      ValueError: when both ``corrector_dc`` and ``corrector`` are given.
    """
    if corrector is not None and corrector_dc is not None:
        raise ValueError("give corrector_dc or corrector, not both")
    t = jnp.full((x.shape[0],), ts[i])
    t_next = jnp.full((x.shape[0],), ts_next[i])
    corrector_key, predictor_key = jax.random.split(key)

    def langevin_dc(key, x, t, t_next):
        x, _ = langevin_step(key, score_fn, sde, x, t, t_next, snr)
        return x if corrector_dc is None else corrector_dc(x)

    update = langevin_dc if corrector is None else corrector

    def correct(j, x):
        return update(jax.random.fold_in(corrector_key, j), x, t, t_next)

    def run_corrector(x):
        return jax.lax.fori_loop(0, n_corrector, correct, x)

    x = run_corrector(x) if corrector_first else jax.lax.cond(i > 0, run_corrector, lambda x: x, x)
    x, x_mean = reverse_diffusion_step(predictor_key, score_fn, sde, x, t, t_next)
    return jnp.where(i == ts.shape[0] - 1, x_mean, x)


def score_mri(
    key: jax.Array,
    score_fn: ModelFn,
    op: Any,
    y: jax.Array,
    *,
    sde: VESDE = SCORE_MRI_SDE,
    num_steps: int = 2000,
    n_corrector: int = 1,
    snr: float = 0.16,
    t_eps: float = 1e-5,
    corrector_first: bool = True,
    layout: ImageLayout | None = None,
    trajectory: bool = False,
) -> tuple[jax.Array, dict[str, Any]]:
    """Reconstructs ``x`` from ``y = A x`` by VE PC sampling with DC after every update.

    Args:
      key: PRNG key (prior draw, then ``fold_in(key, i)`` per step).
      score_fn: ``score_fn(x, t) -> [B', ...]`` in net layout, ``t [B']`` continuous in (0, 1].
      op: linear operator on one image (``A``, ``A_adjoint``, ``project``).
      y: ``[B, *meas_shape]`` measurements.
      sde: the VE SDE of the prior (score-MRI: ``sigma_min = 0.01``, ``sigma_max = 378``).
      num_steps: N predictor steps (score-MRI: 2000; multi-coil script: 500).
      n_corrector: M Langevin corrector steps per predictor step.
      snr: corrector signal-to-noise ratio r (0.16).
      t_eps: smallest time of the grid (1e-5).
      corrector_first: reference-code order (True) or Algorithm 7.1's (False).
      layout: net/image layout (None: :func:`~gensynth.inverse.layout.default_layout`).
      trajectory: also return the image after every predictor step.

    Returns:
      ``(x [B, *image_shape], info)``; ``info`` as :func:`gensynth.inverse.solver_base.solver_info`.

    Raises:
      ValueError: for ``num_steps < 1`` or ``n_corrector < 0``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if n_corrector < 0:
        raise ValueError(f"n_corrector must be >= 0, got {n_corrector}")
    layout = resolve_layout(layout, op, y)
    x, traj = _score_mri(
        key,
        op,
        y,
        sde,
        snr,
        t_eps,
        score_fn,
        num_steps,
        n_corrector,
        corrector_first,
        layout,
        trajectory,
    )
    nfe = (
        num_steps * (1 + n_corrector)
        if corrector_first
        else num_steps + (num_steps - 1) * n_corrector
    )
    return x, solver_info(nfe, 0, traj)


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10, 11))
def _score_mri(key, op, y, sde, snr, t_eps, score_fn, N, M, corrector_first, layout, trajectory):
    def dc(x):
        return layout.to_net(batch_project(op, layout.to_image(x), y))

    x, step_key = split_prior(key, net_struct(op, y, layout), sde.prior_sampling)
    x = dc(x)
    ts, ts_next = ve_time_grid(N, t_eps, x.dtype)

    def step(i, x):
        x = ve_pc_step(
            jax.random.fold_in(step_key, i),
            x,
            i,
            score_fn,
            sde,
            ts,
            ts_next,
            snr=snr,
            n_corrector=M,
            corrector_first=corrector_first,
            corrector_dc=dc,
        )
        return dc(x)

    return run_net_steps(step, x, N, layout, trajectory)


def score_mri_per_coil(
    key: jax.Array,
    score_fn: ModelFn,
    mask: jax.Array,
    y: jax.Array,
    **kwargs: Any,
) -> tuple[jax.Array, dict[str, Any]]:
    """Algorithm 7.2's per-coil solve: :func:`score_mri` on every coil image independently,
    ``A = P_Omega F`` without sensitivities, all coils of all images in one batch.

    Combine with ``rss(coils, axis=1)`` (:func:`gensynth.inverse.mri.rss`); the book runs it
    with ``n_corrector = 1`` and a magnitude prior (``layout=COMPLEX_BATCH``).

    Args:
      key: PRNG key (one draw for the whole ``[B K]`` batch).
      score_fn: as :func:`score_mri`; it sees ``B K`` images per call (``2 B K`` with
        :data:`~gensynth.inverse.layout.COMPLEX_BATCH`).
      mask: ``[H, W]`` sampling mask shared by the coils.
      y: ``[B, K, H, W]`` complex multi-coil k-space (zeros off the mask).
      **kwargs: keyword arguments of :func:`score_mri`.

    Returns:
      ``(coil images [B, K, H, W] complex64, info)``; ``info`` counts calls on the whole batch
      (its trajectory, if asked for, is ``[N, B, K, H, W]``).

    Raises:
      ValueError: for ``y`` that is not ``[B, K, H, W]``.
    """
    if y.ndim != 4:
        raise ValueError(f"y must be [B, K, H, W] multi-coil k-space, got shape {y.shape}")
    coils, info = score_mri(
        key, score_fn, SingleCoilMRI(mask=mask), y.reshape((-1,) + y.shape[2:]), **kwargs
    )
    if info["trajectory"] is not None:
        info["trajectory"] = info["trajectory"].reshape((-1,) + y.shape[:2] + coils.shape[1:])
    return coils.reshape(y.shape[:2] + coils.shape[1:]), info
