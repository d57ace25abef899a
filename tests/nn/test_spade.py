"""Tests for gensynth.nn.spade: SPADE-GN reduces to group norm, depends on the label map only
locally (two 3x3 convs: a 2-pixel reach), resizes like PyTorch's nearest mode, composes with the
time scale-shift in closed form, and runs in 3D under jit and vmap (spec ch. 1, Sect. 6 item 13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.nn.norms import group_norm
from gensynth.nn.spade import SpadeGroupNorm, resize_nearest

C, K, G = 8, 3, 4


def _rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _plain_gn(h):
    return group_norm(h, groups=G, scale=jnp.ones(C), bias=jnp.zeros(C))


def _layer(**kw):
    return SpadeGroupNorm(C, K, spatial_dims=kw.pop("spatial_dims", 2), groups=G, hidden=16, rngs=_rngs(), **kw)


def test_reduces_to_group_norm_for_zero_map_or_zero_convs():
    h = 3.0 + 2.0 * _normal((2, 8, 8, C), 0)
    label = _normal((2, 16, 16, K), 1)
    layer, zeroed = _layer(), _layer(zero_init=True)
    # Zero map: the shared conv gives its bias (0), ReLU 0, gamma/beta their biases (0).
    np.testing.assert_allclose(layer(h, np.zeros_like(label)), _plain_gn(h), atol=1e-5)
    np.testing.assert_allclose(zeroed(h, label), _plain_gn(h), atol=1e-5)
    out = layer(h, label)
    assert not np.allclose(out, _plain_gn(h), atol=1e-2)  # the map modulates
    assert not np.allclose(out, layer(h, _normal(label.shape, 2)), atol=1e-2)  # ... and which map matters


def test_modulation_formula_and_time_scale_shift():
    h, label, emb = _normal((2, 4, 4, C), 3), _normal((2, 4, 4, K), 4), _normal((2, 6), 5)
    for mode in ("scale_shift", "additive"):
        layer = _layer(emb_dim=6, mode=mode)
        gamma, beta = layer.modulation(label, (4, 4))
        cond = np.asarray(layer.emb_proj(jax.nn.silu(emb)))[:, None, None, :]  # [B, 1, 1, 2C] or [B, 1, 1, C]
        if mode == "scale_shift":
            scale, shift = cond[..., :C], cond[..., C:]
            expected = (_plain_gn(h) * (1 + gamma) + beta) * (1 + scale) + shift
        else:
            expected = _plain_gn(h + cond) * (1 + gamma) + beta
        np.testing.assert_allclose(layer(h, label, emb), expected, atol=1e-5)
    with pytest.raises(ValueError, match="emb"):
        layer(h, label)
    with pytest.raises(ValueError, match="label_map"):
        layer(h, label[..., :2], emb)


def test_constant_map_gives_constant_modulation_away_from_the_border():
    layer = _layer()
    label = np.broadcast_to(np.array([0.2, 0.5, 0.3], np.float32), (1, 12, 12, K))
    gamma, beta = layer.modulation(label, (12, 12))
    for a in (gamma, beta):
        inner = np.asarray(a)[0, 2:-2, 2:-2]  # [8, 8, C]
        np.testing.assert_allclose(inner, np.broadcast_to(inner[:1, :1], inner.shape), atol=1e-6)
        assert not np.allclose(a[0, 0, 0], inner[0, 0], atol=1e-4)  # zero padding shows at the corner


def test_label_change_reaches_two_pixels():
    layer = _layer()
    label = _normal((1, 12, 12, K), 6)
    changed = label.copy()
    changed[0, 5:7, 4:6] += 1.0  # rows 5-6, cols 4-5
    diff = np.abs(np.asarray(layer.modulation(changed, (12, 12))[0] - layer.modulation(label, (12, 12))[0]))
    touched = diff.max(axis=(0, 3)) > 1e-6  # [12, 12]
    expected = np.zeros((12, 12), bool)
    expected[3:9, 2:8] = True  # the changed block dilated by 2
    assert not touched[~expected].any()
    assert touched[5:7, 4:6].all()


def test_resize_nearest_uses_floor_of_scaled_index():
    x = jnp.arange(6.0).reshape(1, 6, 1)
    np.testing.assert_array_equal(resize_nearest(x, (3,))[0, :, 0], [0, 2, 4])  # keeps even positions
    np.testing.assert_array_equal(resize_nearest(x[:, :3], (6,))[0, :, 0], [0, 0, 1, 1, 2, 2])  # repeats
    np.testing.assert_array_equal(resize_nearest(x[:, :3], (5,))[0, :, 0], [0, 0, 1, 1, 2])  # floor(i * 3 / 5)
    y = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(resize_nearest(y, (2, 2))[0, ..., 0], [[0, 2], [8, 10]])


def test_3d_under_jit_and_vmap():
    layer = nnx.jit(lambda r: SpadeGroupNorm(C, K, spatial_dims=3, groups=G, hidden=8, rngs=r))(_rngs(1))
    h, label = _normal((3, 4, 4, 4, C), 7), _normal((3, 8, 8, 8, K), 8)
    out = nnx.jit(lambda m, h, y: m(h, y))(layer, h, label)
    assert out.shape == h.shape
    graphdef, state = nnx.split(layer)
    per_example = jax.vmap(lambda h, y: nnx.merge(graphdef, state)(h[None], y[None])[0])(h, label)
    np.testing.assert_allclose(per_example, out, atol=1e-5)
