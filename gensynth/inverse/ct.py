"""Parallel-beam CT: a matrix-free, differentiable Radon transform, its exact adjoint
(back-projection) and filtered back-projection, plus sparse-view and limited-angle angle sets.

Geometry (scikit-image's ``radon`` convention): image ``x`` ``[N, N]`` float32 (attenuation per
pixel), centre ``c = (N - 1) / 2``. Detector bin ``j`` sits at ``s_j = j - (D - 1) / 2`` pixels;
view ``theta`` integrates along the line through the points

    (row, col) = (c - s sin(theta) + t cos(theta), c + s cos(theta) + t sin(theta)),

sampled at unit steps ``t`` with bilinear interpolation (rotate-and-sum), so sinogram values are
line integrals in pixel units. The sinogram is ``[V, D]`` (views, detector bins). The adjoint is
``jax.linear_transpose`` of the forward map, so ``A^T A`` is exactly symmetric for CG.

References:
    Spec ch. 7, Sect. 6.2; Kak and Slaney, "Principles of Computerized Tomographic Imaging"
    (1988), ch. 3 (filtered back-projection).
"""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.ndimage import map_coordinates

from gensynth.inverse.dc import normalized_backprojection


def sparse_view_angles(n_views: int) -> jax.Array:
    """``n_views`` angles uniformly spaced over [0, pi), no endpoint (sparse-view CT).

    Returns:
        float32 ``[V]`` in radians.

    Example:
        >>> sparse_view_angles(4)
        Array([0.       , 0.7853982, 1.5707964, 2.3561945], dtype=float32)
    """
    if n_views < 1:
        raise ValueError(f"n_views: expected >= 1, got {n_views!r}")
    return jnp.asarray(np.linspace(0.0, np.pi, n_views, endpoint=False), jnp.float32)


def limited_angle_angles(n_views: int, step_deg: float = 1.0, start_deg: float = 0.0) -> jax.Array:
    """Contiguous views ``start, start + step, ...`` degrees (limited-angle CT; the DDS script uses
    120 views of 1 degree, a 120 degree arc).

    Returns:
        float32 ``[V]`` in radians.

    Example:
        >>> limited_angle_angles(120).shape
        (120,)
    """
    if n_views < 1:
        raise ValueError(f"n_views: expected >= 1, got {n_views!r}")
    return jnp.asarray(np.deg2rad(start_deg + step_deg * np.arange(n_views)), jnp.float32)


def default_n_det(size: int) -> int:
    """Detector bins covering the whole image diagonal, ``ceil(N sqrt(2))`` (363 for N = 256)."""
    return math.ceil(size * math.sqrt(2.0))


def ramp_filter(sinogram: jax.Array) -> jax.Array:
    """Ram-Lak ramp filter along the detector axis (band-limited spatial kernel, no DC bias).

    Args:
        sinogram: ``[V, D]`` float32.

    Returns:
        filtered sinogram ``[V, D]`` float32.
    """
    d = sinogram.shape[-1]
    n = max(64, 1 << math.ceil(math.log2(2 * d)))  # zero-pad against circular wrap-around
    k = np.concatenate([np.arange(1, n // 2 + 1, 2), np.arange(n // 2 - 1, 0, -2)])
    kernel = np.zeros(n)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (np.pi * k) ** 2
    response = jnp.asarray(2.0 * np.real(np.fft.fft(kernel)), jnp.float32)  # [n]
    spectrum = jnp.fft.fft(sinogram, n=n, axis=-1) * response
    return jnp.real(jnp.fft.ifft(spectrum, axis=-1))[..., :d]


@struct.dataclass
class Radon:
    """Parallel-beam Radon transform ``A = R_theta`` and its exact adjoint.

    ``A^T`` is the (unfiltered) back-projection; :meth:`A_dagger` is filtered back-projection.
    ``A A^T != I``, so :meth:`project` is not a projection (erratum E10). Since ``||A||^2`` is of
    order ``N V`` here, a unit Landweber step would diverge; :meth:`project` is instead the
    preconditioned step ``x + A^T (y - A x) / A^T A 1``
    (:func:`gensynth.inverse.dc.normalized_backprojection`), a descent step at any scale. For an
    exact least-squares fit use CG (:func:`gensynth.inverse.dc.cg_data_consistency`).

    Attributes:
        angles: view angles ``[V]`` float32 in radians.
        image_size: N, the image is ``[N, N]`` (static).
        n_det: D detector bins of unit (pixel) width (static).
    """

    angles: jax.Array  # [V] float32, radians
    image_size: int = struct.field(pytree_node=False)
    n_det: int = struct.field(pytree_node=False)
    AAH_is_identity: ClassVar[bool] = False

    @classmethod
    def create(cls, angles: jax.Array, image_size: int, n_det: int | None = None) -> "Radon":
        """Build a Radon operator; ``n_det`` defaults to ``ceil(N sqrt(2))``.

        Example:
            >>> Radon.create(sparse_view_angles(8), 32).n_det
            46
        """
        angles = jnp.asarray(angles, jnp.float32)
        if angles.ndim != 1:
            raise ValueError(f"angles: expected [V] radians, got shape {angles.shape}")
        if image_size < 2:
            raise ValueError(f"image_size: expected >= 2 pixels, got {image_size!r}")
        n_det = default_n_det(image_size) if n_det is None else int(n_det)
        return cls(angles=angles, image_size=int(image_size), n_det=n_det)

    def _coordinates(self) -> jax.Array:
        """Sample points ``[2, V, D, T]`` (row, col) of every ray."""
        c = (self.image_size - 1) / 2.0
        s = jnp.arange(self.n_det, dtype=jnp.float32) - (self.n_det - 1) / 2.0  # [D]
        t = s  # the ray spans the same length as the detector
        cos = jnp.cos(self.angles)[:, None, None]  # [V, 1, 1]
        sin = jnp.sin(self.angles)[:, None, None]
        rows = c - s[None, :, None] * sin + t[None, None, :] * cos  # [V, D, T]
        cols = c + s[None, :, None] * cos + t[None, None, :] * sin  # [V, D, T]
        return jnp.stack([rows, cols])  # [2, V, D, T]

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``[N, N]`` float32 -> sinogram ``[V, D]`` float32 (line integrals, pixel units)."""
        rows, cols = self._coordinates()
        samples = map_coordinates(x, [rows, cols], order=1, mode="constant", cval=0.0)
        return jnp.sum(samples, axis=-1)  # [V, D]

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """Sinogram ``[V, D]`` -> back-projection ``[N, N]`` (exact transpose of :meth:`A`)."""
        image = jax.ShapeDtypeStruct((self.image_size, self.image_size), jnp.float32)
        (x,) = jax.linear_transpose(self.A, image)(y.astype(jnp.float32))
        return x

    def A_dagger(self, y: jax.Array) -> jax.Array:
        """Filtered back-projection :func:`fbp` (assumes views spread uniformly over 180 deg)."""
        return fbp(self, y)

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Preconditioned Landweber step ``x + A^T (y - A x) / A^T A 1`` (not a projection)."""
        return normalized_backprojection(x, y, self)


def fbp(op: Radon, sinogram: jax.Array) -> jax.Array:
    """Filtered back-projection: ramp-filter each view, back-project, scale by ``pi / (2 V)``.

    Exact in the limit of many views uniformly spread over [0, pi); for limited-angle sets it is
    the usual (artefacted) FBP.

    Args:
        op: the :class:`Radon` operator that produced ``sinogram``.
        sinogram: ``[V, D]`` float32.

    Returns:
        image ``[N, N]`` float32, in the units of the original image.

    Example:
        >>> op = Radon.create(sparse_view_angles(8), 16)
        >>> fbp(op, op.A(jnp.ones((16, 16)))).shape
        (16, 16)
    """
    n_views = op.angles.shape[0]
    return op.A_adjoint(ramp_filter(sinogram)) * (jnp.pi / (2.0 * n_views))
