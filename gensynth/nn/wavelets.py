"""Orthonormal Haar wavelet transforms of 2D images and 3D volumes, as space-to-depth maps.

One level splits every 2x2 (2D) or 2x2x2 (3D) block into 4 or 8 sub-bands at half the
resolution, stacked on the channel axis band-major:

  2D ``[B, H, W, C] -> [B, H/2, W/2, 4C]``, bands ``LL, LH, HL, HH``;
  3D ``[B, D, H, W, C] -> [B, D/2, H/2, W/2, 8C]``, bands ``LLL, LLH, LHL, LHH, HLL, HLH, HHL, HHH``.

The k-th letter is the filter along the k-th spatial axis (L low-pass ``(1, 1)/sqrt(2)``, H
high-pass ``(1, -1)/sqrt(2)``); band ``b`` (``b = 4 s_1 + 2 s_2 + s_3`` in 3D with ``s_k = 0`` for
L, 1 for H) of input channel ``c`` is output channel ``b * C + c``. With ``w_L = (1, 1)/sqrt(2)`` and
``w_H = (1, -1)/sqrt(2)``, for block index ``(I, J, K)``:

.. math::
  \\mathrm{band}_{s_1 s_2 s_3}[I, J, K] = \\sum_{a, b, c \\in \\{0, 1\\}}
      w_{s_1}[a]\\, w_{s_2}[b]\\, w_{s_3}[c]\\; x[2I + a, 2J + b, 2K + c]

This is PyWavelets' ``dwtn(x, 'haar')`` with keys ``aaa, aad, ..., ddd`` (a = L, d = H). The map
is orthogonal: it preserves energy (``||DWT x|| = ||x||``), keeps i.i.d. N(0, 1) noise i.i.d.
N(0, 1), and its adjoint is its inverse. A constant ``v`` has ``LL = 2 v`` / ``LLL = 2 sqrt(2) v``
and zero detail bands.

``levels = L > 1`` applies the one-level map L times to *all* channels (the full Haar
wavelet-packet tree, still one orthogonal space-to-depth map): ``[B, S/2^L, 4^L C]`` in 2D,
``[B, S/2^L, 8^L C]`` in 3D, channel ``b_L * (8^{L-1} C) + ... + b_1 * C + c`` (3D) with ``b_l``
the band index at level l. Its first C channels (all-L at every level) are the usual level-L
approximation: the ``2^L``-block sums divided by ``sqrt(2)^(nL)`` (n = 2 or 3 spatial axes).

The butterflies are additions and subtractions, not matrix products, so the transforms are
exact to rounding in any dtype (no TF32 matmul on GPUs) and keep the input's dtype.

References:
  Haar, "Zur Theorie der orthogonalen Funktionensysteme", Math. Ann. 69 (1910);
  Friedrich et al., "WDM: 3D Wavelet Diffusion Models for High-Resolution Medical Image
  Synthesis", DGM4MICCAI 2024 (arXiv:2402.19043), which diffuses on the 8 sub-bands.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

BANDS_2D = ("LL", "LH", "HL", "HH")
BANDS_3D = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")


def _butterflies(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Applies ``[[1, 1], [1, -1]] / sqrt(2)`` along each size-2 axis in ``axes`` (its own inverse)."""
    scale = jnp.asarray(1.0 / math.sqrt(2.0), x.dtype)
    for axis in axes:
        even, odd = jnp.split(x, 2, axis=axis)
        x = jnp.concatenate([(even + odd) * scale, (even - odd) * scale], axis=axis)
    return x


def _check_levels(levels: int) -> None:
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels: expected an int >= 1, got {levels!r}")


def _check_rank(name: str, x: jax.Array, n: int) -> None:
    layout = "[B, H, W, C]" if n == 2 else "[B, D, H, W, C]"
    if x.ndim != n + 2:
        raise ValueError(f"{name}: expected a {n}D batch {layout} (rank {n + 2}), got shape {x.shape}")


def _dwt_once(x: jax.Array, n: int) -> jax.Array:
    """One level: ``[B, *S, C] -> [B, *S/2, 2^n C]`` (band-major channels)."""
    batch, *spatial, channels = x.shape
    half = [s // 2 for s in spatial]
    split = [batch] + [d for h in half for d in (h, 2)] + [channels]
    x = x.reshape(split)  # [B, S1/2, 2, S2/2, 2, (S3/2, 2,) C]
    order = (0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    x = x.transpose(order)  # [B, S1/2, S2/2, (S3/2,) 2, 2, (2,) C]: block offsets a, b, (c)
    x = _butterflies(x, tuple(range(n + 1, 2 * n + 1)))  # offsets -> bands s1, s2, (s3)
    return x.reshape(batch, *half, (2**n) * channels)


def _idwt_once(y: jax.Array, n: int) -> jax.Array:
    """Inverse of :func:`_dwt_once`: ``[B, *S, 2^n C] -> [B, *2S, C]``."""
    batch, *half, channels = y.shape
    y = y.reshape(batch, *half, *(2,) * n, channels // 2**n)  # [B, *S, 2, 2, (2,) C]: bands
    y = _butterflies(y, tuple(range(n + 1, 2 * n + 1)))  # bands -> block offsets
    order = (0, *(i for k in range(n) for i in (1 + k, n + 1 + k)), 2 * n + 1)
    y = y.transpose(order)  # [B, S1, 2, S2, 2, (S3, 2,) C]
    return y.reshape(batch, *(2 * h for h in half), channels // 2**n)


def _dwt(name: str, x: jax.Array, n: int, levels: int) -> jax.Array:
    _check_levels(levels)
    _check_rank(name, x, n)
    factor = 2**levels
    if any(s % factor for s in x.shape[1:-1]):
        raise ValueError(
            f"{name}: spatial sizes must be divisible by {factor} (2**levels, levels={levels}); "
            f"got shape {x.shape} (pad odd sizes first)"
        )
    for _ in range(levels):
        x = _dwt_once(x, n)
    return x


def _idwt(name: str, y: jax.Array, n: int, levels: int) -> jax.Array:
    _check_levels(levels)
    _check_rank(name, y, n)
    factor = (2**n) ** levels
    if y.shape[-1] % factor:
        raise ValueError(
            f"{name}: channels must be divisible by {factor} ({2**n}**levels sub-bands, levels={levels}); "
            f"got shape {y.shape}"
        )
    for _ in range(levels):
        y = _idwt_once(y, n)
    return y


def haar_dwt2(x: jax.Array, levels: int = 1) -> jax.Array:
    """Orthonormal 2D Haar transform ``[B, H, W, C] -> [B, H/2^L, W/2^L, 4^L C]`` (see module docstring).

    Args:
      x: ``[B, H, W, C]`` images (any float dtype); H and W divisible by ``2**levels``.
      levels: number of levels L >= 1 (wavelet-packet tree for L > 1).

    Returns:
      ``[B, H/2^L, W/2^L, 4^L C]`` coefficients, channel ``band * C + c`` for L = 1 with bands
      ``BANDS_2D`` = LL, LH, HL, HH; same dtype as ``x``.

    Raises:
      ValueError: for a wrong rank, sizes not divisible by ``2**levels`` or a bad ``levels``.

    >>> [round(float(v), 4) for v in haar_dwt2(jnp.ones((1, 4, 4, 1)))[0, 0, 0]]
    [2.0, 0.0, 0.0, 0.0]
    """
    return _dwt("x", x, 2, levels)


def haar_idwt2(y: jax.Array, levels: int = 1) -> jax.Array:
    """Inverse (and adjoint) of :func:`haar_dwt2`: ``[B, H, W, 4^L C] -> [B, 2^L H, 2^L W, C]``.

    Raises:
      ValueError: for a wrong rank, channels not divisible by ``4**levels`` or a bad ``levels``.

    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> float(jnp.max(jnp.abs(haar_idwt2(haar_dwt2(x)) - x))) < 1e-5  # x up to 15, float32
    True
    """
    return _idwt("y", y, 2, levels)


def haar_dwt3(x: jax.Array, levels: int = 1) -> jax.Array:
    """Orthonormal 3D Haar transform ``[B, D, H, W, C] -> [B, D/2^L, H/2^L, W/2^L, 8^L C]``.

    Args:
      x: ``[B, D, H, W, C]`` volumes (any float dtype); D, H, W divisible by ``2**levels``.
      levels: number of levels L >= 1 (wavelet-packet tree for L > 1).

    Returns:
      Coefficients, channel ``band * C + c`` for L = 1 with bands ``BANDS_3D`` = LLL, LLH, LHL,
      LHH, HLL, HLH, HHL, HHH (letter k: filter along spatial axis k); same dtype as ``x``.

    Raises:
      ValueError: for a wrong rank, sizes not divisible by ``2**levels`` or a bad ``levels``.

    >>> y = haar_dwt3(jnp.ones((1, 2, 2, 2, 1)))
    >>> y.shape, round(float(y[0, 0, 0, 0, 0]), 4)  # LLL = 2 sqrt(2) for a constant 1
    ((1, 1, 1, 1, 8), 2.8284)

    References:
      Friedrich et al. 2024 (WDM), Sect. 2; spec ch. 13, Sect. 2.6.1.
    """
    return _dwt("x", x, 3, levels)


def haar_idwt3(y: jax.Array, levels: int = 1) -> jax.Array:
    """Inverse (and adjoint) of :func:`haar_dwt3`: ``[B, D, H, W, 8^L C] -> [B, 2^L D, 2^L H, 2^L W, C]``.

    Raises:
      ValueError: for a wrong rank, channels not divisible by ``8**levels`` or a bad ``levels``.

    >>> haar_idwt3(jnp.zeros((2, 4, 4, 4, 8))).shape
    (2, 8, 8, 8, 1)
    """
    return _idwt("y", y, 3, levels)
