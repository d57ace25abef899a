"""Predictor-corrector sampling: reverse-diffusion predictor + Langevin corrector, VE or VP.

Time grid: ``t_i = linspace(1, t_eps, N)``, ``i = 0..N-1``, and ``t_N = 0``. Step ``i``
runs the corrector at ``t_i`` (``n_corrector`` Langevin steps) and then the predictor from
``t_i`` to ``t_{i+1}``; the last predictor step lands on the clean data (VE: ``sigma = 0``).
With ``denoise=True`` its noise is not added, which makes it Tweedie's estimate
(``x + sigma^2 score`` for VE). ``corrector_first=False`` gives Algorithm 7.1's order
(predict, then correct at the new level): the same sequence without the corrector at ``t_0``.
NFE: ``N (1 + M)`` (``N + (N - 1) M`` without ``corrector_first``).

The whole loop is one jitted program (see :mod:`gensynth.diffusion.ddpm` for the jit design).

References:
  Song et al. 2021, "Score-Based Generative Modeling through SDEs", Algorithms 2-5 and
  ``sampling.py``; book ch. 7, Eqs. 7.26/7.28 and Algorithm 7.1 (errata E9, E12).
"""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from gensynth.diffusion.chain import sample_shape
from gensynth.diffusion.parameterization import broadcast_coef
from gensynth.diffusion.sde import VESDE, VPSDE

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]


def reverse_diffusion_step(
    key: jax.Array, score_fn: ScoreFn, sde: VESDE | VPSDE, x: jax.Array, t: jax.Array, t_next: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reverse-diffusion predictor from ``t`` to ``t_next < t``.

    With the forward discretisation ``x_t = x_{t_next} + f + G z`` (:meth:`VESDE.discretize`)::

      x_mean = x - f + G^2 score(x, t);   x_next = x_mean + G z

    VE: ``x_next = x + (sigma_t^2 - sigma_next^2) score + sqrt(sigma_t^2 - sigma_next^2) z``
    (Eq. 7.26 with the missing ``x +`` restored, E9).

    Args:
      key: PRNG key for ``z``.
      score_fn: ``score_fn(x, t) -> [B, ...]``, ``t`` ``[B]`` continuous.
      sde: :class:`VESDE` or :class:`VPSDE`.
      x: ``[B, ...]`` state at ``t``.
      t: ``[B]`` current time.
      t_next: ``[B]`` next (smaller) time; 0 means the clean data.

    Returns:
      ``(x_next, x_mean)``, each ``[B, ...]``.

    References:
      Song et al. 2021, Eq. 46 (``ReverseDiffusionPredictor``); book ch. 7, Eq. 7.26.
    """
    f, G = sde.discretize(x, t, t_next)
    G = broadcast_coef(G, x)
    x_mean = x - f + G**2 * score_fn(x, t)
    return x_mean + G * jax.random.normal(key, x.shape, x.dtype), x_mean


def langevin_step(
    key: jax.Array,
    score_fn: ScoreFn,
    sde: VESDE | VPSDE,
    x: jax.Array,
    t: jax.Array,
    t_next: jax.Array,
    snr: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One Langevin corrector step at time ``t`` with the signal-to-noise step-size rule.

    .. math::
      \\epsilon = 2 \\alpha_i \\big(r \\,\\overline{\\|z\\|} / \\overline{\\|g\\|}\\big)^2,\\quad
      x \\leftarrow x + \\epsilon g + \\sqrt{2\\epsilon}\\, z

    with ``g = score(x, t)``, ``r = snr``, norms taken per sample and averaged over the batch
    (score_sde), and ``alpha_i = 1`` (VE) or ``1 - beta_i`` of the step ``t -> t_next`` (VP).

    Args:
      key: PRNG key for ``z``.
      score_fn: ``score_fn(x, t) -> [B, ...]``.
      sde: :class:`VESDE` or :class:`VPSDE`.
      x: ``[B, ...]`` state at ``t``.
      t: ``[B]`` time of the level being corrected.
      t_next: ``[B]`` next time of the grid (sets ``alpha_i`` for VP).
      snr: target signal-to-noise ratio ``r`` (score-MRI: 0.16).

    Returns:
      ``(x_new, x_mean)``, each ``[B, ...]``.

    References:
      Song et al. 2021, Algorithms 4-5 (``LangevinCorrector``); book ch. 7, Eq. 7.28 and
      spec ch. 7, Sect. 4.6 line 7.
    """
    g = score_fn(x, t)
    z = jax.random.normal(key, x.shape, x.dtype)
    B = x.shape[0]
    grad_norm = jnp.mean(jnp.linalg.norm(g.reshape(B, -1), axis=-1))
    noise_norm = jnp.mean(jnp.linalg.norm(z.reshape(B, -1), axis=-1))
    step = 2.0 * sde.discrete_alpha(t, t_next) * (snr * noise_norm / grad_norm) ** 2  # [B]
    x_mean = x + broadcast_coef(step, x) * g
    return x_mean + broadcast_coef(jnp.sqrt(2.0 * step), x) * z, x_mean


def pc_sample(
    key: jax.Array,
    score_fn: ScoreFn,
    sde: VESDE | VPSDE,
    shape: Sequence[int] | None,
    *,
    num_steps: int = 1000,
    n_corrector: int = 1,
    snr: float | jax.Array = 0.16,
    corrector_first: bool = True,
    denoise: bool = True,
    t_eps: float = 1e-3,
    x_T: jax.Array | None = None,
) -> jax.Array:
    """Predictor-corrector sampler for a VE or VP SDE (see the module docstring for the grid).

    Args:
      key: PRNG key (prior draw, then one noise stream per step via ``fold_in``).
      score_fn: ``score_fn(x, t) -> [B, ...]``, ``x`` ``[B, ...]``, ``t`` ``[B]`` float in (0, 1].
      sde: :class:`VESDE` or :class:`VPSDE`.
      shape: ``(B, ...)`` of the samples; may be None when ``x_T`` is given.
      num_steps: N predictor steps (score-MRI: 2000 with ``t_eps = 1e-5``).
      n_corrector: M Langevin steps per level (0: predictor only).
      snr: corrector signal-to-noise ratio (score-MRI 0.16; high-resolution configs 0.075).
      corrector_first: correct before predicting at each level (score_sde order) instead of
        after (Algorithm 7.1 order).
      denoise: return the noise-free mean of the last predictor step.
      t_eps: smallest time of the grid (score_sde: 1e-3 for VP, 1e-5 for VE).
      x_T: optional ``[B, ...]`` starting state at ``t = 1`` (default: ``sde.prior_sampling``).

    Returns:
      ``[B, ...]`` samples.

    Raises:
      ValueError: for ``num_steps < 1``, ``n_corrector < 0`` or mismatched ``shape``/``x_T``.

    >>> from gensynth.diffusion import gaussian_score_fn
    >>> sde = VPSDE()
    >>> pc_sample(jax.random.key(0), gaussian_score_fn(0.0, 1.0, sde), sde, (8, 2), num_steps=10).shape
    (8, 2)

    References:
      Song et al. 2021, Algorithms 2-3 (``pc_sampler``); book ch. 7, Algorithm 7.1.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if n_corrector < 0:
        raise ValueError(f"n_corrector must be >= 0, got {n_corrector}")
    shape = sample_shape(shape, x_T)
    return _pc_sample(
        key, x_T, sde, snr, t_eps, score_fn, shape, num_steps, n_corrector, corrector_first, denoise
    )


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10))
def _pc_sample(key, x_T, sde, snr, t_eps, score_fn, shape, N, M, corrector_first, denoise):
    init_key, step_key = jax.random.split(key)
    x = sde.prior_sampling(init_key, shape) if x_T is None else x_T
    ts = jnp.linspace(1.0, t_eps, N, dtype=x.dtype)
    ts_next = jnp.concatenate([ts[1:], jnp.zeros((1,), x.dtype)])

    def correct(key, x, t, t_next):
        def body(j, x):
            return langevin_step(jax.random.fold_in(key, j), score_fn, sde, x, t, t_next, snr)[0]

        return jax.lax.fori_loop(0, M, body, x)

    def step(i, x, with_corrector):
        t = jnp.full((shape[0],), ts[i])
        t_next = jnp.full((shape[0],), ts_next[i])
        corrector_key, predictor_key = jax.random.split(jax.random.fold_in(step_key, i))
        if with_corrector:
            x = correct(corrector_key, x, t, t_next)
        x, x_mean = reverse_diffusion_step(predictor_key, score_fn, sde, x, t, t_next)
        return jnp.where(i == N - 1, x_mean, x) if denoise else x

    first = 0 if corrector_first else 1
    if not corrector_first:
        x = step(0, x, with_corrector=False)
    return jax.lax.fori_loop(first, N, lambda i, x: step(i, x, with_corrector=M > 0), x)
