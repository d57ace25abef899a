"""Full-reference image-quality metrics: PSNR, SSIM and NMSE, one value per image.

Images are channels-last ``[..., H, W, C]``; complex arrays are compared as magnitude images
``|x|`` (the MRI convention). Callers choose what a real image means: gensynth's diffusion
images live in [-1, 1], so ``data_range = 2``.

References:
  Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility to
  structural similarity" (SSIM); Zbontar et al. 2018, "fastMRI" (NMSE, PSNR as reported there).
"""

import dm_pix as pix
import jax
import jax.numpy as jnp


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
