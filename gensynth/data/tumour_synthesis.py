"""On-the-fly tumour synthesis for segmentation training: applies a single-image generator
(`procedural_tumour`, `cellular_automaton_tumour`, or any function with their signature) to a
channels-last batch of healthy CT images, each with probability `p_syn` (chapter 5 Sect. 5.5:
"SEG_TRAIN: for each healthy crop with prob p_syn: replace by generator output").

Example (the chapter's experiment, either method):

    synth_fn = make_tumour_synthesis_fn(functools.partial(procedural_tumour, cfg=ProceduralTumourConfig()))
    synth_fn = make_tumour_synthesis_fn(functools.partial(cellular_automaton_tumour, organ_params=LIVER))
    images, tumours = synth_fn(key, hu_batch, organ_batch)
    labels = organ_batch + tumours  # 0 background, 1 organ, 2 tumour

References:
    Spec ch. 5, Sects. 2.2, 2.3 and 2.7.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

SynthesiseFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def make_tumour_synthesis_fn(
    synthesise_fn: SynthesiseFn, *, p_syn: float = 0.9
) -> Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Builds a jitted batch augmentation that inserts synthetic tumours.

    Args:
        synthesise_fn: `(key, hu [*S], organ bool [*S]) -> (hu_out [*S], tumour bool [*S])` for one
            image, jittable (settings bound with `functools.partial`).
        p_syn: probability in [0, 1] that an example receives tumours (the code's 0.9).

    Returns:
        `synth_fn(key, images, organs) -> (images, tumours)`: images float `[B, H, W, 1]` or
        `[B, D, H, W, 1]` in HU (D = axial axis), organs the same shape (bool or 0/1); returns
        float32 HU of the same shape and a bool tumour mask of the same shape (inside the organs;
        all False for examples left unchanged).

    Raises:
        ValueError: for `p_syn` outside [0, 1]; `synth_fn` raises for images that are not
            `[B, *S, 1]` with 2 or 3 spatial axes or organs of another shape.

    Example:
        >>> from gensynth.data.tumour_procedural import procedural_tumour
        >>> synth_fn = make_tumour_synthesis_fn(procedural_tumour)
        >>> images, tumours = synth_fn(jax.random.key(0), jnp.full((2, 32, 32, 1), 110.0), jnp.ones((2, 32, 32, 1)))
        >>> tumours.shape
        (2, 32, 32, 1)
    """
    if not 0.0 <= p_syn <= 1.0:
        raise ValueError(f"p_syn: expected a probability in [0, 1], got {p_syn}")

    def one(key: jax.Array, hu: jax.Array, organ: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_apply, k_synth = jax.random.split(key)
        out, tumour = synthesise_fn(k_synth, hu, organ)
        apply = jax.random.uniform(k_apply) < p_syn
        return jnp.where(apply, out, hu), tumour & apply

    @jax.jit
    def synth_fn(key: jax.Array, images: jax.Array, organs: jax.Array) -> tuple[jax.Array, jax.Array]:
        if images.ndim not in (4, 5) or images.shape[-1] != 1:
            raise ValueError(f"images: expected [B, H, W, 1] or [B, D, H, W, 1], got shape {images.shape}")
        if organs.shape != images.shape:
            raise ValueError(f"organs: expected the shape of images {images.shape}, got {organs.shape}")
        keys = jax.random.split(key, images.shape[0])
        out, tumours = jax.vmap(one)(keys, images[..., 0].astype(jnp.float32), organs[..., 0].astype(bool))
        return out[..., None], tumours[..., None]

    return synth_fn
