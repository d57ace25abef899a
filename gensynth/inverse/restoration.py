"""Image-restoration operators (cross-checks and natural-image tasks): inpainting, average-pooling
super-resolution and circular Gaussian blur, with masks for inpainting.

Images are real float32 ``[H, W]`` (one image; batch with ``jax.vmap``).

References:
    Spec ch. 7, Sect. 6.3.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


def box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> jax.Array:
    """Inpainting mask that hides the box ``(row0, row1, col0, col1)`` (half-open).

    Returns:
        float32 ``[H, W]``: 1 = observed, 0 = missing.

    Example:
        >>> float(box_mask((4, 4), (1, 3, 1, 3)).sum())
        12.0
    """
    r0, r1, c0, c1 = box
    if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
        raise ValueError(f"box: expected (row0, row1, col0, col1) inside {shape}, got {box!r}")
    mask = np.ones(shape, np.float32)
    mask[r0:r1, c0:c1] = 0.0
    return jnp.asarray(mask)


def random_pixel_mask(shape: tuple[int, int], missing_fraction: float, seed: int = 0) -> jax.Array:
    """Inpainting mask hiding ``round(missing_fraction * H * W)`` random pixels (NumPy seed).

    Returns:
        float32 ``[H, W]``: 1 = observed, 0 = missing.

    Example:
        >>> float(random_pixel_mask((10, 10), 0.3).sum())
        70.0
    """
    if not 0.0 <= missing_fraction <= 1.0:
        raise ValueError(f"missing_fraction: expected in [0, 1], got {missing_fraction!r}")
    size = int(np.prod(shape))
    hidden = np.random.default_rng(seed).choice(size, round(missing_fraction * size), replace=False)
    mask = np.ones(size, np.float32)
    mask[hidden] = 0.0
    return jnp.asarray(mask.reshape(shape))


@struct.dataclass
class Inpaint:
    """Inpainting ``A = diag(mask)``: self-adjoint, ``A A^H = A`` (= I on the observed pixels),
    so ``A^H = A^dagger = A`` and :meth:`project` is the exact projection (copy observed pixels).

    Attributes:
        mask: ``[H, W]`` float32 in {0, 1}; 1 = observed.
    """

    mask: jax.Array  # [H, W] float32 in {0, 1}
    AAH_is_identity: ClassVar[bool] = True

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``[H, W]`` -> observed pixels on the full grid ``[H, W]`` (0 where missing)."""
        return self.mask * x

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """``[H, W]`` -> ``[H, W]``; equals :meth:`A`."""
        return self.mask * y

    def A_dagger(self, y: jax.Array) -> jax.Array:
        """Pseudo-inverse; equals :meth:`A`."""
        return self.mask * y

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Exact projection ``(1 - mask) x + mask y``."""
        return (1.0 - self.mask) * x + self.mask * y


@struct.dataclass
class AvgPoolSR:
    """Super-resolution by ``f x f`` average pooling.

    ``A^H`` is nearest-neighbour upsampling divided by ``f^2``, so ``A A^H = I / f^2`` and the
    pseudo-inverse is plain nearest upsampling ``A^dagger = f^2 A^H``. Because ``A A^H`` is a
    multiple of the identity, :meth:`project` ``x + A^dagger (y - A x)`` is the EXACT projection
    onto ``{A x = y}`` even though ``AAH_is_identity`` is False.

    Attributes:
        factor: pooling factor f (static; H and W must be multiples of it).
    """

    factor: int = struct.field(pytree_node=False)
    AAH_is_identity: ClassVar[bool] = False

    def __post_init__(self):
        if not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"factor: expected a positive int, got {self.factor!r}")

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``[H, W]`` -> low-resolution ``[H / f, W / f]``."""
        h, w = x.shape
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"x: expected H and W multiples of factor {f}, got shape {x.shape}")
        return x.reshape(h // f, f, w // f, f).mean(axis=(1, 3))  # [H/f, W/f]

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """Low-resolution ``[h, w]`` -> ``[h f, w f]``: nearest upsampling divided by ``f^2``."""
        return self.A_dagger(y) / self.factor**2

    def A_dagger(self, y: jax.Array) -> jax.Array:
        """Nearest-neighbour upsampling ``[h, w] -> [h f, w f]``."""
        return jnp.repeat(jnp.repeat(y, self.factor, axis=0), self.factor, axis=1)

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Exact projection ``x + A^dagger (y - A x)`` (block means replaced by ``y``)."""
        return x + self.A_dagger(y - self.A(x))


def gaussian_kernel(shape: tuple[int, int], sigma: float) -> jax.Array:
    """Periodic Gaussian kernel on the image grid, origin at ``[0, 0]``, summing to 1.

    Args:
        shape: ``(H, W)`` of the images to blur.
        sigma: std in pixels (> 0).

    Returns:
        float32 ``[H, W]``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma: expected > 0 pixels, got {sigma!r}")
    h, w = shape
    dy = np.minimum(np.arange(h), h - np.arange(h))[:, None]  # circular distance to the origin
    dx = np.minimum(np.arange(w), w - np.arange(w))[None, :]
    kernel = np.exp(-(dy**2 + dx**2) / (2.0 * sigma**2))
    return jnp.asarray(kernel / kernel.sum(), jnp.float32)


@struct.dataclass
class Blur:
    """Circular convolution with a kernel, by FFT: ``A x = ifft2(fft2(k) fft2(x))``.

    The adjoint convolves with the flipped kernel (``conj`` of the transfer function), exact to
    float precision. ``A A^H != I`` (the blur kills high frequencies), so :meth:`project` is one
    unit Landweber step (a contraction since ``||A|| <= 1`` for a kernel summing to 1).

    Attributes:
        kernel: ``[H, W]`` float32, origin at ``[0, 0]`` (see :func:`gaussian_kernel`).
    """

    kernel: jax.Array  # [H, W] float32, origin at [0, 0]
    AAH_is_identity: ClassVar[bool] = False

    @classmethod
    def gaussian(cls, shape: tuple[int, int], sigma: float) -> "Blur":
        """Gaussian blur of std ``sigma`` pixels for ``[H, W]`` images.

        Example:
            >>> Blur.gaussian((8, 8), 1.0).A(jnp.ones((8, 8)))[0, 0]
            Array(1., dtype=float32)
        """
        return cls(kernel=gaussian_kernel(shape, sigma))

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``[H, W]`` -> blurred ``[H, W]``."""
        return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(self.kernel) * jnp.fft.fft2(x)))

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """``[H, W]`` -> ``[H, W]``: correlation with the kernel."""
        return jnp.real(jnp.fft.ifft2(jnp.conj(jnp.fft.fft2(self.kernel)) * jnp.fft.fft2(y)))

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """One unit Landweber step ``x + A^H (y - A x)`` (erratum E10: not a projection)."""
        return x + self.A_adjoint(y - self.A(x))
