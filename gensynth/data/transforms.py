"""On-device random augmentation of image batches with dm-pix, jitted and vmapped.

Per example: a left-right flip (probability 1/2), a random affine (rotation about the
image centre, isotropic scale, translation; bilinear, background filled with -1), and
an intensity jitter (gamma, brightness, contrast on [0, 1]) clipped back to [-1, 1].
Stages whose magnitudes are all zero are left out of the compiled program, so
`make_augment_fn(flip=False, max_rotate_deg=0, max_scale=0, max_translate=0,
intensity=0)` is the exact identity.
"""

from __future__ import annotations

from collections.abc import Callable

import dm_pix as pix
import jax
import jax.numpy as jnp


def _random_affine(
    key: jax.Array, image: jax.Array, max_rotate_deg: float, max_scale: float, max_translate: float
) -> jax.Array:
    """Rotates/scales about the centre and shifts one image `[H, W, C]`; pads with -1."""
    k_rot, k_scale, k_shift = jax.random.split(key, 3)
    h, w = image.shape[:2]
    angle = jnp.deg2rad(jax.random.uniform(k_rot, (), minval=-max_rotate_deg, maxval=max_rotate_deg))
    scale = 1.0 + jax.random.uniform(k_scale, (), minval=-max_scale, maxval=max_scale)
    shift = jax.random.uniform(k_shift, (2,), minval=-max_translate, maxval=max_translate)
    shift = shift * jnp.array([h, w], jnp.float32)  # pixels
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Pull map (output pixel -> input pixel): inverse of "scale, rotate, then shift".
    inverse = jnp.array([[cos, sin], [-sin, cos]]) / scale  # [2, 2]
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    offset2 = centre - inverse @ (centre + shift)
    matrix = jnp.eye(3).at[:2, :2].set(inverse)  # channel axis untouched
    offset = jnp.concatenate([offset2, jnp.zeros((1,))])
    return pix.affine_transform(image, matrix, offset=offset, order=1, mode="constant", cval=-1.0)


def _random_intensity(key: jax.Array, image: jax.Array, intensity: float) -> jax.Array:
    """Random gamma, brightness and contrast on one image `[H, W, C]` in [-1, 1]."""
    k_gamma, k_bright, k_contrast = jax.random.split(key, 3)
    unit = jnp.clip((image + 1.0) / 2.0, 0.0, 1.0)  # [0, 1]
    gamma = jnp.exp(jax.random.uniform(k_gamma, (), minval=-intensity, maxval=intensity))
    unit = pix.adjust_gamma(unit, gamma)
    unit = pix.adjust_brightness(unit, jax.random.uniform(k_bright, (), minval=-intensity, maxval=intensity))
    factor = 1.0 + jax.random.uniform(k_contrast, (), minval=-intensity, maxval=intensity)
    unit = pix.adjust_contrast(unit, factor)
    return jnp.clip(unit * 2.0 - 1.0, -1.0, 1.0)


def make_augment_fn(
    flip: bool = True,
    max_rotate_deg: float = 10.0,
    max_scale: float = 0.1,
    max_translate: float = 0.05,
    intensity: float = 0.1,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Builds a jitted augmentation with independent random parameters per example.

    Args:
        flip: flip left-right with probability 1/2.
        max_rotate_deg: rotation angle drawn from U(-max, max) degrees.
        max_scale: zoom factor drawn from U(1 - max, 1 + max).
        max_translate: shift per axis drawn from U(-max, max) times the image side.
        intensity: log-gamma, brightness (on [0, 1]) and contrast factor - 1 each
            drawn from U(-intensity, intensity).

    Returns:
        `augment_fn(key, images) -> images`: images `[B, H, W, C]` in [-1, 1]; output of
        the same shape and dtype, in [-1, 1].

    Raises:
        ValueError: for a negative magnitude or `max_scale >= 1`.

    Example:
        >>> augment_fn = make_augment_fn()
        >>> augment_fn(jax.random.key(0), jnp.zeros((2, 16, 16, 1))).shape
        (2, 16, 16, 1)
    """
    magnitudes = dict(
        max_rotate_deg=max_rotate_deg, max_scale=max_scale, max_translate=max_translate, intensity=intensity
    )
    for name, value in magnitudes.items():
        if value < 0:
            raise ValueError(f"{name}: expected a non-negative magnitude, got {value}")
    if max_scale >= 1:
        raise ValueError(f"max_scale: expected a value in [0, 1), got {max_scale}")
    use_affine = max_rotate_deg > 0 or max_scale > 0 or max_translate > 0

    def augment_one(key: jax.Array, image: jax.Array) -> jax.Array:
        k_flip, k_affine, k_intensity = jax.random.split(key, 3)
        if flip:
            image = pix.random_flip_left_right(k_flip, image)
        if use_affine:
            image = _random_affine(k_affine, image, max_rotate_deg, max_scale, max_translate)
        if intensity > 0:
            image = _random_intensity(k_intensity, image, intensity)
        return image

    @jax.jit
    def augment_fn(key: jax.Array, images: jax.Array) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"images: expected [B, H, W, C], got shape {images.shape}")
        keys = jax.random.split(key, images.shape[0])
        out = jax.vmap(augment_one)(keys, images.astype(jnp.float32))
        return out.astype(images.dtype)

    return augment_fn
