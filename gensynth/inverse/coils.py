"""Coil sensitivity maps: synthetic birdcage-style maps and an ESPIRiT-free estimate from the
fully sampled centre of multi-coil k-space.

Maps are complex64 ``[K, H, W]`` normalised so that ``sum_k |S_k|^2 = 1`` on the support, which
makes the SENSE operator a contraction and ``rss({S_k x}) = |x|``.

References:
    Spec ch. 17, Sect. 7.3 (synthetic maps) and test 9; ch. 7, Sect. 6.1.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.inverse.fft import ifft2c
from gensynth.inverse.mri import rss


def birdcage_maps(
    shape: tuple[int, int], n_coils: int, radius: float = 1.2, width: float = 0.8
) -> jax.Array:
    """Smooth synthetic coil maps: Gaussian-profile coils on a circle around the field of view.

    In coordinates ``r in [-1, 1]^2`` (FOV = 2), coil k sits at ``r_k = radius (cos phi_k,
    sin phi_k)``, ``phi_k = 2 pi k / K``, with

    .. math::
        C_k(r) = \\exp(-|r - r_k|^2 / (2 s^2))
                 \\exp(i (\\phi_k + 0.5 \\langle r - r_k, e_k \\rangle / 2))

    (``s`` = ``width``, ``e_k`` the unit vector towards the coil), then ``S_k = C_k /
    sqrt(sum_j |C_j|^2)``, so ``sum_k |S_k|^2 = 1`` at every pixel.

    Args:
        shape: ``(H, W)`` in pixels.
        n_coils: K >= 1.
        radius: coil-circle radius in half-FOV units (1.2 = 1.2 x FOV / 2).
        width: Gaussian profile std ``s`` in half-FOV units (0.8 = 0.4 x FOV).

    Returns:
        complex64 ``[K, H, W]``.

    Example:
        >>> birdcage_maps((16, 16), 4).shape
        (4, 16, 16)
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"shape: expected (H, W) with positive sides, got {shape!r}")
    if n_coils < 1:
        raise ValueError(f"n_coils: expected >= 1, got {n_coils!r}")
    h, w = shape
    y = np.linspace(-1.0, 1.0, h)[:, None]
    x = np.linspace(-1.0, 1.0, w)[None, :]
    maps = []
    for k in range(n_coils):
        phi = 2.0 * np.pi * k / n_coils
        ex, ey = np.cos(phi), np.sin(phi)
        dx, dy = x - radius * ex, y - radius * ey
        profile = np.exp(-(dx**2 + dy**2) / (2.0 * width**2))
        phase = phi + 0.5 * (dx * ex + dy * ey) / 2.0
        maps.append(profile * np.exp(1j * phase))
    maps = np.stack(maps)  # [K, H, W]
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return jnp.asarray(maps, jnp.complex64)


def estimate_coil_maps(kspace: jax.Array, acs_size: int, threshold: float = 0.05) -> jax.Array:
    """Coil maps from the fully sampled k-space centre: low-resolution coil images over their RSS.

    The central ``acs_size x acs_size`` block of each coil's k-space is Hann-windowed and
    inverse-transformed; dividing by the RSS of those low-resolution images gives maps with
    ``sum_k |S_k|^2 = 1`` wherever the RSS exceeds ``threshold`` times its maximum, and 0
    elsewhere (the support). The maps carry the object's low-resolution phase; that is harmless
    for SENSE since it is shared by all coils.

    Args:
        kspace: multi-coil k-space ``[K, H, W]`` complex64, DC at ``[H // 2, W // 2]``; only the
            central block is read, so undersampled data with an ACS region is fine.
        acs_size: side of the central calibration block in k-space samples.
        threshold: support threshold, relative to the maximum low-resolution RSS.

    Returns:
        complex64 ``[K, H, W]``.

    Example:
        >>> from gensynth.inverse.fft import fft2c
        >>> y = fft2c(birdcage_maps((16, 16), 4))
        >>> estimate_coil_maps(y, 8).shape
        (4, 16, 16)
    """
    if kspace.ndim != 3:
        raise ValueError(f"kspace: expected multi-coil [K, H, W], got shape {kspace.shape}")
    _, h, w = kspace.shape
    if not 1 <= acs_size <= min(h, w):
        raise ValueError(f"acs_size: expected 1..{min(h, w)}, got {acs_size!r}")
    window_1d = np.hanning(acs_size + 2)[1:-1]
    window = np.zeros((h, w), np.float32)
    r0, c0 = h // 2 - acs_size // 2, w // 2 - acs_size // 2
    window[r0 : r0 + acs_size, c0 : c0 + acs_size] = np.outer(window_1d, window_1d)
    low = ifft2c(kspace * window)  # [K, H, W]
    norm = rss(low)  # [H, W]
    support = norm > threshold * jnp.max(norm)
    return jnp.where(support, low / jnp.where(support, norm, 1.0), 0.0).astype(jnp.complex64)
