"""Tests for gensynth.data.tumour_synthesis (batch augmentation with synthetic tumours)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.data.tumour_synthesis import make_tumour_synthesis_fn


def _fake_synthesise(key, hu, organ):
    """A stand-in generator: a key-dependent square of -50 HU inside the organ."""
    shift = jax.random.randint(key, (), 0, 4)
    square = (jnp.arange(hu.shape[-1]) >= shift) & (jnp.arange(hu.shape[-1]) < shift + 3)
    tumour = square & square[:, None] & organ if hu.ndim == 2 else square & square[:, None] & square[:, None, None]
    tumour = tumour & organ
    return jnp.where(tumour, hu - 50.0, hu), tumour


def test_applies_per_example_with_probability():
    images = jnp.full((64, 8, 8, 1), 100.0)
    organs = jnp.ones((64, 8, 8, 1), bool).at[:, :, 6:].set(False)
    out, tumours = make_tumour_synthesis_fn(_fake_synthesise, p_syn=0.5)(jax.random.key(0), images, organs)
    out, tumours = np.asarray(out), np.asarray(tumours)
    assert out.shape == images.shape and tumours.shape == images.shape and tumours.dtype == bool
    applied = tumours.any(axis=(1, 2, 3))
    assert 16 < applied.sum() < 48  # about half of 64
    np.testing.assert_array_equal(out[~applied], 100.0)  # untouched examples
    np.testing.assert_array_equal(out[tumours], 50.0)
    assert not np.any(tumours & ~np.asarray(organs))


def test_always_and_never_and_3d():
    volumes, organs = jnp.full((3, 6, 6, 6, 1), 100.0), jnp.ones((3, 6, 6, 6, 1))
    out, tumours = make_tumour_synthesis_fn(_fake_synthesise, p_syn=1.0)(jax.random.key(1), volumes, organs)
    assert np.asarray(tumours).any(axis=(1, 2, 3, 4)).all()
    out, tumours = make_tumour_synthesis_fn(_fake_synthesise, p_syn=0.0)(jax.random.key(1), volumes, organs)
    assert not np.asarray(tumours).any()
    np.testing.assert_array_equal(out, volumes)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="p_syn"):
        make_tumour_synthesis_fn(_fake_synthesise, p_syn=1.5)
    synth_fn = make_tumour_synthesis_fn(_fake_synthesise)
    with pytest.raises(ValueError, match="images"):
        synth_fn(jax.random.key(0), jnp.zeros((2, 8, 8)), jnp.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="organs"):
        synth_fn(jax.random.key(0), jnp.zeros((2, 8, 8, 1)), jnp.zeros((2, 8, 9, 1)))
