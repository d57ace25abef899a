"""``conv_general_dilated`` with an input gradient that XLA's CPU backend runs fast inside loops.

JAX differentiates a convolution with respect to its input as another convolution whose kernel
dimension numbers name the output-feature axis as input and vice versa (``01oi``), and leaves
the physical transpose to XLA's layout pass. Outside loops XLA inserts that transpose; inside a
``while`` loop (``lax.fori_loop``/``scan``: every DPS, MCG or fused training step) jaxlib 0.10's
CPU backend keeps the ``01oi`` kernel and falls back to a naive convolution, 20-40x slower
(measured: 8 convs of [4, 64, 64, 32], input gradient in a fori_loop, 0.56 s vs 0.021 s per
step). Here the input gradient convolves with an explicitly flipped and transposed kernel, which
is the same function in every backend, and the canonical layout everywhere.

Scope: ungrouped convolutions without lhs/rhs dilation (every convolution of gensynth's
networks); anything else goes to ``lax.conv_general_dilated`` unchanged.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _vjp_lhs_padding(in_sizes, kernel_sizes, strides, out_sizes, padding):
    """Padding of the input-gradient convolution (stride 1 over the ``strides``-dilated cotangent)."""
    pads = []
    for n, k, s, m, (lo, _) in zip(in_sizes, kernel_sizes, strides, out_sizes, padding):
        before = k - 1 - lo
        pads.append((before, n + k - 1 - ((m - 1) * s + 1) - before))
    return tuple(pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(lhs, rhs, strides, padding, dn, precision, preferred_element_type):
    return lax.conv_general_dilated(
        lhs, rhs, strides, padding, dimension_numbers=dn, precision=precision,
        preferred_element_type=preferred_element_type,
    )


def _conv_fwd(lhs, rhs, strides, padding, dn, precision, preferred_element_type):
    return _conv(lhs, rhs, strides, padding, dn, precision, preferred_element_type), (lhs, rhs)


def _conv_bwd(strides, padding, dn, precision, preferred_element_type, residuals, g):
    lhs, rhs = residuals
    lhs_spec, rhs_spec, out_spec = dn
    spatial = rhs_spec[2:]
    kernel_t = jnp.swapaxes(jnp.flip(rhs, spatial), rhs_spec[0], rhs_spec[1])  # physical transpose
    pads = _vjp_lhs_padding(
        [lhs.shape[a] for a in lhs_spec[2:]], [rhs.shape[a] for a in spatial], strides,
        [g.shape[a] for a in out_spec[2:]], padding,
    )
    lhs_grad = lax.conv_general_dilated(
        g, kernel_t, (1,) * len(strides), pads, lhs_dilation=strides,
        dimension_numbers=lax.ConvDimensionNumbers(out_spec, rhs_spec, lhs_spec), precision=precision,
        preferred_element_type=preferred_element_type,
    )
    _, rhs_vjp = jax.vjp(
        lambda w: lax.conv_general_dilated(lhs, w, strides, padding, dimension_numbers=dn, precision=precision,
                                           preferred_element_type=preferred_element_type),
        rhs,
    )
    return lhs_grad.astype(lhs.dtype), rhs_vjp(g)[0]


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
) -> jax.Array:
    """Drop-in for :func:`jax.lax.conv_general_dilated` (and ``nnx.Conv``'s
    ``conv_general_dilated`` argument): the same values and gradients, with the input gradient
    written as a canonical-layout convolution (see the module docstring)."""
    plain = all(d == 1 for d in (lhs_dilation or ())) and all(d == 1 for d in (rhs_dilation or ()))
    if not plain or feature_group_count != 1 or batch_group_count != 1 or out_sharding is not None:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type, out_sharding=out_sharding,
        )
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(
            [lhs.shape[a] for a in dn.lhs_spec[2:]], [rhs.shape[a] for a in dn.rhs_spec[2:]], window_strides, padding
        )
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv(lhs, rhs, tuple(int(s) for s in window_strides), padding, dn, precision, preferred_element_type)
