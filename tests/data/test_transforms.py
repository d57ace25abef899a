"""Tests for gensynth.data.transforms: jitted dm-pix augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.data.transforms import make_augment_fn

OFF = dict(flip=False, max_rotate_deg=0.0, max_scale=0.0, max_translate=0.0, intensity=0.0)


def _images(b=8, size=16):
    return jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (b, size, size, 1)).astype(np.float32))


def test_zero_magnitudes_are_identity():
    x = _images()
    np.testing.assert_array_equal(make_augment_fn(**OFF)(jax.random.key(0), x), x)


def test_flip_is_exact_and_per_example():
    x = _images()
    y = np.asarray(make_augment_fn(**(OFF | {"flip": True}))(jax.random.key(0), x))
    flipped = [np.array_equal(y[i], np.asarray(x[i, :, ::-1])) for i in range(8)]
    kept = [np.array_equal(y[i], np.asarray(x[i])) for i in range(8)]
    assert all(f != k for f, k in zip(flipped, kept))  # each example exactly flipped or kept
    assert any(flipped) and any(kept)


def test_translation_moves_a_dot():
    x = jnp.full((1, 32, 32, 1), -1.0).at[0, 16, 16, 0].set(1.0)
    y = np.asarray(make_augment_fn(**(OFF | {"max_translate": 0.2}))(jax.random.key(2), x))[0, ..., 0]
    bright = np.argwhere(y > -1.0)
    assert 1 <= len(bright) <= 4  # bilinear spreads the dot over at most 2 x 2 pixels
    assert np.abs(bright.mean(axis=0) - 16).max() > 0.5  # and it moved


def test_rotation_keeps_a_centred_disc():
    r = np.hypot(*np.meshgrid(np.arange(32) - 15.5, np.arange(32) - 15.5, indexing="ij"))
    disc = jnp.asarray(np.where(r < 8, 1.0, -1.0), jnp.float32)[None, ..., None]
    y = make_augment_fn(**(OFF | {"max_rotate_deg": 30.0}))(jax.random.key(1), jnp.tile(disc, (4, 1, 1, 1)))
    assert float(jnp.abs(y - disc).mean()) < 0.05  # rotation-invariant up to edge interpolation


def test_intensity_jitter_is_monotone_and_clipped():
    x = _images(4)
    y = np.asarray(make_augment_fn(**(OFF | {"intensity": 0.3}))(jax.random.key(0), x))
    assert y.min() >= -1.0 and y.max() <= 1.0
    for i in range(4):
        order = np.argsort(np.asarray(x[i]).ravel())
        assert np.all(np.diff(y[i].ravel()[order]) >= -1e-6)  # gamma, brightness, contrast preserve order


def test_full_augmentation_shape_dtype_and_per_example_randomness():
    x = jnp.tile(_images(1), (4, 1, 1, 1)).astype(jnp.bfloat16)
    y = make_augment_fn()(jax.random.key(0), x)
    assert y.shape == x.shape and y.dtype == jnp.bfloat16
    assert float(jnp.abs(y.astype(jnp.float32)).max()) <= 1.0
    assert not np.array_equal(np.asarray(y[0]), np.asarray(y[1]))  # same input, different parameters


def test_rejects_bad_magnitudes_and_shapes():
    with pytest.raises(ValueError, match="max_rotate_deg"):
        make_augment_fn(max_rotate_deg=-1)
    with pytest.raises(ValueError, match="max_scale"):
        make_augment_fn(max_scale=1.0)
    with pytest.raises(ValueError, match="images"):
        make_augment_fn(**OFF)(jax.random.key(0), jnp.zeros((16, 16, 1)))
