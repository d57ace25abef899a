"""Tumour texture for CT tumour synthesis: separable Gaussian filtering and the scaled, blurred
Bernoulli-noise texture of the hand-crafted synthesiser (also used by Pixel2Cancer's HU mapping).

Arrays here are single images without batch or channel axes, `[H, W]` or `[D, H, W]`
(any number of spatial axes); batch with `jax.vmap`. Lengths are in voxels (= mm at the
chapter's 1 mm resampling).

References:
    Hu et al., "Label-free liver tumor segmentation", CVPR 2023 (spec ch. 5, Sect. 2.2 step 5);
    code: `get_predefined_texture` in MrGiovanni/SyntheticTumors and MrGiovanni/Pixel2Cancer.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


def gaussian_filter(x: jax.Array, sigma: float | jax.Array, *, radius: int | None = None) -> jax.Array:
    """Separable Gaussian blur over all axes, boundary mode 'reflect' (as scipy.ndimage).

    The kernel is `exp(-i^2 / (2 sigma^2))` on taps `i = -radius..radius`, normalised to sum 1;
    `sigma = 0` gives the exact identity. `sigma` may be traced (e.g. drawn from a key) when
    `radius` is given, so one compiled program serves every sigma up to about `radius / 4`.

    Args:
        x: float `[*S]` image (any number of spatial axes, no batch/channel).
        sigma: scalar standard deviation in voxels (>= 0), Python float or traced.
        radius: static kernel half-width in voxels; default `int(4 * sigma + 0.5)` (scipy's
            `truncate=4`), which needs a concrete `sigma`.

    Returns:
        float32 `[*S]`, same shape.

    Example:
        >>> gaussian_filter(jnp.ones((8, 8)), 1.5).shape
        (8, 8)
    """
    if radius is None:
        radius = int(4.0 * float(sigma) + 0.5)
    x = jnp.asarray(x, jnp.float32)
    if radius == 0:
        return x
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    weights = jnp.where(taps == 0, 1.0, jnp.exp(-0.5 * taps**2 / jnp.maximum(sigma**2, 1e-30)))
    kernel = (weights / weights.sum())[None, None, :]  # [O=1, I=1, K]
    for axis in range(x.ndim):
        moved = jnp.moveaxis(x, axis, -1)
        rows = moved.reshape(-1, 1, moved.shape[-1])  # [N, 1, L]
        padded = jnp.pad(rows, ((0, 0), (0, 0), (radius, radius)), mode="symmetric")
        out = jax.lax.conv_general_dilated(padded, kernel, (1,), "VALID", precision="highest")
        x = jnp.moveaxis(out.reshape(moved.shape), -1, axis)
    return x


def _normalise_texture(field: jax.Array, u0: float | jax.Array) -> jax.Array:
    """`T = clip(beta * B, 0, 1)` with `beta = u0 / mean(B | B > 0.12)` (spec step 5.2)."""
    selected = field > 0.12
    mean = jnp.sum(jnp.where(selected, field, 0.0)) / jnp.maximum(jnp.sum(selected), 1)
    beta = jnp.where(mean > 0, u0 / jnp.where(mean > 0, mean, 1.0), 0.0)
    return jnp.clip(beta * field, 0.0, 1.0)


def bernoulli_texture(
    key: jax.Array,
    shape: tuple[int, ...],
    sigma_a: float | jax.Array,
    sigma_b: float | jax.Array,
    *,
    radius_a: int | None = None,
    radius_b: int | None = None,
) -> jax.Array:
    """The hand-crafted tumour texture: blurred uniform noise sets a Bernoulli probability map,
    whose blurred samples are scaled to a mean of about 0.5 where they are not faint.

    .. math::
        a = \\mathrm{norm}(G_{\\sigma_a} * U), \\quad a \\leftarrow s a + b, \\quad
        B = G_{\\sigma_b} * 1[a > u], \\quad T = \\mathrm{clip}(u_0 B / \\bar B_{>0.12}, 0, 1)

    with `s ~ U(0.19, 0.21)`, `b ~ U(0.04, 0.06)`, `u ~ U(0, 1)` per voxel, `u0 ~ U(0.5, 0.55)`
    and `norm` the min-max scaling to [0, 1].

    Args:
        key: PRNG key.
        shape: static spatial shape `S`.
        sigma_a: blur of the probability map, voxels (Python float or traced).
        sigma_b: blur of the Bernoulli samples, voxels.
        radius_a, radius_b: static kernel half-widths (needed when the sigmas are traced).

    Returns:
        float32 `[*S]` texture in [0, 1].

    Example:
        >>> bernoulli_texture(jax.random.key(0), (16, 16), 3.0, 4.0).shape
        (16, 16)
    """
    k_noise, k_sample, k_scalars = jax.random.split(key, 3)
    u_scale, u_base, u_0 = jax.random.uniform(k_scalars, (3,))
    a = gaussian_filter(jax.random.uniform(k_noise, shape), sigma_a, radius=radius_a)
    span = a.max() - a.min()
    a = (a - a.min()) / jnp.where(span > 0, span, 1.0)
    a = (0.19 + 0.02 * u_scale) * a + (0.04 + 0.02 * u_base)
    samples = (a > jax.random.uniform(k_sample, shape)).astype(jnp.float32)
    field = gaussian_filter(samples, sigma_b, radius=radius_b)
    return _normalise_texture(field, 0.5 + 0.05 * u_0)


@dataclasses.dataclass(frozen=True)
class TextureConfig:
    """Random sigmas of the on-the-fly texture variant (spec Sect. 2.2 step 5.4), voxels."""

    sigma_a: tuple[float, float] = (3.0, 15.0)  # sigma_a ~ U(lo, hi)
    sigma_b_low: tuple[float, float] = (3.0, 5.0)  # sigma_b ~ U(lo, hi) with probability p_low
    sigma_b_high: tuple[float, float] = (5.0, 8.0)  # otherwise sigma_b ~ U(lo, hi)
    p_low: float = 0.7  # probability of the low sigma_b range


def random_texture(key: jax.Array, shape: tuple[int, ...], cfg: TextureConfig = TextureConfig()) -> jax.Array:
    """`bernoulli_texture` with sigmas drawn per call as in `cfg` (one compiled program).

    Args:
        key: PRNG key.
        shape: static spatial shape `S`.
        cfg: the sigma ranges.

    Returns:
        float32 `[*S]` texture in [0, 1].

    Example:
        >>> random_texture(jax.random.key(0), (8, 8, 8)).shape
        (8, 8, 8)
    """
    k_sigmas, k_texture = jax.random.split(key)
    u_a, u_pick, u_b = jax.random.uniform(k_sigmas, (3,))
    sigma_a = cfg.sigma_a[0] + u_a * (cfg.sigma_a[1] - cfg.sigma_a[0])
    (lo, hi) = jnp.where(u_pick < cfg.p_low, jnp.asarray(cfg.sigma_b_low), jnp.asarray(cfg.sigma_b_high))
    sigma_b = lo + u_b * (hi - lo)
    radius_a = math.ceil(4.0 * cfg.sigma_a[1])
    radius_b = math.ceil(4.0 * max(cfg.sigma_b_low[1], cfg.sigma_b_high[1]))
    return bernoulli_texture(k_texture, shape, sigma_a, sigma_b, radius_a=radius_a, radius_b=radius_b)
