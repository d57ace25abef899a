"""Coil maps (spec ch. 17, test 9): normalisation, smoothness and the ACS-based estimate."""

import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import inverse as gi

N = 32


def test_birdcage_maps_are_normalised_and_distinct():
    maps = np.asarray(gi.birdcage_maps((N, N), 8))
    assert maps.shape == (8, N, N) and maps.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)
    # Each coil is brightest on its own side: coil 0 sits at +x (right), coil 4 at -x (left).
    assert np.abs(maps[0][:, -1]).mean() > 2 * np.abs(maps[0][:, 0]).mean()
    assert np.abs(maps[4][:, 0]).mean() > 2 * np.abs(maps[4][:, -1]).mean()


def test_estimate_recovers_smooth_maps_from_acs():
    maps = gi.birdcage_maps((N, N), 8)
    yy, xx = np.mgrid[:N, :N]
    disk = ((yy - N // 2) ** 2 + (xx - N // 2) ** 2 < (0.45 * N) ** 2).astype(np.float32)
    mask = jnp.asarray(gi.uniform1d((N, N), 2, acs_fraction=0.5)[0])  # undersampled, ACS 16
    kspace = mask * gi.fft2c(maps * disk)
    est = np.asarray(gi.estimate_coil_maps(kspace, 16))
    support = disk > 0
    np.testing.assert_allclose(np.sum(np.abs(est) ** 2, axis=0)[support], 1.0, atol=1e-4)
    err = np.linalg.norm((est - np.asarray(maps))[:, support]) / np.linalg.norm(
        np.asarray(maps)[:, support]
    )
    assert err < 0.1, err
    assert np.all(est[:, ~(np.sum(np.abs(est) ** 2, axis=0) > 0.5)] == 0)  # zero off support


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_coils"):
        gi.birdcage_maps((N, N), 0)
    with pytest.raises(ValueError, match="kspace"):
        gi.estimate_coil_maps(jnp.zeros((N, N), jnp.complex64), 8)
    with pytest.raises(ValueError, match="acs_size"):
        gi.estimate_coil_maps(jnp.zeros((2, N, N), jnp.complex64), N + 1)
