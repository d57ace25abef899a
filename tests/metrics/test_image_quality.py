"""PSNR, SSIM and NMSE against hand-derived values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.metrics import nmse, psnr, ssim


def test_psnr_of_constant_offset_and_magnitude_of_complex():
    ref = jax.random.uniform(jax.random.key(0), (3, 16, 16, 1), minval=-1.0, maxval=1.0)
    # offset 0.02 on range 2: MSE = 4e-4, PSNR = 10 log10(4 / 4e-4) = 40 dB
    np.testing.assert_allclose(psnr(ref + 0.02, ref, 2.0), [40.0] * 3, atol=1e-3)
    # offset 0.1 on range 1 -> 20 dB; complex inputs are compared by magnitude (|0.1 i| = 0.1)
    z = jnp.zeros((16, 16, 1))
    np.testing.assert_allclose(psnr(z + 0.1j, z, 1.0), 20.0, atol=1e-4)
    with pytest.raises(ValueError, match="data_range"):
        psnr(z, z, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        psnr(z, z[:8], 1.0)


def test_nmse_closed_form():
    ref = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    # x = (1 + a) ref  ->  NMSE = a^2 exactly
    np.testing.assert_allclose(nmse(1.3 * ref, ref), [0.09, 0.09], rtol=1e-5)
    np.testing.assert_allclose(nmse(ref, ref), [0.0, 0.0], atol=0.0)


def test_ssim_identity_and_contrast_loss():
    ref = jax.random.uniform(jax.random.key(2), (2, 16, 16, 1), minval=-1.0, maxval=1.0)
    np.testing.assert_allclose(ssim(ref, ref, 2.0), [1.0, 1.0], atol=1e-5)
    # constant images c1, c2: SSIM = luminance term (2 c1 c2 + C1) / (c1^2 + c2^2 + C1)
    c1, c2, C1 = 0.5, -0.25, (0.01 * 2.0) ** 2
    value = ssim(jnp.full((16, 16, 1), c1), jnp.full((16, 16, 1), c2), 2.0)
    np.testing.assert_allclose(value, (2 * c1 * c2 + C1) / (c1**2 + c2**2 + C1), rtol=1e-4)
    noisy = ref + 0.3 * jax.random.normal(jax.random.key(3), ref.shape)
    assert np.all(np.asarray(ssim(noisy, ref, 2.0)) < 0.9)
    with pytest.raises(ValueError, match="filter_size"):
        ssim(ref[:, :8, :8], ref[:, :8, :8], 2.0)
