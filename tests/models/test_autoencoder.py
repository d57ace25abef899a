"""KL and VQ autoencoders: shapes in 2D/3D, the KL closed form, the focal loss, and the vector
quantiser's straight-through gradient, EMA update and dead-code restart against hand values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.models.autoencoder import KLAutoencoder, VQAutoencoder
from gensynth.models.autoencoder_losses import (
    focal_loss,
    kl_divergence,
    l1_loss,
    vq_codebook_loss,
    vq_commitment_loss,
)
from gensynth.models.vector_quantizer import (
    CodebookState,
    VectorQuantizer,
    codebook_perplexity,
    dead_code_mask,
    ema_codebook_update,
    restart_dead_codes,
    vq_nearest,
)

SIZES = {"channels": 8, "channel_mult": (1, 2, 2), "num_res_blocks": 1, "latent_channels": 3, "groups": 4}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", [False, True])
def test_round_trip_shapes(spatial_dims, attention):
    shape = (2,) + (8,) * spatial_dims + (2,)
    latent = (2,) + (2,) * spatial_dims  # f = 4

    def kl_outputs():
        ae = KLAutoencoder(2, spatial_dims=spatial_dims, attention=attention, rngs=nnx.Rngs(0), **SIZES)
        recon, mean, logvar = ae(jax.random.key(0), jnp.zeros(shape))
        return recon, mean, logvar, ae.decode(mean)

    def vq_outputs():
        ae = VQAutoencoder(2, 5, spatial_dims=spatial_dims, attention=attention, num_codes=16, rngs=nnx.Rngs(0),
                           **SIZES)  # fmt: skip
        recon, z_e, indices, _ = ae(jnp.zeros(shape))
        return recon, z_e, indices, ae.decode_indices(indices)

    recon, mean, logvar, decoded = jax.eval_shape(kl_outputs)
    assert recon.shape == decoded.shape == shape and recon.dtype == jnp.float32
    assert mean.shape == logvar.shape == latent + (3,)
    recon, z_e, indices, decoded = jax.eval_shape(vq_outputs)
    assert recon.shape == decoded.shape == shape[:-1] + (5,)
    assert z_e.shape == latent + (3,) and indices.shape == latent and indices.dtype == jnp.int32


def test_vq_decode_indices_equals_decoding_the_quantised_latent_and_bf16_runs():
    ae = VQAutoencoder(1, num_codes=16, rngs=nnx.Rngs(0), **SIZES)
    graphdef, state = nnx.split(ae)
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1), minval=-1, maxval=1)

    @jax.jit
    def run(state, x):
        ae = nnx.merge(graphdef, state)
        recon, z_e, indices, terms = ae(x)
        return recon, ae.decode_indices(indices), z_e, indices, terms

    recon, from_indices, z_e, indices, terms = run(state, x)
    np.testing.assert_allclose(recon, from_indices, atol=1e-5)  # z_e + (e - z_e) rounds differently from e
    np.testing.assert_array_equal(indices, vq_nearest(z_e, ae.quantizer.codebook[...]))
    e = ae.quantizer.codebook[...][indices]
    np.testing.assert_allclose(terms["commitment"], np.mean((z_e - e) ** 2), rtol=1e-5)

    bf16 = KLAutoencoder(1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0), **SIZES)
    out = jax.eval_shape(lambda: bf16(jax.random.key(0), x))
    assert all(a.dtype == jnp.float32 for a in out)


def test_bad_inputs_are_refused():
    ae = KLAutoencoder(1, rngs=nnx.Rngs(0), **SIZES)
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(jnp.zeros((1, 6, 8, 1)))
    with pytest.raises(ValueError, match="channels-last"):
        ae.encode(jnp.zeros((1, 8, 8, 2)))
    with pytest.raises(ValueError, match="z must have shape"):
        ae.decode(jnp.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="groups=3"):
        KLAutoencoder(1, **{**SIZES, "groups": 3}, rngs=nnx.Rngs(0))


def test_kl_divergence_closed_form_hand_value_and_monte_carlo():
    # Hand value: per element 0.5 * (mu^2 + s^2 - log s^2 - 1); mu = 1, s^2 = e: 0.5 * (1 + e - 1 - 1) = (e - 1) / 2.
    mean, logvar = jnp.ones((2, 2, 2, 1)), jnp.ones((2, 2, 2, 1))
    np.testing.assert_allclose(kl_divergence(mean, logvar), 4 * (np.e - 1) / 2, rtol=1e-6)  # 4 elements/example
    assert float(kl_divergence(jnp.zeros((3, 5)), jnp.zeros((3, 5)))) == 0.0

    # Monte Carlo: E_q[log q(z) - log p(z)] with z ~ q, per example, averaged over the batch.
    mu = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]])
    lv = jnp.array([[0.2, -1.0, 0.5], [1.0, -0.3, 0.0]])
    z = mu + jnp.exp(0.5 * lv) * jax.random.normal(jax.random.key(0), (200_000,) + mu.shape)
    log_q = -0.5 * ((z - mu) ** 2 / jnp.exp(lv) + lv + jnp.log(2 * jnp.pi))
    log_p = -0.5 * (z**2 + jnp.log(2 * jnp.pi))
    mc = jnp.mean(jnp.sum(log_q - log_p, axis=-1))
    np.testing.assert_allclose(kl_divergence(mu, lv), mc, rtol=0.01)


def test_focal_loss_reduces_to_cross_entropy_and_is_below_it():
    target = jax.nn.softmax(jax.random.normal(jax.random.key(0), (2, 4, 4, 3)), axis=-1)
    logits = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    cross_entropy = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits), axis=-1))
    np.testing.assert_allclose(focal_loss(target, logits, gamma=0.0), cross_entropy, rtol=1e-6)
    assert float(focal_loss(target, logits, gamma=2.0)) < float(cross_entropy)
    # One voxel, one-hot target, p = softmax([0, log 3]) = (1/4, 3/4): FL = -(1 - 3/4)^2 log(3/4).
    value = focal_loss(jnp.array([[0.0, 1.0]]), jnp.array([[0.0, np.log(3.0)]]), gamma=2.0)
    np.testing.assert_allclose(value, -(0.25**2) * np.log(0.75), rtol=1e-6)
    assert float(focal_loss(jnp.array([[0.0, 1.0]]), jnp.array([[-30.0, 30.0]]))) < 1e-20


def test_reconstruction_and_vq_loss_hand_values():
    assert float(l1_loss(jnp.array([1.0, -1.0]), jnp.array([0.0, 1.0]))) == 1.5
    z_e, e = jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])
    assert float(vq_commitment_loss(z_e, e, beta=0.25)) == 0.25 * 2.5
    assert float(vq_codebook_loss(z_e, e)) == 2.5
    # The commitment loss trains only the encoder, the codebook loss only the codes.
    assert float(jnp.sum(jnp.abs(jax.grad(lambda c: vq_commitment_loss(z_e, c))(e)))) == 0.0
    assert float(jnp.sum(jnp.abs(jax.grad(lambda z: vq_codebook_loss(z, e))(z_e)))) == 0.0


def test_nearest_code_and_straight_through_gradient_is_identity():
    quantizer = VectorQuantizer(8, 3, rngs=nnx.Rngs(0))
    codebook = np.asarray(quantizer.codebook[...])
    z_e = 0.05 * jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    z_q, indices, _ = quantizer(z_e)
    brute = np.argmin(((np.asarray(z_e)[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(indices, brute)
    np.testing.assert_allclose(z_q, codebook[brute], atol=1e-7)
    w = jax.random.normal(jax.random.key(2), z_e.shape)
    grad = jax.grad(lambda z: jnp.sum(quantizer(z)[0] * w))(z_e)
    np.testing.assert_allclose(grad, w, atol=1e-7)


def test_ema_codebook_update_matches_hand_computed_update():
    state = CodebookState(
        codebook=jnp.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]),
        cluster_size=jnp.array([2.0, 1.0, 1.0]),
        embed_sum=jnp.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]),
        unused_steps=jnp.array([3, 0, 7], jnp.int32),
    )
    z = jnp.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    indices = jnp.array([0, 0, 1])
    new = ema_codebook_update(state, z, indices, decay=0.5, eps=0.1)
    # counts n = (2, 1, 0), sums s = ((4, 0), (0, 2), (0, 0)); d = 0.5.
    # N = 0.5 * (2, 1, 1) + 0.5 * (2, 1, 0) = (2, 1, 0.5);  m = ((2, 0), (0.5, 1.5), (2.5, 2.5)).
    # Laplace: n = 3.5, N_hat = (N + 0.1) / (3.5 + 0.3) * 3.5.
    n_hat = (np.array([2.0, 1.0, 0.5]) + 0.1) / 3.8 * 3.5
    m = np.array([[2.0, 0.0], [0.5, 1.5], [2.5, 2.5]])
    np.testing.assert_allclose(new.cluster_size, [2.0, 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(new.embed_sum, m, rtol=1e-6)
    np.testing.assert_allclose(new.codebook, m / n_hat[:, None], rtol=1e-6)
    np.testing.assert_array_equal(new.unused_steps, [0, 0, 8])


def test_ema_update_with_one_repeated_input_converges_that_code_to_it():
    state = CodebookState(jnp.zeros((2, 2)), jnp.ones(2), jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32))
    target = jnp.array([[0.7, -0.3]])
    for _ in range(200):
        state = ema_codebook_update(state, target, jnp.array([0]), decay=0.9, eps=1e-5)
    np.testing.assert_allclose(state.codebook[0], target[0], atol=1e-4)


def test_dead_code_restart_replaces_exactly_the_dead_codes():
    k = 6
    state = CodebookState(
        codebook=jnp.arange(2.0 * k).reshape(k, 2),
        cluster_size=jnp.array([3.0, 0.5, 2.0, 0.2, 1.5, 1.0]),
        embed_sum=jnp.arange(2.0 * k).reshape(k, 2) + 100.0,
        unused_steps=jnp.array([0, 5, 1, 2, 9, 0], jnp.int32),
    )
    dead = dead_code_mask(state, dead_after=5)
    np.testing.assert_array_equal(dead, [False, True, False, False, True, False])
    np.testing.assert_array_equal(dead_code_mask(state, dead_after=5, min_usage=1.0), [0, 1, 0, 1, 1, 0])
    z = -1.0 - jnp.arange(40.0).reshape(2, 10, 2)  # 20 encoder outputs, all distinct from the codes
    new = restart_dead_codes(jax.random.key(0), state, z, dead)
    live = ~np.asarray(dead)
    for name in ("codebook", "cluster_size", "embed_sum", "unused_steps"):
        np.testing.assert_array_equal(np.asarray(getattr(new, name))[live], np.asarray(getattr(state, name))[live])
    candidates = {tuple(v) for v in np.asarray(z).reshape(-1, 2)}
    assert all(tuple(v) in candidates for v in np.asarray(new.codebook)[dead])
    np.testing.assert_array_equal(new.embed_sum[dead], new.codebook[dead])
    np.testing.assert_array_equal(new.cluster_size[dead], [1.0, 1.0])
    np.testing.assert_array_equal(new.unused_steps[dead], [0, 0])
    with pytest.raises(ValueError, match="dead_after"):
        dead_code_mask(state, dead_after=0)


def test_codebook_perplexity():
    np.testing.assert_allclose(codebook_perplexity(jnp.arange(8) % 4, 16), 4.0, rtol=1e-6)
    np.testing.assert_allclose(codebook_perplexity(jnp.zeros(5, jnp.int32), 16), 1.0, rtol=1e-6)
