"""Latent diffusion: latent scaling around a first-stage autoencoder, and the conditioning bundle.

A latent diffusion model (LDM) diffuses `z0 = scale * E(x)` instead of the image `x` and decodes
`D(z / scale)`; `scale = 1 / std(z)` makes the latents unit-variance like the noise (Rombach et
al. 2022). The conditioning of its denoiser travels as one pytree,
:class:`Condition`, so a denoiser is `denoiser(x_t, t, cond)`; :func:`make_conditional_model_fn`
binds a condition (and optionally classifier-free guidance) into the samplers' `model_fn(x, t)`.

Null condition (classifier-free guidance). `cond.uncond` `[B]` bool marks the examples whose
condition is replaced by the null condition inside the denoiser
(:class:`gensynth.models.ConditionalDenoiser`): class labels become the null label `num_classes`,
every cross-attention token (text, vector or given context) becomes the null token (a learned
`[E]` vector, or zeros; see `null_context` there), and a SPADE label map becomes all zeros
(NASDM's empty map). Concatenated channels (`cond.concat`) are kept: they are the spatially
aligned input (e.g. the masked image to inpaint), not the prompt. Dropping is therefore one flag
per example, so :func:`drop_condition` is `guidance.drop_labels` on that flag and
:func:`null_condition` is the `y_null` of `guidance.make_cfg_model_fn`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from gensynth.diffusion.guidance import drop_labels, make_cfg_model_fn


def estimate_latent_scale(latents: jax.Array) -> jax.Array:
    """LDM's `scale_factor = 1 / std(z)` over all elements of a batch of latents.

    Args:
      latents: `[B, *S, C]` latents of the (frozen) first-stage encoder, e.g. its first batch.

    Returns:
      float32 scalar `1 / std(latents)` (std about the mean, over every element); store it with
      the model and keep it fixed afterwards.

    Raises:
      ValueError: if `latents` has fewer than 2 elements.

    >>> float(estimate_latent_scale(jnp.array([-2.0, 2.0])))
    0.5

    References:
      Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022
      (its `scale_factor`, 1/std of the first batch of KL-regularised latents); spec ch. 4,
      Sect. 2.7; spec ch. 1, Sect. 2.4.
    """
    if latents.size < 2:
        raise ValueError(f"latents must have at least 2 elements to estimate a std, got shape {latents.shape}")
    return 1.0 / jnp.std(latents.astype(jnp.float32))


def encode_to_latents(
    encode_fn: Callable[[jax.Array], jax.Array], images: jax.Array, scale: float | jax.Array
) -> jax.Array:
    """Diffusion-space latents `z0 = scale * encode_fn(images)`.

    Args:
      encode_fn: first-stage encoder, `[B, *S, C_x] -> [B, *S/f, C_z]` (posterior mean or sample).
      images: `[B, *S, C_x]` images, intensities in [-1, 1].
      scale: `scale_factor` from :func:`estimate_latent_scale`.

    Returns:
      `[B, *S/f, C_z]` scaled latents.

    >>> encode_to_latents(lambda x: 2 * x, jnp.ones((1, 2, 2, 1)), 0.5)[0, 0, 0, 0]
    Array(1., dtype=float32)
    """
    return scale * encode_fn(images)


def decode_from_latents(
    decode_fn: Callable[[jax.Array], jax.Array], z: jax.Array, scale: float | jax.Array
) -> jax.Array:
    """Images `decode_fn(z / scale)` from diffusion-space latents (the inverse scaling of
    :func:`encode_to_latents`).

    Args:
      decode_fn: first-stage decoder, `[B, *S/f, C_z] -> [B, *S, C_x]`.
      z: `[B, *S/f, C_z]` scaled latents, e.g. a sampler's output.
      scale: the `scale_factor` the latents were encoded with.

    Returns:
      `[B, *S, C_x]` images.

    >>> decode_from_latents(lambda z: z / 2, jnp.ones((1, 2, 2, 1)), 0.5)[0, 0, 0, 0]
    Array(1., dtype=float32)
    """
    return decode_fn(z / scale)


@struct.dataclass
class Condition:
    """Everything a conditional denoiser is conditioned on; every field optional, leading axis B.

    A pytree (None fields are empty), so it passes through `jit`, `vmap`, sharding and
    `guidance.make_cfg_model_fn` (which concatenates it with its null version along B).
    """

    concat: jax.Array | None = None  # [B, *S, C_c] float: channels concatenated to x_t (never nulled)
    labels: jax.Array | None = None  # [B] int class labels in 0..num_classes-1
    context: jax.Array | None = None  # [B, M, E] float: ready-made cross-attention tokens
    text_ids: jax.Array | None = None  # [B, L] int32 token ids (Tokenizer.encode), encoded by a TextEncoder
    text_mask: jax.Array | None = None  # [B, L] bool, True at real (non-pad) tokens
    vector: jax.Array | None = None  # [B, K] float, e.g. lesion loads dc in [0, 1], tokenised by a VectorTokenizer
    label_map: jax.Array | None = None  # [B, *S, K] float SPADE label map (one-hot or probabilistic)
    uncond: jax.Array | None = None  # [B] bool: True = this example gets the null condition


def _batch_size(cond: Condition) -> int:
    leaves = jax.tree.leaves(cond)
    if not leaves:
        raise ValueError("cond has no field set: give at least one conditioning input")
    return leaves[0].shape[0]


def _with_uncond(cond: Condition) -> Condition:
    """`cond` with `uncond` set (all False where it was None)."""
    return cond if cond.uncond is not None else cond.replace(uncond=jnp.zeros((_batch_size(cond),), bool))


def null_condition(cond: Condition) -> Condition:
    """The null condition of `cond`: the same fields with `uncond` all True (`y_null` for
    `guidance.make_cfg_model_fn`).

    >>> null_condition(Condition(labels=jnp.array([1, 2]))).uncond
    Array([ True,  True], dtype=bool)
    """
    return cond.replace(uncond=jnp.ones((_batch_size(cond),), bool))


def drop_condition(key: jax.Array, cond: Condition, p_uncond: float) -> Condition:
    """Marks each example for the null condition with probability `p_uncond` (CFG training).

    `guidance.drop_labels` on the `uncond` flag; an example already marked stays marked.

    Args:
      key: PRNG key for the per-example Bernoulli draws.
      cond: the batch's condition.
      p_uncond: drop probability in [0, 1] (NASDM fine-tuning: 0.2; LDM-style: 0.1).

    Returns:
      `cond` with `uncond` `[B]` bool.

    References:
      Ho & Salimans 2022, Algorithm 1.
    """
    cond = _with_uncond(cond)
    return cond.replace(uncond=drop_labels(key, cond.uncond, p_uncond, True))


def make_conditional_model_fn(
    denoiser: Callable[..., jax.Array],
    cond: Condition,
    *,
    guidance_scale: float | jax.Array | None = None,
    dropout_key: jax.Array | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Binds a condition into `model_fn(x, t)` for `diffusion_loss` and the samplers.

    Without `guidance_scale`: `model_fn(x, t) = denoiser(x, t, cond)`. With it, classifier-free
    guidance through `guidance.make_cfg_model_fn(denoiser, cond, null_condition(cond), s)`: one
    network call on the doubled batch, `eps_u + s (eps_c - eps_u)` (`s = 0`: the unconditional
    model; a learned-variance half comes from the conditional pass). A Python `s == 1` is the
    conditional model itself and skips the null pass; an array `s` always runs both.

    Args:
      denoiser: `denoiser(x, t, cond, *, dropout_key=None) -> [B, *S, C_out]` with `x` `[B, *S, C]`
        and `t` `[B]`, e.g. a `gensynth.models.ConditionalDenoiser` (the `dropout_key` keyword is
        passed only when given).
      cond: the condition, leading axis B matching `x`.
      guidance_scale: CFG scale `s` (book `w = s - 1`), or None for no guidance.
      dropout_key: typed PRNG key for the denoiser's dropout (training), or None.

    Returns:
      `model_fn(x, t) -> [B, *S, C_out]`.

    >>> fn = make_conditional_model_fn(lambda x, t, c: x + jnp.where(c.uncond, 0.0, 1.0)[:, None],
    ...                                Condition(labels=jnp.array([0])), guidance_scale=3.0)
    >>> fn(jnp.zeros((1, 1)), jnp.zeros((1,), jnp.int32))
    Array([[3.]], dtype=float32)

    References:
      Ho & Salimans 2022, Eq. 6; spec ch. 2, Sect. 2.8; spec ch. 4, Sect. 2.4.
    """
    cond = _with_uncond(cond)
    kw = {} if dropout_key is None else {"dropout_key": dropout_key}

    def call(x: jax.Array, t: jax.Array, c: Condition) -> jax.Array:
        return denoiser(x, t, c, **kw)

    if guidance_scale is None or (isinstance(guidance_scale, int | float) and guidance_scale == 1):
        return lambda x, t: call(x, t, cond)  # s = 1 is the conditional model: skip the null pass
    return make_cfg_model_fn(call, cond, null_condition(cond), guidance_scale)
