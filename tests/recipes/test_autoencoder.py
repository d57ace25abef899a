"""Autoencoder training: one jitted step on a 4-device mesh equals the one-device step (VQ-GAN with
EMA codebook, adversarial and feature-matching terms, adaptive weight, spectral norm), and a tiny
KL-AE with perceptual and adversarial terms learns to reconstruct MNI152 slices while its
discriminator waits for `disc_start`.

Tolerances (float32): sharding only reorders reductions (batch means, gradient sums, EMA codebook
sums), so losses agree to ~1e-7 relative and the adaptive weight (a ratio of gradient norms) to
~1e-5; after one Adam step (lr 1e-3, moving each weight by about lr) parameters agree to ~1e-7.
The test allows `rtol=1e-4` on metrics and `atol=1e-5` (plus `rtol=1e-4`, for Adam's moments) on
parameters, codebook, discriminator and optimiser states.
"""

import dataclasses
import functools

import jax
import numpy as np
import optax
import pytest

from gensynth.data import mni152_slices
from gensynth.recipes.autoencoder import (
    AutoencoderConfig,
    init_autoencoder_state,
    make_autoencoder_train_step,
    train_autoencoder,
    validate_config,
)
from gensynth.train import make_mesh, param_sharding, shard_batch

VQ_GAN = AutoencoderConfig(
    kind="vq", channels=8, channel_mult=(1,), latent_channels=4, groups=4, num_codes=32, dead_code_after=1,
    disc_start=0, disc_channels=8, disc_layers=1, disc_spectral_norm=True, feature_matching_weight=1.0,
    batch_size=8, learning_rate=1e-3, disc_learning_rate=1e-3,
)  # fmt: skip  (one level and a one-layer D: the smallest program with every term, ~10 s to compile)
METRIC_RTOL, PARAM_ATOL = 1e-4, 1e-5


@functools.cache
def _slices():
    return mni152_slices(32)  # [113, 32, 32, 1] in [-1, 1]


@functools.cache
def _initial():
    """The step-0 state (on the host) and the graphs; initialised once, placed on each mesh."""
    graphs, state = init_autoencoder_state(jax.random.key(0), VQ_GAN)
    return graphs, jax.device_get(state)


def _one_step(num_devices):
    """One step of VQ_GAN on `num_devices`; returns the new state (on the host) and the metrics."""
    mesh = make_mesh(num_devices)
    graphs, initial = _initial()
    state = jax.device_put(initial, param_sharding(initial, mesh))
    step_fn = make_autoencoder_train_step(VQ_GAN, graphs, mesh=mesh)
    state, metrics = step_fn(state, shard_batch({"image": _slices()[:8]}, mesh))
    return jax.device_get(state), jax.device_get(metrics)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _adam_count(opt_state) -> int:
    """Adam's step counter in an optax state (updates actually applied)."""
    is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)
    return int(next(s for s in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(s)).count)


def test_four_device_step_equals_one_device_step():
    # One step from the same state (the state's later steps are not compared: a vector almost
    # equidistant from two codes may be assigned differently once the parameters differ by rounding).
    state_1, metrics_1 = _one_step(1)
    state_4, metrics_4 = _one_step(4)
    assert metrics_1.keys() == metrics_4.keys()
    for name in metrics_1:
        np.testing.assert_allclose(metrics_4[name], metrics_1[name], rtol=METRIC_RTOL, atol=1e-7, err_msg=name)
    for part in ("params", "codebook", "disc_params", "disc_stats", "opt_state", "disc_opt_state"):
        for a, b in zip(_leaves(getattr(state_4, part)), _leaves(getattr(state_1, part)), strict=True):
            np.testing.assert_allclose(a, b, atol=PARAM_ATOL, rtol=METRIC_RTOL, err_msg=part)

    # Everything trained: autoencoder, discriminator (disc_start = 0), spectral-norm vectors, and
    # the codebook, re-initialised from the batch's encoder outputs at step 0.
    initial = _initial()[1]
    for part in ("params", "disc_params", "disc_stats"):
        pairs = zip(_leaves(getattr(state_1, part)), _leaves(getattr(initial, part)), strict=True)
        assert all(not np.array_equal(a, b) for a, b in pairs), part
    codebook = np.asarray(state_1.codebook["quantizer"]["codebook"][...])
    assert np.abs(codebook).max() > 5 / VQ_GAN.num_codes  # data-scale codes, not the [-1/K, 1/K] init
    assert metrics_1["disc_active"] == 1.0 and metrics_1["fm_loss"] > 0


def test_tiny_kl_autoencoder_learns_mni152_slices_and_disc_waits_for_disc_start():
    cfg = AutoencoderConfig(
        kind="kl", channels=8, channel_mult=(1, 2), latent_channels=4, groups=4, perceptual_weight=0.1,
        disc_start=20, disc_channels=8, disc_layers=1, batch_size=8, learning_rate=3e-3, seed=1,
    )  # fmt: skip
    model, state, history = train_autoencoder(jax.random.key(1), _slices(), cfg, 25, mesh=make_mesh(1), progress=False)
    rec = history["rec_loss"]
    assert rec.shape == (25,) and int(state.step) == 25
    assert {"loss", "rec_loss", "kl_loss", "g_loss", "d_loss", "adaptive_weight"} <= set(history)
    assert np.mean(rec[-5:]) < 0.35 * rec[0], rec  # measured: 0.85 -> ~0.16
    # The adversarial terms switch on at step 20; the discriminator takes its first update there.
    np.testing.assert_array_equal(history["disc_active"], [0.0] * 20 + [1.0] * 5)
    assert _adam_count(state.opt_state) == 25 and _adam_count(state.disc_opt_state) == 5
    # The returned module holds the trained parameters: its reconstruction error matches the history.
    x = _slices()[:16]
    mean, _ = jax.jit(model.encode)(x)
    error = float(np.mean(np.abs(jax.jit(model.decode)(mean) - x)))
    assert error < 0.5 * rec[0]


def test_bad_config_and_images_are_refused():
    with pytest.raises(ValueError, match="kind='ae'"):
        validate_config(dataclasses.replace(VQ_GAN, kind="ae"))
    with pytest.raises(ValueError, match="adv_loss"):
        validate_config(dataclasses.replace(VQ_GAN, adv_loss="relativistic"))
    with pytest.raises(ValueError, match="codebook_decay"):
        validate_config(dataclasses.replace(VQ_GAN, codebook_decay=1.0))
    two_levels = dataclasses.replace(VQ_GAN, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="divisible by 2"):
        train_autoencoder(jax.random.key(0), np.zeros((8, 31, 32, 1)), two_levels, 1, mesh=make_mesh(1))
    with pytest.raises(ValueError, match="at least batch_size=8"):
        train_autoencoder(jax.random.key(0), np.zeros((4, 32, 32, 1)), VQ_GAN, 1, mesh=make_mesh(1))
