"""Data consistency: projection / Landweber steps, conjugate gradients (real and complex) on the
data term, and the ADMM pieces of DiffusionMBIR's total variation along z.

Every function takes an operator ``op`` with ``op.A`` / ``op.A_adjoint`` (one image, no batch;
see ``gensynth.inverse``) and is pure and jit-able; iteration counts are static Python ints and
loops are ``lax.fori_loop``.

References:
    Spec ch. 7, Sect. 5.1, 5.2.4 (DDS, Eqs. 7.37-7.40), 5.3 (DiffusionMBIR) and errata E10, E13.
    Chung et al., "Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse Problems",
    ICLR 2024. Chung et al., "Solving 3D Inverse Problems using Pre-trained 2D Diffusion Models",
    CVPR 2023.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from gensynth.inverse.fft import fft2c, ifft2c


def project(x: jax.Array, y: jax.Array, op) -> jax.Array:
    """The operator's data-consistency step ``op.project(x, y)``.

    An exact projection onto ``{A x = y}`` when ``op.AAH_is_identity`` (``(I - A^H A) x + A^H y``);
    otherwise the operator's documented step (one unit Landweber step for SENSE/CT/blur, the exact
    pseudo-inverse projection for average pooling) -- erratum E10.

    Args:
        x: image (operator's image shape).
        y: measurement (operator's measurement shape).
        op: operator.

    Returns:
        image, shape of ``x``.
    """
    return op.project(x, y)


def landweber(x: jax.Array, y: jax.Array, op, step: float | jax.Array = 1.0) -> jax.Array:
    """One Landweber (gradient) step ``x + step A^H (y - A x)`` on ``1/2 ||y - A x||^2``.

    It lowers the residual for ``0 < step < 2 / ||A||^2``.

    Example:
        >>> from gensynth.inverse.dense import DenseOperator
        >>> op = DenseOperator.create(jnp.eye(2), (2,))
        >>> landweber(jnp.zeros(2), jnp.ones(2), op, 0.5)
        Array([0.5, 0.5], dtype=float32)
    """
    return x + step * op.A_adjoint(y - op.A(x))


def normalized_backprojection(
    x: jax.Array, y: jax.Array, op, lam: float | jax.Array = 1.0
) -> jax.Array:
    """Preconditioned Landweber step ``x + lam A^T (y - A x) / A^T A 1`` (elementwise division).

    For a non-negative ``A`` (CT) the diagonal preconditioner ``D = diag(A^T A 1)`` bounds the
    spectral radius of ``D^{-1} A^T A`` by 1, so ``0 < lam < 2`` lowers the D-weighted residual
    whatever the scale of ``A`` -- unlike the unit Landweber step, which diverges for CT where
    ``||A||^2 ~ N V``. Pixels no ray reaches (``A^T A 1 = 0``) are left unchanged. This is the
    data-consistency step of the score-CT / MCG reference code.

    Args:
        x: real image (operator's image shape).
        y: measurement (operator's measurement shape).
        op: linear operator with non-negative entries (e.g. :class:`~gensynth.inverse.ct.Radon`).
        lam: relaxation in (0, 2).

    Returns:
        image, shape of ``x``.
    """
    weight = op.A_adjoint(op.A(jnp.ones_like(x)))  # A^T A 1
    update = op.A_adjoint(y - op.A(x))
    return x + lam * jnp.where(weight > 0, update / jnp.where(weight > 0, weight, 1.0), 0.0)


def kspace_replace(x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Hard k-space replacement ``ifft2c((1 - M) fft2c(x) + M y)``.

    Args:
        x: complex image ``[..., H, W]``.
        y: k-space ``[..., H, W]`` (DC at the centre).
        mask: ``[H, W]`` in {0, 1}.

    Returns:
        complex image ``[..., H, W]``.
    """
    return ifft2c((1.0 - mask) * fft2c(x) + mask * y)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Real part of the inner product ``<a, b> = sum conj(a) b`` (real for Hermitian forms)."""
    return jnp.real(jnp.vdot(a, b))


def cg(
    matvec: Callable[[jax.Array], jax.Array],
    b: jax.Array,
    x0: jax.Array,
    n_iter: int,
    tol: float = 0.0,
) -> jax.Array:
    """Conjugate gradients for ``H x = b`` with ``H`` Hermitian positive (semi-)definite.

    Fixed ``n_iter`` iterations in one ``lax.fori_loop``; once
    ``||r|| <= max(tol ||b||, 8 eps max(||b||, ||H x0||))`` (eps of the dtype) the updates are
    masked to zero (so the result is jit-able with a static trip count). Complex arrays use the
    complex inner product ``vdot``. Iterate k lies in ``x0 + K_k(H, b - H x0)``.

    Args:
        matvec: ``x -> H x``, same shape and dtype in and out.
        b: right-hand side, any shape, float32 or complex64.
        x0: starting point, shape and dtype of ``b``.
        n_iter: number of iterations (static).
        tol: relative residual tolerance (0 = run all iterations).

    Returns:
        the approximate solution, shape of ``b``.

    Example:
        >>> H = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> cg(lambda v: H @ v, jnp.array([1.0, 2.0]), jnp.zeros(2), 2)
        Array([0.09090909, 0.6363636 ], dtype=float32)

    References:
        Hestenes and Stiefel, J. Res. NBS 49 (1952).
    """
    # The residual is only known to about eps (||b|| + ||H x0||): below ~8 eps of that scale the
    # float rounding dominates (with components in the null space of a semi-definite H, e.g.
    # ADMM-TV-z's) and a further step divides noise by a near-zero curvature, blowing x up along
    # that null space; so updates stop there even when tol = 0.
    h_x0 = matvec(x0)
    floor = (8 * jnp.finfo(jnp.real(b).dtype).eps) ** 2 * jnp.maximum(_dot(b, b), _dot(h_x0, h_x0))
    threshold = jnp.maximum(tol**2 * _dot(b, b), floor)
    r = b - h_x0

    def body(_, state):
        x, r, p, rs = state
        hp = matvec(p)
        denom = _dot(p, hp)
        active = (rs > threshold) & (denom > 0)
        alpha = jnp.where(active, rs / jnp.where(active, denom, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * hp
        rs_new = _dot(r, r)
        beta = jnp.where(active, rs_new / jnp.where(active, rs, 1.0), 0.0)
        p = jnp.where(active, r + beta * p, p)
        return x, r, p, jnp.where(active, rs_new, rs)

    x, *_ = jax.lax.fori_loop(0, n_iter, body, (x0, r, r, _dot(r, r)))
    return x


def cg_data_consistency(
    x_hat: jax.Array, y: jax.Array, op, n_iter: int, gamma: float | None = None
) -> jax.Array:
    """DDS data consistency: ``n_iter`` CG steps on the data term started from ``x_hat``.

    Noiseless (``gamma=None``): CG on the normal equations ``A^H A x = A^H y`` from ``x_hat``, so
    iterate k lies in ``x_hat + K_k(A^H A, A^H (y - A x_hat))`` (corrected Eq. 7.37, erratum E13):
    the component of ``x_hat`` in the null space of ``A`` is never changed, and ``||y - A x_k||``
    does not increase. Noisy: solve ``(I + gamma A^H A) x = x_hat + gamma A^H y``, the minimiser of
    ``||x - x_hat||^2 + gamma ||y - A x||^2``.

    Args:
        x_hat: Tweedie estimate (operator's image shape).
        y: measurement (operator's measurement shape).
        op: linear operator.
        n_iter: CG steps (static; DDS uses ~5).
        gamma: data weight for the regularised variant, or None.

    Returns:
        image, shape and dtype of ``x_hat``.

    References:
        Chung et al., ICLR 2024 (DDS), Eqs. 7.37-7.40 of the spec.
    """
    gram = lambda v: op.A_adjoint(op.A(v))
    aty = op.A_adjoint(y).astype(x_hat.dtype)
    if gamma is None:
        return cg(lambda v: gram(v).astype(x_hat.dtype), aty, x_hat, n_iter)
    matvec = lambda v: (v + gamma * gram(v)).astype(x_hat.dtype)
    return cg(matvec, x_hat + gamma * aty, x_hat, n_iter)


def Dz(x: jax.Array, axis: int = 0) -> jax.Array:
    """Circular forward difference ``x[i + 1] - x[i]`` along ``axis`` (z of ``[D, H, W]``)."""
    return jnp.roll(x, -1, axis=axis) - x


def DzT(z: jax.Array, axis: int = 0) -> jax.Array:
    """Adjoint of :func:`Dz`: ``z[i - 1] - z[i]`` (circular)."""
    return jnp.roll(z, 1, axis=axis) - z


def soft_threshold(x: jax.Array, kappa: float | jax.Array) -> jax.Array:
    """Proximal map of ``kappa |.|`` (complex-safe): ``x max(|x| - kappa, 0) / |x|``.

    Example:
        >>> soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0)
        Array([-1.,  0.,  2.], dtype=float32)
    """
    mag = jnp.abs(x)
    return x * (jnp.maximum(mag - kappa, 0.0) / jnp.where(mag > 0, mag, 1.0))


@struct.dataclass
class ADMMState:
    """Split variable and scaled dual of ADMM-TV-z.

    Attributes:
        z: ``[D, H, W]``, the auxiliary ``z ~ Dz x``.
        u: ``[D, H, W]``, the scaled dual variable.
    """

    z: jax.Array  # [D, H, W]
    u: jax.Array  # [D, H, W]


def admm_tv_z_init(x: jax.Array) -> ADMMState:
    """ADMM state for volume ``x`` ``[D, H, W]``: ``z = Dz x``, ``u = 0``."""
    return ADMMState(z=Dz(x), u=jnp.zeros_like(x))


def admm_tv_z(
    x: jax.Array,
    y: jax.Array,
    op,
    state: ADMMState,
    rho: float,
    lam: float,
    n_cg: int,
    gamma: float | jax.Array | None = None,
) -> tuple[jax.Array, ADMMState]:
    """One ADMM iteration for ``min_x 1/2 ||y - A x||^2 + lam ||Dz x||_1`` on a volume.

    ``A`` acts slice-wise (``op`` takes one ``[H, W]`` slice; it is vmapped over D):

    .. math::
        x \\leftarrow \\arg\\min 1/2 ||y - A x||^2 + \\rho/2 ||Dz x - z + u||^2
            \\quad (n_{cg}\\ \\text{CG steps from } x) \\\\
        z \\leftarrow \\mathrm{soft}(Dz x + u, \\lambda / \\rho), \\quad u \\leftarrow u + Dz x - z

    With ``gamma`` the objective gains DDS's proximal term ``1/(2 gamma) ||x - x_in||^2`` around
    the input ``x_in`` (the Tweedie estimate), i.e. ``gamma/2 ||y - A x||^2 + 1/2 ||x - x_in||^2
    + gamma lam ||Dz x||_1`` up to the factor ``gamma``; the x-update's normal equations gain
    ``x / gamma`` on the left and ``x_in / gamma`` on the right.

    Args:
        x: volume ``[D, H, W]`` (e.g. the slice-wise denoised estimate).
        y: measurements ``[D, ...]``, one per slice.
        op: slice operator.
        state: :class:`ADMMState` from :func:`admm_tv_z_init` or the previous call.
        rho: ADMM penalty > 0.
        lam: TV-z weight >= 0.
        n_cg: CG steps for the x-update (static).
        gamma: None (data term alone), or the data weight > 0 of the proximal variant.

    Returns:
        ``(x [D, H, W], new state)``.

    References:
        Chung et al., CVPR 2023 (DiffusionMBIR), spec Sect. 5.3; DDS (ICLR 2024) for ``gamma``.
    """
    a = jax.vmap(op.A)
    ah = jax.vmap(op.A_adjoint)

    def matvec(v):
        hv = ah(a(v)) + rho * DzT(Dz(v))
        return (hv if gamma is None else hv + v / gamma).astype(x.dtype)

    rhs = ah(y) + rho * DzT(state.z - state.u)
    rhs = (rhs if gamma is None else rhs + x / gamma).astype(x.dtype)
    x = cg(matvec, rhs, x, n_cg)
    dx = Dz(x)
    z = soft_threshold(dx + state.u, lam / rho)
    return x, ADMMState(z=z, u=state.u + dx - z)
