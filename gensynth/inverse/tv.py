"""2-D total-variation reconstruction by ADMM: the classical "TV" baseline of spec ch. 7, E2.

Solves, for one image ``x [H, W]`` (real or complex),

.. math::
    \\min_x \\tfrac12 \\|y - A x\\|_2^2 + \\lambda\\, \\mathrm{TV}(x), \\qquad
    \\mathrm{TV}(x) = \\textstyle\\sum_{ij} \\|(D x)_{:, ij}\\|_2 \\ \\text{(isotropic)} \\ \\text{or}
    \\ \\sum_{c ij} |(D x)_{c ij}| \\ \\text{(anisotropic)},

with ``A = op.A``, ``lambda = lam`` and ``D = Dxy`` the forward differences along the two image
axes. Complex images use the modulus (TV of the complex image). ADMM on the split ``z = D x``
with scaled dual ``u`` and penalty ``rho``:

.. math::
    x \\leftarrow \\arg\\min_x \\tfrac12 \\|y - A x\\|^2 + \\tfrac\\rho2 \\|D x - z + u\\|^2
        \\quad (n_{cg}\\ \\text{CG steps on } (A^H A + \\rho D^T D)\\ \\text{from the last } x) \\\\
    z \\leftarrow \\mathrm{prox}_{(\\lambda/\\rho) \\mathrm{TV}}(D x + u), \\qquad
    u \\leftarrow u + D x - z

The prox is the group (``l_{2,1}``) shrink over the two gradient components (isotropic) or the
elementwise soft threshold (anisotropic). The 1-D z-direction version used by DiffusionMBIR is
:func:`gensynth.inverse.dc.admm_tv_z`.

References:
    Spec ch. 7, Sect. 2 (TV prior ``||D x||_1``) and E2 (TV (ADMM) baseline). Rudin, Osher &
    Fatemi, Physica D 60 (1992). Boyd et al., "Distributed Optimization and Statistical Learning
    via the Alternating Direction Method of Multipliers", FnT ML 3 (2011), Sect. 6.4.
"""

import functools

import jax
import jax.numpy as jnp

from gensynth.inverse.dc import cg, soft_threshold

_RHO_OVER_LAM = 10.0  # default rho = 10 lam (see tv_reconstruct)
_RHO_MIN = 1e-2  # floor of the default rho, so that lam = 0 still runs (least squares)


def _forward_diff(x: jax.Array, axis: int) -> jax.Array:
    """``x[i + 1] - x[i]`` along ``axis``, 0 at the last index (Neumann boundary)."""
    return jnp.diff(x, axis=axis, append=jax.lax.slice_in_dim(x, -1, None, axis=axis))


def _forward_diff_adjoint(p: jax.Array, axis: int) -> jax.Array:
    """Adjoint of :func:`_forward_diff`: ``p[i - 1] - p[i]`` with ``p[-1] = p[n - 1] = 0``."""
    inner = jax.lax.slice_in_dim(p, 0, -1, axis=axis)  # the last entry multiplies nothing
    pad = [(0, 0)] * p.ndim
    pad[axis] = (1, 0)
    shifted = jnp.pad(inner, pad)  # p[i - 1]
    pad[axis] = (0, 1)
    return shifted - jnp.pad(inner, pad)


def Dxy(x: jax.Array) -> jax.Array:
    """Forward differences of an image along rows and columns, Neumann boundary.

    ``out[0, i, j] = x[i + 1, j] - x[i, j]`` and ``out[1, i, j] = x[i, j + 1] - x[i, j]``, with
    0 in the last row of ``out[0]`` and the last column of ``out[1]`` (zero difference across the
    border, the usual choice for images: constants and edges at the border cost nothing).

    Args:
        x: image ``[H, W]``, real or complex.

    Returns:
        ``[2, H, W]``, dtype of ``x``.

    Example:
        >>> Dxy(jnp.array([[0.0, 1.0], [2.0, 4.0]]))[:, 0]
        Array([[2., 3.],
               [1., 0.]], dtype=float32)
    """
    return jnp.stack([_forward_diff(x, -2), _forward_diff(x, -1)])


def DxyT(p: jax.Array) -> jax.Array:
    """Exact adjoint of :func:`Dxy` (minus the divergence): ``[2, H, W] -> [H, W]``.

    ``<Dxy(x), p> = <x, DxyT(p)>`` for real and complex arrays (``<a, b> = sum conj(a) b``).

    Example:
        >>> DxyT(jnp.ones((2, 2, 2)))
        Array([[-2.,  0.],
               [ 0.,  2.]], dtype=float32)
    """
    return _forward_diff_adjoint(p[0], -2) + _forward_diff_adjoint(p[1], -1)


def group_soft_threshold(v: jax.Array, kappa: float | jax.Array) -> jax.Array:
    """Proximal map of ``kappa ||.||_{2,1}`` with groups along axis 0 (complex-safe).

    ``p[:, ij] = v[:, ij] max(1 - kappa / ||v[:, ij]||_2, 0)``: each gradient vector shrinks
    towards 0 by ``kappa`` in length, keeping its direction (and phases).

    Args:
        v: ``[G, ...]``, e.g. the ``[2, H, W]`` image gradient.
        kappa: threshold >= 0.

    Returns:
        shape and dtype of ``v``.

    Example:
        >>> group_soft_threshold(jnp.array([[3.0, 0.3], [4.0, 0.4]]), 1.0)
        Array([[2.4, 0. ],
               [3.2, 0. ]], dtype=float32)
    """
    norm = jnp.sqrt(jnp.sum(jnp.abs(v) ** 2, axis=0))
    return v * (soft_threshold(norm, kappa) / jnp.where(norm > 0, norm, 1.0))


def tv_norm(x: jax.Array, isotropic: bool = True) -> jax.Array:
    """``TV(x)``: ``sum ||Dxy(x)[:, ij]||_2`` (isotropic) or ``sum |Dxy(x)|`` (anisotropic).

    Example:
        >>> float(tv_norm(jnp.array([[0.0, 3.0], [4.0, 4.0]])))  # |(4, 3)| + |(1, 0)|
        6.0
    """
    d = Dxy(x)
    if isotropic:
        return jnp.sum(jnp.sqrt(jnp.sum(jnp.abs(d) ** 2, axis=0)))
    return jnp.sum(jnp.abs(d))


def tv_reconstruct(
    op,
    y: jax.Array,
    *,
    lam: float | jax.Array,
    rho: float | jax.Array | None = None,
    n_iter: int = 100,
    n_cg: int = 5,
    x0: jax.Array | None = None,
    isotropic: bool = True,
) -> jax.Array:
    """TV-regularised least squares ``min_x 1/2 ||y - A x||^2 + lam TV(x)`` by ADMM (one image).

    One jitted program (``n_iter``, ``n_cg``, ``isotropic`` static; ``lam``, ``rho``, ``y``,
    ``x0`` and the operator's array leaves traced), so a sweep over ``lam`` / ``rho`` does not
    recompile and a batch is ``jax.vmap(lambda y: tv_reconstruct(op, y, lam=lam))(y)`` (the
    operator's leaves, e.g. per-image masks, can be vmapped too). Iteration cost:
    ``n_iter (n_cg + 1)`` applications of ``A^H A``.

    Defaults, for operators with ``||A|| ~ 1`` (MRI, inpainting, blur, pooling) and images in
    [-1, 1] (useful ``lam`` ~ 0.003-0.1; for denoising about half the noise std):

    - ``rho = max(10 lam, 0.01)``: the shrink threshold ``lam / rho = 0.1`` then sits between
      typical noise gradients and the edges of piecewise-constant images, and the x-system
      ``A^H A + rho D^T D`` (``||D^T D|| <= 8``) stays well conditioned for a few CG steps; the
      floor keeps ``lam = 0`` meaningful (plain least squares). For CT (``||A||^2 ~ views x
      detectors``) scale ``lam`` and ``rho`` with ``||A||^2`` or normalise the operator.
    - ``n_iter = 100`` ADMM iterations, ``n_cg = 5`` CG steps each, warm-started from the
      previous ``x`` (the x-updates change little after the first iterations).
    - ``x0 = None``: start from ``x = 0``, ``z = u = 0``; the first CG step then moves along
      ``A^H y`` (the zero-filled / back-projected image) with the optimal step for any scale of
      ``A``.

    Args:
        op: linear operator on one image (``op.A``, ``op.A_adjoint``); see ``gensynth.inverse``.
        y: one measurement (operator's measurement shape).
        lam: TV weight >= 0 (scalar; may be traced).
        rho: ADMM penalty > 0 (scalar; may be traced), or None for ``max(10 lam, 0.01)``.
        n_iter: ADMM iterations >= 1 (static).
        n_cg: CG steps per x-update >= 1 (static).
        x0: starting image (operator's image shape, cast to the dtype of ``A^H y``; the split
            starts at ``z = Dxy(x0)``, ``u = 0``), or None for zeros.
        isotropic: group (``l_{2,1}``) TV if True, anisotropic (``l_1``) TV if False (static).

    Returns:
        the reconstruction ``[H, W]``, dtype of ``A^H y`` (float32 or complex64).

    Raises:
        ValueError: for ``n_iter < 1``, ``n_cg < 1``, a concrete ``lam < 0`` or ``rho <= 0``, a
            non-2-D image space, or ``x0`` of the wrong shape.

    Example:
        >>> from gensynth.inverse.restoration import Inpaint
        >>> tv_reconstruct(Inpaint(jnp.ones((8, 8))), jnp.eye(8), lam=0.1).shape
        (8, 8)

    References:
        Rudin, Osher & Fatemi 1992; Boyd et al. 2011, Sect. 6.4; spec ch. 7, E2.
    """
    if not (isinstance(n_iter, int) and n_iter >= 1):
        raise ValueError(f"n_iter: expected an int >= 1, got {n_iter!r}")
    if not (isinstance(n_cg, int) and n_cg >= 1):
        raise ValueError(f"n_cg: expected an int >= 1, got {n_cg!r}")
    if isinstance(lam, (int, float)) and lam < 0:
        raise ValueError(f"lam: expected a TV weight >= 0, got {lam!r}")
    if isinstance(rho, (int, float)) and rho <= 0:
        raise ValueError(f"rho: expected an ADMM penalty > 0, got {rho!r}")
    image = jax.eval_shape(op.A_adjoint, y)
    if len(image.shape) != 2:
        raise ValueError(f"op: expected images [H, W], A^H y has shape {image.shape}")
    if x0 is not None and x0.shape != image.shape:
        raise ValueError(f"x0: expected shape {image.shape} (that of A^H y), got {x0.shape}")
    if rho is None:
        rho = jnp.maximum(_RHO_OVER_LAM * jnp.asarray(lam), _RHO_MIN)
    x0 = jnp.zeros(image.shape, image.dtype) if x0 is None else x0.astype(image.dtype)
    return _tv_admm(op, y, jnp.asarray(lam), jnp.asarray(rho), x0, n_iter, n_cg, isotropic)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _tv_admm(op, y, lam, rho, x0, n_iter, n_cg, isotropic):
    dtype = x0.dtype
    real = jnp.real(x0).dtype
    lam, rho = lam.astype(real), rho.astype(real)
    shrink = group_soft_threshold if isotropic else soft_threshold
    aty = op.A_adjoint(y).astype(dtype)  # [H, W]
    matvec = lambda v: (op.A_adjoint(op.A(v)) + rho * DxyT(Dxy(v))).astype(dtype)

    def step(_, carry):
        x, z, u = carry  # [H, W], [2, H, W], [2, H, W]
        x = cg(matvec, aty + rho * DxyT(z - u), x, n_cg)
        dx = Dxy(x)  # [2, H, W]
        z = shrink(dx + u, lam / rho)
        return x, z, u + dx - z

    zeros = jnp.zeros((2,) + x0.shape, dtype)
    x, _, _ = jax.lax.fori_loop(0, n_iter, step, (x0, Dxy(x0), zeros))
    return x
