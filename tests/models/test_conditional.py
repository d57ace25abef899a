"""Tests for gensynth.models.conditional: VectorTokenizer's token structure, cross-attention
conditioning through the zero-initialised output projections (spec ch. 1, Sect. 6 item 14), and the
null condition routed by `cond.uncond` (labels, tokens, label map nulled; concat channels kept)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.diffusion.latent import Condition
from gensynth.models import UNet
from gensynth.models.conditional import ConditionalDenoiser, VectorTokenizer
from gensynth.models.text_encoder import TextEncoder

E, NUM_CLASSES, K_MAP, K_VEC, VOCAB, L = 8, 3, 2, 4, 20, 6
UNET = {"channels": 8, "channel_mult": (1,), "num_res_blocks": 1, "attention_levels": (0,), "head_dim": 8, "groups": 4}


def _random(make, seed):
    """`make()`'s module filled with N(0, 0.3^2) NumPy values: no init compile, no zero layers."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(0.3 * rng.normal(size=a.shape), a.dtype), state))


def _full_denoiser(null_context="learned", seed=0):
    """2D denoiser with every kind of conditioning: 1 concat channel, classes, text, vector, SPADE map."""

    def make():
        r = nnx.Rngs(0)
        unet = UNet(2, 1, num_classes=NUM_CLASSES, context_dim=E, label_channels=K_MAP, spade_hidden=8, rngs=r, **UNET)
        text = TextEncoder(VOCAB, width=E, depth=1, num_heads=2, max_length=L, rngs=r)
        return ConditionalDenoiser(unet, text_encoder=text, vector_tokenizer=VectorTokenizer(K_VEC, E, rngs=r),
                                   null_context=null_context, rngs=r)  # fmt: skip

    return _random(make, seed)


def _cond(seed, uncond=None, b=2):
    rng = np.random.default_rng(seed)
    return Condition(
        concat=rng.normal(size=(b, 8, 8, 1)).astype(np.float32),
        labels=rng.integers(0, NUM_CLASSES, b).astype(np.int32),
        text_ids=rng.integers(4, VOCAB, (b, L)).astype(np.int32),
        text_mask=np.ones((b, L), bool),
        vector=rng.uniform(size=(b, K_VEC)).astype(np.float32),
        label_map=rng.dirichlet(np.ones(K_MAP), size=(b, 8, 8)).astype(np.float32),
        uncond=None if uncond is None else np.asarray(uncond),
    )


@nnx.jit
def _run(model, x, t, cond):
    return model(x, t, cond)


X = np.random.default_rng(9).normal(size=(2, 8, 8, 1)).astype(np.float32)
T = np.array([5, 700], np.int32)


def test_vector_tokenizer_token_structure():
    per_entry = _random(lambda: VectorTokenizer(K_VEC, E, rngs=nnx.Rngs(0)), 1)
    v = np.random.default_rng(2).uniform(size=(3, K_VEC)).astype(np.float32)
    tokens = per_entry(v)
    np.testing.assert_allclose(tokens, v[:, :, None] * per_entry.weight[...] + per_entry.bias[...], atol=1e-6)
    moved = v.copy()
    moved[:, 2] += 1.0
    changed = np.abs(np.asarray(per_entry(moved) - tokens)).max(axis=(0, 2)) > 0  # [K]
    np.testing.assert_array_equal(changed, [False, False, True, False])  # token k sees v_k only
    mlp = _random(lambda: VectorTokenizer(K_VEC, E, num_tokens=3, hidden=16, rngs=nnx.Rngs(0)), 3)
    assert mlp(v).shape == (3, 3, E)
    assert (np.abs(np.asarray(mlp(moved) - mlp(v))).max(axis=(0, 2)) > 0).all()  # each MLP token sees all of v
    with pytest.raises(ValueError, match="vector must have shape"):
        per_entry(v[:, :3])


def test_cross_attention_conditioning_needs_nonzero_output_projections():
    # brainSPADE3D: a 3D U-Net conditioned on lesion loads dc by cross-attention.
    def make():
        unet = UNet(1, 1, spatial_dims=3, context_dim=E, rngs=nnx.Rngs(0), **UNET)
        return ConditionalDenoiser(unet, vector_tokenizer=VectorTokenizer(K_VEC, E, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2))

    model = _random(make, 4)
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 4, 1)).astype(np.float32)
    dc_a, dc_b = np.full((2, K_VEC), 0.1, np.float32), np.array([[0.9, 0.0, 0.5, 0.2]] * 2, np.float32)
    attn_out = [stage.cross_attn.out for stage in [*model.unet.down, model.unet.mid, *model.unet.up]]
    saved = [(lin.kernel[...], lin.bias[...]) for lin in attn_out]
    for lin in attn_out:  # as initialised: zero output projections
        lin.kernel[...], lin.bias[...] = jnp.zeros_like(lin.kernel[...]), jnp.zeros_like(lin.bias[...])
    out_a, out_b = _run(model, x, T, Condition(vector=dc_a)), _run(model, x, T, Condition(vector=dc_b))
    assert np.abs(out_a).max() > 1e-2  # the head is not zero, so the equality below is not vacuous
    np.testing.assert_array_equal(out_a, out_b)
    for lin, (kernel, bias) in zip(attn_out, saved, strict=True):
        lin.kernel[...], lin.bias[...] = kernel, bias
    out_a, out_b = _run(model, x, T, Condition(vector=dc_a)), _run(model, x, T, Condition(vector=dc_b))
    assert not np.allclose(out_a, out_b, atol=1e-3)


def test_each_field_conditions_the_output():
    model = _full_denoiser()
    base = _cond(0)
    out = _run(model, X, T, base)
    other = _cond(1)
    for field in ("concat", "labels", "text_ids", "vector", "label_map"):
        changed = base.replace(**{field: getattr(other, field)})
        assert not np.allclose(_run(model, X, T, changed), out, atol=1e-4), field


@pytest.mark.parametrize("null_context", ["learned", "zeros"])
def test_null_condition_replaces_all_but_the_concat_channels(null_context):
    model = _full_denoiser(null_context, seed=6)
    if null_context == "learned":
        model.null_token[...] = jnp.asarray(np.random.default_rng(7).normal(size=E), jnp.float32)
    else:
        assert model.null_token is None
    a, b = _cond(2, uncond=[True, False]), _cond(3, uncond=[True, False])
    b = b.replace(concat=a.concat)
    out_a, out_b = _run(model, X, T, a), _run(model, X, T, b)
    np.testing.assert_allclose(out_a[0], out_b[0], atol=1e-6)  # nulled example: only x and concat matter
    assert not np.allclose(out_a[1], out_b[1], atol=1e-4)
    # The null condition spelled out for the U-Net: null label, null token everywhere, zero map.
    null = np.zeros(E, np.float32) if null_context == "zeros" else np.asarray(model.null_token[...])
    total_tokens = L + K_VEC
    expected = nnx.jit(lambda u, *args: u(args[0], args[1], y=args[2], context=args[3], label_map=args[4]))(
        model.unet,
        np.concatenate([X, a.concat], -1),
        T,
        np.full(2, NUM_CLASSES, np.int32),
        np.broadcast_to(null, (2, total_tokens, E)),
        np.zeros_like(a.label_map),
    )
    np.testing.assert_allclose(out_a[0], expected[0], atol=1e-5)
    moved = a.replace(concat=a.concat + 1.0)
    assert not np.allclose(_run(model, X, T, moved)[0], out_a[0], atol=1e-4)  # concat is kept when nulled


def test_configuration_errors():
    unet = nnx.eval_shape(lambda: UNet(1, 1, context_dim=E, rngs=nnx.Rngs(0), **UNET))
    with pytest.raises(ValueError, match="width 4"):
        ConditionalDenoiser(unet, vector_tokenizer=VectorTokenizer(K_VEC, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="null_context"):
        ConditionalDenoiser(unet, null_context="empty", rngs=nnx.Rngs(0))
    model = ConditionalDenoiser(unet, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cond.text_ids must be None"):
        model(X, T, Condition(text_ids=np.zeros((2, L), np.int32)))
    tokenizer = VectorTokenizer(K_VEC, E, rngs=nnx.Rngs(0))
    with_vector = ConditionalDenoiser(unet, vector_tokenizer=tokenizer, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cond.vector must be given"):
        with_vector(X, T, Condition(context=np.zeros((2, 1, E), np.float32)))
