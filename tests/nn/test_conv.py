"""Tests for gensynth.nn.conv: padding convention, down-sampling and the folded up-sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.nn import Downsample, Upsample, conv


def _random_module(make, seed):
    """Builds `make()` abstractly and fills every parameter from NumPy (no init compile)."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), state))


def _nearest_x2(x):
    for axis in range(1, x.ndim - 1):
        x = jnp.repeat(x, 2, axis=axis)
    return x


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_strided_conv_samples_even_positions(spatial_dims):
    # A kernel that is 1 at its centre (channel 0 -> 0) and a zero bias pick x at the window
    # centres; with symmetric (PyTorch) padding the centre of output i is input 2i.
    down = _random_module(lambda: Downsample(2, spatial_dims=spatial_dims, rngs=nnx.Rngs(0)), 0)
    centre = (1,) * spatial_dims
    down.conv.kernel[...] = np.zeros(down.conv.kernel.shape, np.float32)
    down.conv.kernel[centre + (0, 0)] = 1.0
    down.conv.bias[...] = np.zeros(2, np.float32)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2,) + (6,) * spatial_dims + (2,)), jnp.float32)
    y = nnx.jit(lambda m, x: m(x))(down, x)
    every_other = (slice(None),) + (slice(None, None, 2),) * spatial_dims + (0,)
    assert y.shape == (2,) + (3,) * spatial_dims + (2,)
    np.testing.assert_allclose(y[..., 0], x[every_other], atol=1e-6)


@pytest.mark.parametrize("spatial_dims,sizes", [(2, (4, 6)), (3, (3, 4, 5))])
def test_upsample_equals_nearest_then_conv(spatial_dims, sizes):
    up = _random_module(lambda: Upsample(3, spatial_dims=spatial_dims, rngs=nnx.Rngs(0)), 1)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2,) + sizes + (3,)), jnp.float32)
    y, naive = nnx.jit(lambda m, x: (m(x), m.conv(_nearest_x2(x))))(up, x)
    assert y.shape == (2,) + tuple(2 * n for n in sizes) + (3,)
    np.testing.assert_allclose(y, naive, atol=1e-4, rtol=1e-5)


def test_conv_zero_init_and_shape():
    layer = conv(2, 5, spatial_dims=3, kernel_size=1, zero_init=True, rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (1, 1, 1, 2, 5)
    np.testing.assert_array_equal(layer.kernel[...], 0.0)
    np.testing.assert_array_equal(layer.bias[...], 0.0)


@pytest.mark.parametrize(
    "kwargs,name", [({"spatial_dims": 1}, "spatial_dims"), ({"spatial_dims": 2, "kernel_size": 2}, "kernel_size")]
)
def test_conv_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        conv(1, 1, rngs=nnx.Rngs(0), **kwargs)
