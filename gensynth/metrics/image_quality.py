"""Full-reference image-quality metrics: PSNR, SSIM and NMSE, one value per image.

Images are channels-last ``[..., H, W, C]``; complex arrays are compared as magnitude images
``|x|`` (the MRI convention). Callers choose what a real image means: gensynth's diffusion
images live in [-1, 1], so ``data_range = 2``. `ssim` is dm-pix's; `ssim_terms` computes the
same quantity in 2D or 3D together with its contrast-structure factor, which multi-scale SSIM
(`gensynth.metrics.distribution.ms_ssim`) needs and dm-pix does not expose.

References:
  Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility to
  structural similarity" (SSIM); Zbontar et al. 2018, "fastMRI" (NMSE, PSNR as reported there).
"""

import dm_pix as pix
import jax
import jax.numpy as jnp
from jax import lax


def _magnitude(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return jnp.abs(x) if jnp.iscomplexobj(x) else x.astype(jnp.float32)


def _check_pair(x: jax.Array, ref: jax.Array) -> None:
    if x.shape != ref.shape or x.ndim < 3:
        raise ValueError(
            f"x, ref: expected two arrays of one shape [..., H, W, C], got {x.shape} and {ref.shape}"
        )


def _sq_err(x: jax.Array, ref: jax.Array) -> jax.Array:
    return jnp.sum((x - ref) ** 2, axis=(-3, -2, -1))


def psnr(x: jax.Array, ref: jax.Array, data_range: float) -> jax.Array:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB.

    Args:
      x: ``[..., H, W, C]`` estimate (real, or complex: its magnitude).
      ref: ``[..., H, W, C]`` reference, same shape.
      data_range: peak-to-peak range of the reference's units (2 for images in [-1, 1]).

    Returns:
      ``[...]`` PSNR per image (``inf`` when ``x == ref``).

    >>> float(psnr(jnp.full((4, 4, 1), 0.1), jnp.zeros((4, 4, 1)), 1.0))
    20.0
    """
    x, ref = _magnitude(x), _magnitude(ref)
    _check_pair(x, ref)
    if not data_range > 0:
        raise ValueError(f"data_range: expected > 0, got {data_range!r}")
    mse = _sq_err(x, ref) / (x.shape[-3] * x.shape[-2] * x.shape[-1])
    return 10.0 * jnp.log10(data_range**2 / mse)


def nmse(x: jax.Array, ref: jax.Array) -> jax.Array:
    """Normalised mean squared error ``||x - ref||^2 / ||ref||^2``.

    Args:
      x: ``[..., H, W, C]`` estimate (real, or complex: its magnitude).
      ref: ``[..., H, W, C]`` reference (not all zero).

    Returns:
      ``[...]`` NMSE per image (dimensionless, 0 for a perfect estimate).

    >>> float(nmse(jnp.full((2, 2, 1), 3.0), jnp.full((2, 2, 1), 2.0)))
    0.25
    """
    x, ref = _magnitude(x), _magnitude(ref)
    _check_pair(x, ref)
    return _sq_err(x, ref) / jnp.sum(ref**2, axis=(-3, -2, -1))


def ssim(x: jax.Array, ref: jax.Array, data_range: float, filter_size: int = 11) -> jax.Array:
    """Structural similarity (Gaussian window, std 1.5 px, ``k1 = 0.01``, ``k2 = 0.03``).

    Computed by ``dm_pix.ssim`` on the valid part of the image (no padding), averaged over
    channels.

    Args:
      x: ``[..., H, W, C]`` estimate (real, or complex: its magnitude).
      ref: ``[..., H, W, C]`` reference, same shape.
      data_range: peak-to-peak range (2 for images in [-1, 1]); dm-pix's ``max_val``.
      filter_size: window side in pixels, at most ``min(H, W)``.

    Returns:
      ``[...]`` SSIM per image, in [-1, 1] (1 iff ``x == ref``).

    >>> float(ssim(jnp.ones((16, 16, 1)), jnp.ones((16, 16, 1)), 2.0))
    1.0
    """
    x, ref = _magnitude(x), _magnitude(ref)
    _check_pair(x, ref)
    if min(x.shape[-3:-1]) < filter_size:
        raise ValueError(
            f"filter_size: {filter_size} exceeds the image size {x.shape[-3:-1]}; pass a smaller one"
        )
    lead = x.shape[:-3]
    flat = (-1, *x.shape[-3:])
    values = pix.ssim(x.reshape(flat), ref.reshape(flat), max_val=data_range, filter_size=filter_size)
    return values.reshape(lead)


def _gaussian_window(filter_size: int, filter_sigma: float) -> jax.Array:
    offsets = jnp.arange(filter_size) - (filter_size - 1) / 2
    window = jnp.exp(-0.5 * (offsets / filter_sigma) ** 2)
    return window / jnp.sum(window)


def _filter_valid(z: jax.Array, window: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Separable filtering along `axes`, keeping only positions where the window fits."""
    k = window.shape[0]
    for axis in axes:
        n = z.shape[axis] - k + 1
        z = sum(window[t] * lax.slice_in_dim(z, t, t + n, axis=axis) for t in range(k))
    return z


def ssim_terms(
    x: jax.Array,
    ref: jax.Array,
    data_range: float,
    *,
    spatial_dims: int = 2,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
) -> tuple[jax.Array, jax.Array]:
    """SSIM and its contrast-structure factor, per image and channel, in 2D or 3D.

    With local means, variances and covariance from a separable Gaussian window (valid
    positions only, no padding; dm-pix's window, constants and variance clipping):

    .. math::

        \\mathrm{SSIM} = \\overline{l \\cdot cs}, \\quad
        l = \\frac{2 \\mu_x \\mu_r + C_1}{\\mu_x^2 + \\mu_r^2 + C_1}, \\quad
        cs = \\frac{2 \\sigma_{xr} + C_2}{\\sigma_x^2 + \\sigma_r^2 + C_2}

    with ``C1 = (0.01 data_range)^2``, ``C2 = (0.03 data_range)^2`` and the bar a mean over window
    positions. Averaged over channels, the first output equals `ssim` in 2D.

    Args:
      x: ``[..., *S, C]`` estimate, real; ``S = (H, W)`` or ``(D, H, W)``.
      ref: ``[..., *S, C]`` reference, same shape.
      data_range: peak-to-peak range (2 for images in [-1, 1]).
      spatial_dims: 2 or 3, the length of ``S``.
      filter_size: window side in pixels, at most ``min(S)``.
      filter_sigma: window standard deviation in pixels.

    Returns:
      ``(ssim, cs)``, each ``[..., C]``: the mean of ``l * cs`` and of ``cs`` over window positions.

    >>> s, cs = ssim_terms(jnp.ones((1, 8, 8, 8, 2)), jnp.ones((1, 8, 8, 8, 2)), 2.0, spatial_dims=3,
    ...                    filter_size=5)
    >>> s.shape, float(cs[0, 0])
    ((1, 2), 1.0)

    References:
      Wang, Bovik, Sheikh & Simoncelli 2004 (SSIM, eq. 13); Wang, Simoncelli & Bovik 2003 (cs).
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims}")
    x, ref = jnp.asarray(x, jnp.float32), jnp.asarray(ref, jnp.float32)
    if x.shape != ref.shape or x.ndim < spatial_dims + 1:
        raise ValueError(
            f"x, ref: expected two arrays of one shape [..., *S, C] with {spatial_dims} spatial axes, "
            f"got {x.shape} and {ref.shape}"
        )
    if min(x.shape[-1 - spatial_dims : -1]) < filter_size:
        raise ValueError(
            f"filter_size: {filter_size} exceeds the image size {x.shape[-1 - spatial_dims : -1]}; pass a smaller one"
        )
    axes = tuple(range(x.ndim - 1 - spatial_dims, x.ndim - 1))
    window = _gaussian_window(filter_size, filter_sigma)
    mu_x, mu_r = _filter_valid(x, window, axes), _filter_valid(ref, window, axes)
    eps = jnp.finfo(jnp.float32).eps ** 2
    var_x = jnp.maximum(eps, _filter_valid(x * x, window, axes) - mu_x**2)
    var_r = jnp.maximum(eps, _filter_valid(ref * ref, window, axes) - mu_r**2)
    cov = _filter_valid(x * ref, window, axes) - mu_x * mu_r
    cov = jnp.sign(cov) * jnp.minimum(jnp.sqrt(var_x * var_r), jnp.abs(cov))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    luminance = (2 * mu_x * mu_r + c1) / (mu_x**2 + mu_r**2 + c1)
    cs = (2 * cov + c2) / (var_x + var_r + c2)
    return jnp.mean(luminance * cs, axis=axes), jnp.mean(cs, axis=axes)
