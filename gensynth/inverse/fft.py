"""Centred, orthonormal 2-D discrete Fourier transforms over the last two axes.

``fft2c(x) = fftshift(fft2(ifftshift(x)), norm="ortho")``: the image centre maps to the k-space
centre (DC at index ``[H // 2, W // 2]``) and the transform is unitary, so ``ifft2c`` is both its
inverse and its adjoint and ``||fft2c(x)|| = ||x||``.

References:
    Spec ch. 7, Sect. 6.1; ch. 17, Sect. 2.3.
"""

import jax
import jax.numpy as jnp

_AXES = (-2, -1)


def fft2c(x: jax.Array) -> jax.Array:
    """Centred orthonormal 2-D DFT over the last two axes.

    Args:
        x: image ``[..., H, W]``, real or complex.

    Returns:
        complex k-space ``[..., H, W]`` (complex64 for float32 input), DC at ``[H // 2, W // 2]``.

    Example:
        >>> fft2c(jnp.ones((4, 4)))[2, 2]
        Array(4.+0.j, dtype=complex64)
    """
    x = jnp.fft.ifftshift(x, axes=_AXES)
    return jnp.fft.fftshift(jnp.fft.fft2(x, axes=_AXES, norm="ortho"), axes=_AXES)


def ifft2c(k: jax.Array) -> jax.Array:
    """Inverse (and adjoint) of :func:`fft2c` over the last two axes.

    Args:
        k: k-space ``[..., H, W]``, DC at ``[H // 2, W // 2]``.

    Returns:
        complex image ``[..., H, W]``.

    Example:
        >>> x = jnp.arange(16.0).reshape(4, 4)
        >>> bool(jnp.allclose(ifft2c(fft2c(x)).real, x, atol=1e-5))
        True
    """
    k = jnp.fft.ifftshift(k, axes=_AXES)
    return jnp.fft.fftshift(jnp.fft.ifft2(k, axes=_AXES, norm="ortho"), axes=_AXES)
