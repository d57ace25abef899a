"""gensynth.nn.conv_grad: values and both gradients equal lax.conv_general_dilated's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gensynth.nn.conv_grad import conv_general_dilated

CASES = [
    # (input shape, kernel shape, strides, padding, dimension numbers)
    ((2, 9, 8, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1)), ("NHWC", "HWIO", "NHWC")),
    ((2, 9, 8, 3), (3, 3, 3, 5), (2, 2), ((1, 1), (1, 1)), ("NHWC", "HWIO", "NHWC")),
    ((2, 8, 8, 3), (2, 2, 3, 4), (1, 1), "VALID", ("NHWC", "HWIO", "NHWC")),
    ((1, 7, 6, 4), (5, 3, 4, 2), (2, 1), "SAME", ("NHWC", "HWIO", "NHWC")),
    ((2, 3, 8, 9), (4, 3, 3, 3), (2, 2), ((0, 2), (1, 0)), ("NCHW", "OIHW", "NCHW")),
    ((1, 5, 6, 4, 2), (3, 3, 3, 2, 3), (2, 2, 2), ((1, 1), (1, 1), (1, 1)), ("NDHWC", "DHWIO", "NDHWC")),
]


@pytest.mark.parametrize("x_shape, w_shape, strides, padding, dn", CASES)
def test_value_and_gradients_match_lax(x_shape, w_shape, strides, padding, dn):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)

    def ref(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn, precision="highest")

    def new(x, w):
        return conv_general_dilated(x, w, strides, padding, dimension_numbers=dn, precision="highest")

    y_ref, vjp_ref = jax.vjp(ref, x, w)
    y_new, vjp_new = jax.vjp(new, x, w)
    g = jax.random.normal(kg, y_ref.shape)
    np.testing.assert_allclose(y_new, y_ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(vjp_new(g), vjp_ref(g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_input_gradient_inside_a_loop_matches_and_keeps_dtype():
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4), jnp.bfloat16)
    x = jax.random.normal(jax.random.key(2), (2, 8, 8, 4), jnp.bfloat16)

    def step(conv):
        loss = lambda x: jnp.sum(conv(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
        return jax.jit(lambda x: jax.lax.fori_loop(0, 3, lambda i, x: x - 1e-2 * jax.grad(loss)(x), x))

    new, ref = step(conv_general_dilated)(x), step(lax.conv_general_dilated)(x)
    assert new.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(new, np.float32), np.asarray(ref, np.float32), atol=0.05)


def test_grouped_or_dilated_convolutions_fall_back_to_lax():
    x, w = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 2, 4))
    dn = ("NHWC", "HWIO", "NHWC")
    got = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=2)
    np.testing.assert_array_equal(got, lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn,
                                                                feature_group_count=2))
