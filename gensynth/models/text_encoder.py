"""A pre-LN transformer text encoder (the LDM's conditioning encoder tau_gamma) and its safetensors weights.

The encoder maps token ids `[B, L]` (from `gensynth.models.tokenizer.Tokenizer`) to token features
`[B, L, D]` that a U-Net attends to by cross-attention. Its layout is that of CLIP's text
transformer (learned positions, pre-LN blocks, final LN), so with `causal=True` and
`activation="quick_gelu"` it is `transformers.CLIPTextModel` of the same sizes, and its weights
read and write under CLIP's parameter names. (BERT is post-LN and adds token-type embeddings, so
BERT checkpoints do not fit this network.)
"""

import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # CLIP
}
_EMBED_INIT = nnx.initializers.normal(0.02)


class _Block(nnx.Module):
    """Pre-LN transformer block: `h + Attn(LN(h))`, then `h + MLP(LN(h))`."""

    def __init__(self, width: int, *, num_heads: int, mlp_width: int, activation: str, dtype, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.activation = activation
        self.layer_norm1 = nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            nnx.Linear(width, width, dtype=dtype, rngs=rngs) for _ in range(4)
        )
        self.layer_norm2 = nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(width, mlp_width, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_width, width, dtype=dtype, rngs=rngs)

    def __call__(self, h: jax.Array, key_mask: jax.Array, causal: bool) -> jax.Array:
        """`h` [B, L, D], `key_mask` [B, 1, 1, L] bool -> [B, L, D]."""
        b, length, d = h.shape
        x = self.layer_norm1(h)
        q, k, v = (p(x).reshape(b, length, self.num_heads, -1) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = jax.nn.dot_product_attention(q, k, v, mask=key_mask, is_causal=causal)  # [B, L, N, D/N]
        h = h + self.out_proj(a.reshape(b, length, d))
        return h + self.fc2(ACTIVATIONS[self.activation](self.fc1(self.layer_norm2(h))))


class TextEncoder(nnx.Module):
    """Transformer encoder of token ids: token + learned position embeddings, pre-LN blocks, final LN.

    .. math::
      h_0 = E_{tok}[ids] + P[:L],\\quad
      h_{i+1} = h_i' + \\mathrm{MLP}(\\mathrm{LN}(h_i')),\\ h_i' = h_i + \\mathrm{MHA}(\\mathrm{LN}(h_i), mask),\\quad
      out = \\mathrm{LN}(h_N)

    Padding positions (`mask` False) are excluded as attention keys, so the features at the real
    positions do not depend on the pad tokens nor on how many there are. Features are still
    computed at pad positions (a U-Net cross-attending to all L tokens sees them, as in the LDM).

    Args:
      vocab_size: number of token ids V (`Tokenizer.vocab_size`).
      width: feature width D (the U-Net's `context_dim`; ch. 4: 512).
      depth: number of blocks N (ch. 4 default: 8).
      num_heads: attention heads; must divide `width` (ch. 4 default: 8).
      max_length: longest sequence L_max (learned positions; ch. 4 / LDM: 77).
      mlp_ratio: hidden width of the MLP as a multiple of `width`.
      causal: also mask future positions (CLIP's text transformer); False for a bidirectional
        encoder (LDM's BERTEmbedder).
      activation: "gelu" (exact) or "quick_gelu" (`x sigmoid(1.702 x)`, CLIP).
      dtype: compute dtype; parameters are float32.
      rngs: `params` stream.

    Raises:
      ValueError: if `num_heads` does not divide `width`, a size is not positive or `activation`
        is unknown.

    References:
      Vaswani et al., "Attention Is All You Need", 2017; Radford et al., "Learning Transferable
      Visual Models From Natural Language Supervision" (CLIP), 2021; Rombach et al., "High-Resolution
      Image Synthesis with Latent Diffusion Models", CVPR 2022; book ch. 4, Sect. 4.2.

    >>> enc = TextEncoder(10, width=16, depth=1, num_heads=2, max_length=8, rngs=nnx.Rngs(0))
    >>> enc(jnp.array([[2, 5, 3, 0]]), jnp.array([[True, True, True, False]])).shape
    (1, 4, 16)
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        width: int = 512,
        depth: int = 8,
        num_heads: int = 8,
        max_length: int = 77,
        mlp_ratio: int = 4,
        causal: bool = False,
        activation: str = "gelu",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if min(vocab_size, width, depth, num_heads, max_length, mlp_ratio) < 1:
            raise ValueError("vocab_size, width, depth, num_heads, max_length and mlp_ratio must be >= 1")
        if width % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide width={width}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.vocab_size = vocab_size
        self.width = width
        self.max_length = max_length
        self.causal = causal
        self.dtype = dtype
        self.token_embedding = nnx.Embed(vocab_size, width, embedding_init=_EMBED_INIT, dtype=dtype, rngs=rngs)
        self.position_embedding = nnx.Param(_EMBED_INIT(rngs.params(), (max_length, width), jnp.float32))
        block = {"num_heads": num_heads, "mlp_width": mlp_ratio * width, "activation": activation, "dtype": dtype}
        self.layers = nnx.List([_Block(width, **block, rngs=rngs) for _ in range(depth)])
        self.final_layer_norm = nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, rngs=rngs)

    def __call__(self, ids: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Encodes `ids` int `[B, L]` (L <= max_length) with `mask` bool `[B, L]` (True = real token,
        None = all real); returns `[B, L, D]` in the compute dtype.

        Raises:
          ValueError: on a wrong rank, dtype or length of `ids`, or a `mask` of another shape.
        """
        if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"ids must be integer token ids of shape [B, L], got {ids.dtype} {ids.shape}")
        if ids.shape[1] > self.max_length:
            raise ValueError(f"ids has length {ids.shape[1]} > max_length={self.max_length}")
        if mask is None:
            mask = jnp.ones(ids.shape, bool)
        if mask.shape != ids.shape:
            raise ValueError(f"mask must have the shape of ids {ids.shape}, got {mask.shape}")
        h = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]].astype(self.dtype)  # [B, L, D]
        key_mask = mask.astype(bool)[:, None, None, :]  # [B, 1, 1, L]: broadcast over heads and queries
        for layer in self.layers:
            h = layer(h, key_mask, self.causal)
        return self.final_layer_norm(h)


def _weight_table(model: TextEncoder) -> dict[str, tuple[nnx.Variable, bool]]:
    """CLIP-named key -> (our parameter, transposed?) for every parameter of `model`.

    Linear weights are stored as PyTorch does, `[out, in]`; ours are `[in, out]` kernels.
    """
    table = {
        "embeddings.token_embedding.weight": (model.token_embedding.embedding, False),
        "embeddings.position_embedding.weight": (model.position_embedding, False),
        "final_layer_norm.weight": (model.final_layer_norm.scale, False),
        "final_layer_norm.bias": (model.final_layer_norm.bias, False),
    }
    for i, layer in enumerate(model.layers):
        prefix = f"encoder.layers.{i}."
        linears = {f"self_attn.{n}": getattr(layer, n) for n in ("q_proj", "k_proj", "v_proj", "out_proj")}
        linears |= {"mlp.fc1": layer.fc1, "mlp.fc2": layer.fc2}
        for name, lin in linears.items():
            table[prefix + name + ".weight"] = (lin.kernel, True)
            table[prefix + name + ".bias"] = (lin.bias, False)
        for name in ("layer_norm1", "layer_norm2"):
            table[prefix + name + ".weight"] = (getattr(layer, name).scale, False)
            table[prefix + name + ".bias"] = (getattr(layer, name).bias, False)
    return table


_PREFIX = "text_model."  # transformers' CLIPTextModel / CLIPModel key prefix
_BUFFERS = ("embeddings.position_ids",)  # non-parameter buffers in CLIP files, ignored


def load_text_encoder_weights(model: TextEncoder, path: str | os.PathLike, *, strict: bool = True) -> None:
    """Loads a safetensors file into `model`, in place.

    Key names are those of `transformers.CLIPTextModel` (the `text_model.` prefix optional; when it
    is present, keys without it, e.g. a CLIPModel's vision tower, are ignored), Linear weights in
    PyTorch's `[out, in]` layout::

      embeddings.token_embedding.weight               [V, D]
      embeddings.position_embedding.weight            [L_max, D]
      encoder.layers.{i}.layer_norm1.{weight,bias}    [D]
      encoder.layers.{i}.self_attn.{q,k,v,out}_proj.weight [D, D], .bias [D]
      encoder.layers.{i}.layer_norm2.{weight,bias}    [D]
      encoder.layers.{i}.mlp.fc1.weight [4D, D], .bias [4D];  mlp.fc2.weight [D, 4D], .bias [D]
      final_layer_norm.{weight,bias}                  [D]

    `save_text_encoder_weights` writes this layout (without the prefix). A CLIP text model loads
    into `TextEncoder(..., causal=True, activation="quick_gelu")` of the same sizes.

    Args:
      model: the encoder to fill; its sizes must match the file.
      path: `.safetensors` file.
      strict: refuse keys the model has no parameter for (`embeddings.position_ids` is always
        ignored); False ignores them.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: naming the missing keys, the unexpected keys (strict) or the first key whose
        shape does not match the model.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    state = load_file(path)
    if any(k.startswith(_PREFIX) for k in state):
        state = {k[len(_PREFIX) :]: v for k, v in state.items() if k.startswith(_PREFIX)}
    table = _weight_table(model)
    missing = sorted(set(table) - set(state))
    if missing:
        raise ValueError(f"{path}: missing {len(missing)} keys, e.g. {missing[:3]}")
    unexpected = sorted(set(state) - set(table) - set(_BUFFERS))
    if strict and unexpected:
        raise ValueError(f"{path}: {len(unexpected)} unexpected keys, e.g. {unexpected[:3]} (strict=False skips them)")
    values = {}
    for key, (param, transpose) in table.items():
        value = state[key].T if transpose else state[key]
        if value.shape != param[...].shape:
            layout = f"{state[key].shape} (transposed {value.shape})" if transpose else f"{value.shape}"
            raise ValueError(f"{path}: {key} has shape {layout}, the model expects {param[...].shape}")
        values[key] = value
    for key, (param, _) in table.items():  # all checked: now assign
        param[...] = jnp.asarray(values[key], param[...].dtype)


def save_text_encoder_weights(model: TextEncoder, path: str | os.PathLike) -> None:
    """Writes `model`'s parameters as float32 safetensors under the key names of
    `load_text_encoder_weights` (no prefix), atomically (a temporary file, then a rename)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {}
    for key, (param, transpose) in _weight_table(model).items():
        value = np.asarray(param[...], np.float32)
        tensors[key] = np.ascontiguousarray(value.T if transpose else value)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        tmp = f.name
    save_file(tensors, tmp)
    os.replace(tmp, path)
