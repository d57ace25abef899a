"""MRI forward operators: single-coil Cartesian ``A = P_Omega F`` and multi-coil SENSE
``A = P_Omega F S``, plus the root-sum-of-squares coil combination.

Operator convention (all of ``gensynth.inverse``): an operator acts on ONE image, no batch and no
channel axis; solvers batch with ``jax.vmap``. MRI images are complex64 ``[H, W]``; single-coil
k-space is ``[H, W]``, multi-coil k-space ``[K, H, W]``, both complex64 with zeros off the mask
(``P_Omega`` is multiplication by the binary mask, so measurements live on the full grid).

References:
    Spec ch. 7, Sect. 6.1 and erratum E10; ch. 17, Sect. 2.3.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gensynth.inverse.fft import fft2c, ifft2c


def _is_array(a) -> bool:
    """True for concrete or traced arrays (not the placeholders JAX puts in pytree leaves)."""
    return isinstance(a, (jax.Array, np.ndarray))


def _check_mask(mask: jax.Array) -> None:
    if _is_array(mask) and mask.ndim != 2:
        raise ValueError(f"mask: expected a 2-D [H, W] sampling mask, got shape {mask.shape}")


@struct.dataclass
class SingleCoilMRI:
    """Single-coil Cartesian MRI, ``A x = M * fft2c(x)``.

    ``A A^H = P_Omega`` is the identity on the measurement space (k-space supported on the
    mask), so ``A^H`` is also the pseudo-inverse and :meth:`project` is the exact projection
    onto ``{x : A x = y}`` -- hard k-space replacement. The FFT runs over the last two axes, so
    the same operator also applies coil-wise to a stack ``[K, H, W]`` (the per-coil operator of
    spec Alg. 7.2).

    Attributes:
        mask: ``[H, W]`` float32 in {0, 1}; 1 = sampled k-space location (DC at the centre).
    """

    mask: jax.Array  # [H, W] float32 in {0, 1}
    AAH_is_identity: ClassVar[bool] = True

    def __post_init__(self):
        _check_mask(self.mask)

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``[..., H, W]`` complex -> masked k-space ``[..., H, W]`` complex."""
        return self.mask * fft2c(x)

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """Masked k-space ``[..., H, W]`` -> zero-filled image ``[..., H, W]``."""
        return ifft2c(self.mask * y)

    def A_dagger(self, y: jax.Array) -> jax.Array:
        """Pseudo-inverse; equals :meth:`A_adjoint` since ``A A^H = I``."""
        return self.A_adjoint(y)

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Exact projection ``(I - A^H A) x + A^H y = ifft2c((1 - M) F x + M y)``."""
        return ifft2c((1.0 - self.mask) * fft2c(x) + self.mask * y)


@struct.dataclass
class MultiCoilMRI:
    """Multi-coil SENSE MRI, ``(A x)_k = M * fft2c(S_k x)``.

    ``A^H y = sum_k conj(S_k) ifft2c(M y_k)``. With maps normalised to ``sum_k |S_k|^2 = 1``,
    ``||A|| <= 1`` but ``A A^H != I``, so ``x + A^H (y - A x)`` is one unit-step Landweber
    (gradient) step on ``1/2 ||A x - y||^2``, not a projection (erratum E10). :meth:`project`
    is that step; it lowers the residual but is not idempotent.

    Attributes:
        mask: ``[H, W]`` float32 in {0, 1}, shared by all coils.
        maps: ``[K, H, W]`` complex64 coil sensitivities.
    """

    mask: jax.Array  # [H, W] float32 in {0, 1}
    maps: jax.Array  # [K, H, W] complex64
    AAH_is_identity: ClassVar[bool] = False

    def __post_init__(self):
        _check_mask(self.mask)
        if not (_is_array(self.maps) and _is_array(self.mask)):
            return
        if self.maps.ndim != 3 or self.maps.shape[1:] != self.mask.shape:
            raise ValueError(
                f"maps: expected [K, H, W] with [H, W] = mask shape {self.mask.shape}, "
                f"got {self.maps.shape}"
            )

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``[H, W]`` complex -> multi-coil k-space ``[K, H, W]``."""
        return self.mask * fft2c(self.maps * x)  # [K, H, W]

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """Multi-coil k-space ``[K, H, W]`` -> coil-combined image ``[H, W]``."""
        return jnp.sum(jnp.conj(self.maps) * ifft2c(self.mask * y), axis=0)  # [H, W]

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """One unit Landweber step ``x + A^H (y - A x)`` (erratum E10: not a projection)."""
        return x + self.A_adjoint(y - self.A(x))


def rss(coil_images: jax.Array, axis: int = 0) -> jax.Array:
    """Root-sum-of-squares coil combination ``sqrt(sum_k |x_k|^2)``.

    Args:
        coil_images: ``[K, H, W]`` complex (coils along ``axis``).
        axis: the coil axis.

    Returns:
        float32 magnitude image ``[H, W]``.

    Example:
        >>> rss(jnp.full((4, 2, 2), 0.5 + 0j))
        Array([[1., 1.],
               [1., 1.]], dtype=float32)
    """
    return jnp.sqrt(jnp.sum(jnp.abs(coil_images) ** 2, axis=axis))
