"""Tests for gensynth.models.tokenizer and gensynth.models.text_encoder: tokenizer round trips and
files, padding masks that make the encoder blind to pad tokens, causality, CLIP-named safetensors
weights checked against an independent NumPy forward pass, clear weight-file errors, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from gensynth.models.text_encoder import (
    TextEncoder,
    load_text_encoder_weights,
    save_text_encoder_weights,
)
from gensynth.models.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

PROMPTS = [  # ch. 4, Table 4.1, and two of our paraphrases
    "a t2 image of a prostate with a lesion",
    "prostate dw image with a lesion",
    "adc image of a prostate with no lesion",
    "image of adc prostate without lesion",
    "t2 prostate mr slice, showing a lesion.",
    "prostate mri, dw sequence, with no lesion",
]
V, D, HEADS, DEPTH, L_MAX = 40, 16, 2, 2, 12


def _rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_corpus(PROMPTS, max_length=L_MAX)


def _encoder(seed=0, **kw):
    return nnx.jit(lambda r: TextEncoder(V, width=D, depth=DEPTH, num_heads=HEADS, max_length=L_MAX, rngs=r, **kw))(
        _rngs(seed)
    )


@nnx.jit
def _encode(model, ids, mask):
    return model(ids, mask)


def test_tokenizer_round_trip_and_layout(tokenizer):
    ids, mask = tokenizer.encode(PROMPTS)
    assert ids.dtype == np.int32 and ids.shape == (len(PROMPTS), L_MAX)
    assert tokenizer.decode(ids) == PROMPTS
    assert (ids[:, 0] == BOS_ID).all()
    lengths = mask.sum(1)
    assert (ids[np.arange(len(PROMPTS)), lengths - 1] == EOS_ID).all()
    assert (ids[~mask] == PAD_ID).all() and (mask == (ids != PAD_ID)).all()
    np.testing.assert_array_equal(lengths, [len(tokenizer.split(p)) + 2 for p in PROMPTS])
    assert tokenizer.decode(tokenizer.encode(["A T2  Image"])[0]) == ["a t2 image"]  # canonical form
    unknown, _ = tokenizer.encode(["a ct image"])
    assert unknown[0, 2] == UNK_ID
    long_ids, long_mask = tokenizer.encode([" ".join(["lesion"] * 30)])
    assert long_mask.all() and long_ids[0, -1] == EOS_ID  # truncated, EOS kept
    chars = Tokenizer.from_corpus(PROMPTS, max_length=48, level="char")
    assert chars.decode(chars.encode(PROMPTS)[0]) == PROMPTS
    with pytest.raises(TypeError, match="single str"):
        tokenizer.encode("a t2 image")


def test_tokenizer_file_round_trip(tokenizer, tmp_path):
    path = tmp_path / "vocab.json"
    tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.tokens == tokenizer.tokens and loaded.max_length == L_MAX and loaded.level == "word"
    np.testing.assert_array_equal(loaded.encode(PROMPTS)[0], tokenizer.encode(PROMPTS)[0])
    (tmp_path / "bad.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(ValueError, match="not a tokenizer JSON"):
        Tokenizer.load(tmp_path / "bad.json")


def test_pad_tokens_do_not_reach_real_positions(tokenizer):
    model = _encoder()
    ids, mask = tokenizer.encode(PROMPTS[:3])
    out = _encode(model, ids, mask)
    assert out.shape == (3, L_MAX, D)
    garbage = np.where(mask, ids, np.random.default_rng(0).integers(4, V, ids.shape)).astype(np.int32)
    np.testing.assert_allclose(_encode(model, garbage, mask)[mask], out[mask], atol=1e-5)
    short = int(mask.sum(1).max())  # fewer pads: same features at the real positions
    np.testing.assert_allclose(_encode(model, ids[:, :short], mask[:, :short])[mask[:, :short]], out[mask], atol=1e-5)
    # Without the mask the garbage is attended to, so the mask is what makes the difference.
    unmasked = _encode(model, garbage, np.ones_like(mask))
    assert not np.allclose(unmasked[mask], out[mask], atol=1e-3)


def test_causal_encoder_ignores_later_tokens(tokenizer):
    model = _encoder(causal=True)
    ids, mask = tokenizer.encode(PROMPTS[:2])
    later = ids.copy()
    later[:, 4:] = 7
    a, b = _encode(model, ids, np.ones_like(mask)), _encode(model, later, np.ones_like(mask))
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not np.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


def _clip_state(seed=0):
    """Random CLIPTextModel-named tensors (PyTorch [out, in] layout) for our sizes."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.2):
        return (scale * rng.normal(size=shape)).astype(np.float32)

    sd = {"embeddings.token_embedding.weight": normal(V, D, scale=1.0),
          "embeddings.position_embedding.weight": normal(L_MAX, D, scale=1.0),
          "final_layer_norm.weight": 1 + normal(D), "final_layer_norm.bias": normal(D)}  # fmt: skip
    for i in range(DEPTH):
        p = f"encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"self_attn.{n}.weight"], sd[p + f"self_attn.{n}.bias"] = normal(D, D), normal(D)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = normal(4 * D, D), normal(4 * D)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = normal(D, 4 * D), normal(D)
        for n in ("layer_norm1", "layer_norm2"):
            sd[p + n + ".weight"], sd[p + n + ".bias"] = 1 + normal(D), normal(D)
    return sd


def _clip_reference(sd, ids):
    """CLIP's text transformer in float64 NumPy: pre-LN, causal attention, quick-GELU, final LN."""

    def ln(x, name):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * sd[name + ".weight"] + sd[name + ".bias"]

    def linear(x, name):
        return x @ sd[name + ".weight"].T.astype(np.float64) + sd[name + ".bias"]

    b, length = ids.shape
    h = sd["embeddings.token_embedding.weight"][ids].astype(np.float64)
    h = h + sd["embeddings.position_embedding.weight"][:length]
    causal = np.triu(np.ones((length, length), bool), 1)
    for i in range(DEPTH):
        p = f"encoder.layers.{i}."
        x = ln(h, p + "layer_norm1")
        q, k, v = (linear(x, p + f"self_attn.{n}_proj").reshape(b, length, HEADS, -1) for n in "qkv")
        logits = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(D // HEADS)
        logits = np.where(causal, -np.inf, logits)
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        h = h + linear(np.einsum("bnqk,bknh->bqnh", w, v).reshape(b, length, D), p + "self_attn.out_proj")
        m = linear(ln(h, p + "layer_norm2"), p + "mlp.fc1")
        h = h + linear(m / (1 + np.exp(-1.702 * m)), p + "mlp.fc2")
    return ln(h, "final_layer_norm")


def test_clip_named_weights_match_a_numpy_clip_forward(tokenizer, tmp_path):
    sd = _clip_state()
    path = tmp_path / "clip_text.safetensors"
    extra = {"text_model.embeddings.position_ids": np.arange(L_MAX)[None], "vision_model.w": np.zeros(2, np.float32)}
    save_file({"text_model." + k: v for k, v in sd.items()} | extra, path)
    model = _encoder(seed=1, causal=True, activation="quick_gelu")
    load_text_encoder_weights(model, path)
    np.testing.assert_array_equal(model.layers[1].fc1.kernel[...], sd["encoder.layers.1.mlp.fc1.weight"].T)
    ids, mask = tokenizer.encode(PROMPTS[:3])
    np.testing.assert_allclose(_encode(model, ids, np.ones_like(mask)), _clip_reference(sd, ids), atol=1e-4)


def test_weight_file_errors_and_round_trip(tmp_path):
    sd = _clip_state(seed=1)
    model = _encoder(seed=2)
    before = model.final_layer_norm.bias[...]
    cases = {
        "missing 1 keys": {k: v for k, v in sd.items() if k != "encoder.layers.0.mlp.fc2.bias"},
        "unexpected keys": sd | {"encoder.layers.2.mlp.fc1.bias": np.zeros(4 * D, np.float32)},
        "encoder.layers.0.self_attn.q_proj.weight has shape": sd
        | {"encoder.layers.0.self_attn.q_proj.weight": np.zeros((D, 8), np.float32)},
    }
    for message, state in cases.items():
        save_file(state, tmp_path / "bad.safetensors")
        with pytest.raises(ValueError, match=message):
            load_text_encoder_weights(model, tmp_path / "bad.safetensors")
    np.testing.assert_array_equal(model.final_layer_norm.bias[...], before)  # nothing assigned on failure
    save_file(cases["unexpected keys"], tmp_path / "extra.safetensors")
    load_text_encoder_weights(model, tmp_path / "extra.safetensors", strict=False)
    np.testing.assert_array_equal(model.final_layer_norm.bias[...], sd["final_layer_norm.bias"])
    with pytest.raises(FileNotFoundError):
        load_text_encoder_weights(model, tmp_path / "absent.safetensors")

    path = tmp_path / "ours.safetensors"
    save_text_encoder_weights(model, path)
    fresh = _encoder(seed=3)
    ids = jnp.asarray(np.random.default_rng(1).integers(0, V, (2, L_MAX)), jnp.int32)
    assert not np.allclose(_encode(fresh, ids, None), _encode(model, ids, None), atol=1e-3)
    load_text_encoder_weights(fresh, path)
    np.testing.assert_array_equal(_encode(fresh, ids, None), _encode(model, ids, None))


def test_vmap_over_examples_equals_the_batch(tokenizer):
    model = _encoder(seed=4)
    ids, mask = tokenizer.encode(PROMPTS)
    graphdef, state = nnx.split(model)
    per_example = jax.jit(
        lambda s, ids, mask: jax.vmap(lambda i, m: nnx.merge(graphdef, s)(i[None], m[None])[0])(ids, mask)
    )(state, ids, mask)
    np.testing.assert_allclose(per_example, _encode(model, ids, mask), atol=1e-5)
