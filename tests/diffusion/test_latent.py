"""Tests for gensynth.diffusion.latent: the latent scale factor, encode/decode scaling, condition
dropping as `drop_labels` on one flag, classifier-free guidance through `make_conditional_model_fn`
(s = 1: the conditional model exactly; s = 0: the unconditional one), jit/vmap, and a jitted
text-conditioned LDM train step (cosine schedule, L1 eps loss, condition dropout) that gives the
same numbers on 4 fake devices as on one."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.diffusion import cosine_betas, diffusion_loss, drop_labels, vp_schedule
from gensynth.diffusion.latent import (
    Condition,
    decode_from_latents,
    drop_condition,
    encode_to_latents,
    estimate_latent_scale,
    make_conditional_model_fn,
    null_condition,
)
from gensynth.models import UNet
from gensynth.models.conditional import ConditionalDenoiser
from gensynth.models.text_encoder import TextEncoder
from gensynth.models.tokenizer import Tokenizer
from gensynth.train import (
    create_train_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    shard_batch,
)

PROMPTS = ["a t2 image of a prostate with a lesion", "prostate dw image with a lesion",
           "adc image of a prostate with no lesion", "image of adc prostate without lesion"]  # fmt: skip
TOKENIZER = Tokenizer.from_corpus(PROMPTS, max_length=10)
E, C_Z, B = 8, 4, 8  # context width, latent channels, batch
SCHEDULE = vp_schedule(cosine_betas(1000))
P_UNCOND = 0.5


def _make_ldm() -> ConditionalDenoiser:
    """Text-conditioned latent U-Net (one level, cross-attention in every stage) + its text encoder."""
    r = nnx.Rngs(jax.random.key(0, impl="rbg"))
    unet = UNet(C_Z, C_Z, channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=(0,), head_dim=8,
                groups=4, context_dim=E, rngs=r)  # fmt: skip
    text = TextEncoder(TOKENIZER.vocab_size, width=E, depth=1, num_heads=2, max_length=TOKENIZER.max_length, rngs=r)
    return ConditionalDenoiser(unet, text_encoder=text, rngs=r)


def _random_ldm(seed=0) -> ConditionalDenoiser:
    """`_make_ldm()` with N(0, 0.3^2) parameters (zero-initialised layers made non-zero; no init compile)."""
    graphdef, state = nnx.split(nnx.eval_shape(_make_ldm))
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(0.3 * rng.normal(size=a.shape), a.dtype), state))


def _text_cond(prompts) -> Condition:
    ids, mask = TOKENIZER.encode(prompts)
    return Condition(text_ids=ids, text_mask=mask)


def _latents(n=B, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, C_Z)).astype(np.float32)


def test_latent_scale_makes_latents_unit_variance():
    z = 1.2 + 3.7 * _latents(16)
    scale = estimate_latent_scale(z)
    np.testing.assert_allclose(float(scale), 1 / np.std(z.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(float(jnp.std(scale * z)), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        estimate_latent_scale(jnp.ones((1,)))


def test_encode_decode_scaling_round_trip():
    images = _latents(2, seed=1)

    def encode_fn(x):  # a linear "autoencoder" with latents 5x larger than the images
        return 5.0 * x[:, ::2, ::2]

    def decode_fn(z):
        return jnp.repeat(jnp.repeat(z / 5.0, 2, axis=1), 2, axis=2)

    scale = estimate_latent_scale(encode_fn(images))
    z = encode_to_latents(encode_fn, images, scale)
    np.testing.assert_allclose(z, scale * encode_fn(images), rtol=1e-6)
    np.testing.assert_allclose(decode_from_latents(decode_fn, z, scale), decode_fn(encode_fn(images)), rtol=1e-5)


def test_drop_condition_is_drop_labels_on_the_uncond_flag():
    cond = Condition(labels=np.zeros(4000, np.int32))
    key = jax.random.key(3)
    dropped = drop_condition(key, cond, 0.3).uncond
    np.testing.assert_array_equal(dropped, drop_labels(key, jnp.zeros(4000, bool), 0.3, True))
    assert abs(float(dropped.mean()) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 4000)
    assert not drop_condition(key, cond, 0.0).uncond.any() and drop_condition(key, cond, 1.0).uncond.all()
    marked = cond.replace(uncond=jnp.arange(4000) < 10)
    assert drop_condition(key, marked, 0.0).uncond[:10].all()  # already marked stays marked
    np.testing.assert_array_equal(null_condition(cond).uncond, np.ones(4000, bool))
    assert null_condition(cond).labels is cond.labels
    with pytest.raises(ValueError, match="no field set"):
        null_condition(Condition())


@nnx.jit
def _guided(model, x, t, cond, scale):
    return make_conditional_model_fn(model, cond, guidance_scale=scale)(x, t)


@nnx.jit
def _plain(model, x, t, cond):
    return make_conditional_model_fn(model, cond)(x, t)


def test_classifier_free_guidance_scales():
    model = _random_ldm()
    x, t = _latents(4, seed=2), np.array([10, 200, 600, 990], np.int32)
    cond = _text_cond(PROMPTS)
    eps_c = _plain(model, x, t, cond)
    eps_u = _plain(model, x, t, null_condition(cond))
    assert not np.allclose(eps_c, eps_u, atol=1e-3)  # the prompt matters
    # Traced scales run the doubled batch [x; x], whose float32 rounding differs from the single
    # batch's by a few ulps (3.6e-7 measured), hence atol 1e-6 rather than bitwise equality.
    guided = {s: _guided(model, x, t, cond, jnp.float32(s)) for s in (1.0, 0.0, 3.0)}
    np.testing.assert_allclose(guided[1.0], eps_c, atol=1e-6)
    np.testing.assert_allclose(guided[0.0], eps_u, atol=1e-6)
    np.testing.assert_allclose(guided[3.0], eps_u + 3.0 * (eps_c - eps_u), atol=1e-5)
    # A different prompt gives a different conditional prediction; the null one is prompt-free.
    other = _text_cond(PROMPTS[::-1])
    assert not np.allclose(_plain(model, x, t, other), eps_c, atol=1e-3)
    np.testing.assert_allclose(_plain(model, x, t, null_condition(other)), eps_u, atol=1e-6)


def test_python_scale_one_is_the_conditional_model_exactly():
    calls = []

    def denoiser(x, t, c):  # eps = x + 1 where conditional, x where null
        calls.append(x.shape[0])
        return x + jnp.where(c.uncond, 0.0, 1.0)[:, None]

    x, t, cond = jnp.zeros((3, 1)), jnp.zeros((3,), jnp.int32), Condition(labels=jnp.arange(3))
    np.testing.assert_array_equal(make_conditional_model_fn(denoiser, cond, guidance_scale=1.0)(x, t), 1.0)
    assert calls == [3]  # one pass on the batch itself, as without guidance
    np.testing.assert_array_equal(make_conditional_model_fn(denoiser, cond, guidance_scale=2.5)(x, t), 2.5)
    assert calls == [3, 6]  # conditional and null passes batched together


def test_conditional_model_fn_under_vmap():
    model = _random_ldm(seed=1)
    x, t, cond = _latents(4, seed=3), np.array([1, 50, 500, 999], np.int32), _text_cond(PROMPTS)
    graphdef, state = nnx.split(model)

    @jax.jit
    def per_example(state, x, t, cond):
        model = nnx.merge(graphdef, state)

        def one(x, t, c):
            c = jax.tree.map(lambda a: a[None], c)
            return make_conditional_model_fn(model, c)(x[None], t[None])[0]

        return jax.vmap(one)(x, t, cond)

    np.testing.assert_allclose(per_example(state, x, t, cond), _plain(model, x, t, cond), atol=1e-5)


def _ldm_loss(model, key, batch):
    """ch. 4 pseudocode A: drop the prompt with p_uncond, L1 eps loss on the latents, cosine schedule."""
    drop_key, loss_key = jax.random.split(key)
    cond = drop_condition(drop_key, Condition(text_ids=batch["text_ids"], text_mask=batch["text_mask"]), P_UNCOND)
    return diffusion_loss(loss_key, make_conditional_model_fn(model, cond), batch["latent"], SCHEDULE, loss_type="l1")


def _train(num_devices, num_steps=3):
    mesh = make_mesh(num_devices)
    optimizer = make_optimizer(1e-3)
    graphdef, state = create_train_state(jax.random.key(1), _make_ldm, optimizer, mesh=mesh)
    first = jax.tree.map(np.asarray, state.params)
    step = make_train_step(graphdef, _ldm_loss, optimizer, ema_decay=0.9, mesh=mesh)
    ids, mask = TOKENIZER.encode([PROMPTS[i % 4] for i in range(B)])
    metrics = []
    for i in range(num_steps):
        batch = {"latent": _latents(seed=10 + i), "text_ids": ids, "text_mask": mask}
        state, m = step(state, shard_batch(batch, mesh))
        metrics.append([float(m["loss"]), float(m["mae"]), float(m["grad_norm"])])
    return first, jax.tree.map(np.asarray, state.params), np.array(metrics)


def test_text_ldm_train_step_on_4_devices_equals_1():
    first, params_1, metrics_1 = _train(1)
    assert np.isfinite(metrics_1).all()
    np.testing.assert_array_equal(metrics_1[:, 0], metrics_1[:, 1])  # the loss is the L1 term
    # Joint training: steps 1 and 2 open the zero-initialised head and cross-attention output, so
    # from step 3 the text encoder gets gradients.
    text_before = first["text_encoder"]["token_embedding"]["embedding"][...]
    assert not np.allclose(params_1["text_encoder"]["token_embedding"]["embedding"][...], text_before)
    _, params_4, metrics_4 = _train(4)
    np.testing.assert_allclose(metrics_4, metrics_1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(params_4), jax.tree.leaves(params_1), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=0)
