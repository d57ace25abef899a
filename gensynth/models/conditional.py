"""A conditional denoiser: a U-Net plus the encoders that turn a `Condition` into its inputs.

`ConditionalDenoiser(x_t, t, cond)` routes each field of a `gensynth.diffusion.latent.Condition`:
concatenated channels to the U-Net input, class labels to its class embedding, text ids (through
a `TextEncoder`), a vector (through a `VectorTokenizer`) and ready-made tokens to its
cross-attention context (concatenated along the token axis, in that order), and a label map to its
SPADE decoder. Examples flagged `cond.uncond` get the null condition (see `Condition`). The
encoders are submodules, so they train jointly with the U-Net (the LDM's `cond_stage_trainable`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.diffusion.latent import Condition
from gensynth.models.text_encoder import TextEncoder
from gensynth.models.unet import UNet

NULL_CONTEXTS = ("learned", "zeros")  # the null cross-attention token: a learned [E] vector or zeros


class VectorTokenizer(nnx.Module):
    """Maps a conditioning vector `[B, K]` (e.g. lesion loads) to cross-attention tokens.

    `num_tokens=None`: one token per entry, `token_k = v_k W_k + c_k` with learned `W, c` `[K, E]`
    (the numerical-feature tokenizer of Gorishniy et al.): token k depends on `v_k` alone and says
    which entry it is. `num_tokens=M`: an MLP `Linear(K, hidden) -> SiLU -> Linear(hidden, M E)`
    reshaped to M tokens, each seeing the whole vector. (brainSPADE's 3D label LDM uses the raw
    4-vector as one token of width 4: pass it as `Condition.context = dc[:, None, :]` instead.)

    Args:
      num_values: K, entries of the vector.
      context_dim: E, the token width (the U-Net's `context_dim`).
      num_tokens: M for the MLP form, or None for one token per entry.
      hidden: hidden width of the MLP form (default E).
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    References:
      Gorishniy et al., "Revisiting Deep Learning Models for Tabular Data", NeurIPS 2021;
      Fernandez et al., brainSPADE3D (book ch. 1, Eq. 1.3: lesion conditioning by cross-attention).

    >>> tok = VectorTokenizer(4, 8, rngs=nnx.Rngs(0))
    >>> tok(jnp.zeros((2, 4))).shape
    (2, 4, 8)
    """

    def __init__(
        self,
        num_values: int,
        context_dim: int,
        *,
        num_tokens: int | None = None,
        hidden: int | None = None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if min(num_values, context_dim, num_tokens or 1, hidden or 1) < 1:
            raise ValueError("num_values, context_dim, num_tokens and hidden must be >= 1")
        self.num_values = num_values
        self.context_dim = context_dim
        self.num_tokens = num_tokens
        self.dtype = dtype
        if num_tokens is None:
            init = nnx.initializers.normal(1.0)
            self.weight = nnx.Param(init(rngs.params(), (num_values, context_dim), jnp.float32))
            self.bias = nnx.Param(init(rngs.params(), (num_values, context_dim), jnp.float32))
        else:
            hidden = hidden or context_dim
            self.fc1 = nnx.Linear(num_values, hidden, dtype=dtype, rngs=rngs)
            self.fc2 = nnx.Linear(hidden, num_tokens * context_dim, dtype=dtype, rngs=rngs)

    def __call__(self, vector: jax.Array) -> jax.Array:
        """Maps `vector` `[B, K]` to `[B, K, E]` (per entry) or `[B, M, E]` (MLP) tokens."""
        if vector.ndim != 2 or vector.shape[1] != self.num_values:
            raise ValueError(f"vector must have shape [B, {self.num_values}], got {vector.shape}")
        v = vector.astype(self.dtype)
        if self.num_tokens is None:
            w, c = self.weight[...].astype(self.dtype), self.bias[...].astype(self.dtype)
            return v[:, :, None] * w + c  # [B, K, E]
        h = self.fc2(nnx.silu(self.fc1(v)))  # [B, M E]
        return h.reshape(v.shape[0], self.num_tokens, self.context_dim)


class ConditionalDenoiser(nnx.Module):
    """`denoiser(x_t, t, cond)`: a U-Net with its conditioning encoders and null token.

    Args:
      unet: the denoising U-Net; its `in_channels` include the `cond.concat` channels, its
        `num_classes`, `context_dim` and `label_channels` say which fields `cond` must carry.
      text_encoder: encodes `cond.text_ids` / `cond.text_mask` to tokens of width `context_dim`,
        or None (then `cond.text_ids` must be None).
      vector_tokenizer: tokenises `cond.vector`, or None (then `cond.vector` must be None).
      null_context: the null cross-attention token for `uncond` examples: "learned" (an `[E]`
        parameter, zero at init) or "zeros". Every token of the context is replaced by it, so the
        attention output is the same whatever the number of tokens.
      rngs: unused (the submodules come built); accepted for the house signature.

    Raises:
      ValueError: if an encoder is given without the U-Net having `context_dim`, its width differs
        from `context_dim`, or `null_context` is unknown.

    >>> unet = UNet(1, 1, channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=(0,), head_dim=8,
    ...             groups=4, context_dim=4, rngs=nnx.Rngs(0))
    >>> net = ConditionalDenoiser(unet, vector_tokenizer=VectorTokenizer(3, 4, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2))
    >>> net(jnp.zeros((2, 8, 8, 1)), jnp.array([1, 2]), Condition(vector=jnp.ones((2, 3)))).shape
    (2, 8, 8, 1)
    """

    def __init__(
        self,
        unet: UNet,
        *,
        text_encoder: TextEncoder | None = None,
        vector_tokenizer: VectorTokenizer | None = None,
        null_context: str = "learned",
        rngs: nnx.Rngs,
    ):
        del rngs
        if null_context not in NULL_CONTEXTS:
            raise ValueError(f"null_context must be one of {NULL_CONTEXTS}, got {null_context!r}")
        e = unet.context_dim
        widths = {
            "text_encoder": None if text_encoder is None else text_encoder.width,
            "vector_tokenizer": None if vector_tokenizer is None else vector_tokenizer.context_dim,
        }
        for name, width in widths.items():
            if width is not None and width != e:
                raise ValueError(f"{name} makes tokens of width {width}, but the unet has context_dim={e}")
        self.unet = unet
        self.text_encoder = text_encoder
        self.vector_tokenizer = vector_tokenizer
        learned = null_context == "learned" and e is not None
        self.null_token = nnx.Param(jnp.zeros((e,), jnp.float32)) if learned else None

    def __call__(
        self, x: jax.Array, t: jax.Array, cond: Condition, *, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Runs the U-Net on `x` `[B, *S, C]` at `t` `[B]` under `cond`; returns `[B, *S, C_out]`
        float32.

        Raises:
          ValueError: if a field of `cond` has no encoder here (or an encoder has no field), or the
            U-Net refuses the resulting inputs (its messages name them).
        """
        for name, module in (("text_ids", self.text_encoder), ("vector", self.vector_tokenizer)):
            if (getattr(cond, name) is None) != (module is None):
                need = "given (the denoiser has its encoder)" if module is not None else "None (no encoder for it)"
                raise ValueError(f"cond.{name} must be {need}")
        b = x.shape[0]
        uncond = jnp.zeros((b,), bool) if cond.uncond is None else cond.uncond.astype(bool)  # [B]
        if cond.concat is not None:
            x = jnp.concatenate([x, cond.concat.astype(x.dtype)], axis=-1)  # [B, *S, C + C_c]
        labels = cond.labels
        if labels is not None and self.unet.num_classes is not None:
            labels = jnp.where(uncond, self.unet.num_classes, labels)
        tokens = []
        if self.text_encoder is not None:
            tokens.append(self.text_encoder(cond.text_ids, cond.text_mask))  # [B, L, E]
        if self.vector_tokenizer is not None:
            tokens.append(self.vector_tokenizer(cond.vector))  # [B, K or M, E]
        if cond.context is not None:
            tokens.append(cond.context)  # [B, M, E]
        context = None
        if tokens:
            dtype = jnp.result_type(*tokens)
            context = jnp.concatenate([a.astype(dtype) for a in tokens], axis=1)  # [B, L_total, E]
            null = self.null_token[...] if self.null_token is not None else jnp.zeros(context.shape[-1:])
            context = jnp.where(uncond[:, None, None], null.astype(dtype), context)
        label_map = cond.label_map
        if label_map is not None:
            label_map = jnp.where(uncond.reshape((b,) + (1,) * (label_map.ndim - 1)), 0, label_map)
        return self.unet(x, t, y=labels, context=context, label_map=label_map, dropout_key=dropout_key)
