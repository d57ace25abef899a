"""Tests for the semantic (SPADE-decoder) UNet, `label_channels`: where the SPADE norms sit, that
the output follows the label map (and stops following it when the gamma/beta convs are zero), 2D
and 3D with maps at other resolutions, input checks, and jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.models import UNet
from gensynth.nn import AdaGroupNorm, GroupNorm
from gensynth.nn.spade import SpadeGroupNorm

TINY = {"channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (1,), "head_dim": 8,
        "groups": 4, "spade_hidden": 8}  # fmt: skip
K, B = 3, 2


def _random_net(spatial_dims=2, seed=0):
    """A SPADE UNet filled with N(0, 0.2^2) NumPy values (no init compile; zero-init layers become non-zero)."""
    abstract = nnx.eval_shape(lambda: UNet(1, 1, spatial_dims=spatial_dims, label_channels=K, rngs=nnx.Rngs(0), **TINY))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(0.2 * rng.normal(size=a.shape), a.dtype), state))


def _inputs(spatial_dims=2, size=8, label_size=8, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B,) + (size,) * spatial_dims + (1,)).astype(np.float32)
    label = rng.dirichlet(np.ones(K), size=(B,) + (label_size,) * spatial_dims).astype(np.float32)  # soft maps
    return x, np.array([10, 500], np.int32), label


@nnx.jit
def _forward(model, x, t, label):
    return model(x, t, label_map=label)


@pytest.fixture(scope="module")
def net():
    return _random_net()


def test_spade_norms_only_in_middle_and_decoder(net):
    for stage in net.down:
        assert isinstance(stage.res.in_norm, GroupNorm) and isinstance(stage.res.out_norm, AdaGroupNorm)
    for block in [net.mid.res, net.mid_out] + [stage.res for stage in net.up]:
        assert isinstance(block.in_norm, SpadeGroupNorm) and isinstance(block.out_norm, SpadeGroupNorm)
        assert block.out_norm.emb_proj is not None  # time still enters by scale-shift
    assert isinstance(net.head_norm, GroupNorm)


def test_output_follows_the_label_map(net):
    x, t, label = _inputs()
    out = _forward(net, x, t, label)
    assert out.shape == x.shape and np.isfinite(out).all()
    assert not np.allclose(out, _forward(net, x, t, np.roll(label, 3, axis=1)), atol=1e-3)
    # Each example follows its own map: changing example 1's map leaves example 0's output alone.
    changed = label.copy()
    changed[1] = label[1, ::-1]
    out_changed = _forward(net, x, t, changed)
    np.testing.assert_allclose(out_changed[0], out[0], atol=1e-5)
    assert not np.allclose(out_changed[1], out[1], atol=1e-3)


def test_zero_modulation_convs_make_the_map_irrelevant():
    net = _random_net(seed=2)
    for _, node in nnx.iter_graph(net):
        if isinstance(node, SpadeGroupNorm):
            for conv in (node.gamma, node.beta):
                conv.kernel[...] = jnp.zeros_like(conv.kernel[...])
                conv.bias[...] = jnp.zeros_like(conv.bias[...])
    x, t, label = _inputs()
    np.testing.assert_allclose(_forward(net, x, t, label), _forward(net, x, t, 1.0 - label), atol=1e-5)


def test_3d_with_a_map_at_another_resolution():
    net = _random_net(spatial_dims=3, seed=3)
    x, t, label = _inputs(spatial_dims=3, size=4, label_size=8)
    out = _forward(net, x, t, label)
    assert out.shape == x.shape
    assert not np.allclose(out, _forward(net, x, t, label[:, ::-1]), atol=1e-4)


def test_label_map_checks(net):
    x, t, label = _inputs()
    with pytest.raises(ValueError, match="label_map is required"):
        net(x, t)
    with pytest.raises(ValueError, match="label_map must have shape"):
        net(x, t, label_map=label[..., :2])
    plain = nnx.eval_shape(lambda: UNet(1, 1, rngs=nnx.Rngs(0), **TINY))
    with pytest.raises(ValueError, match="label_map is not accepted"):
        plain(x, t, label_map=label)
    with pytest.raises(ValueError, match="label_channels"):
        UNet(1, 1, label_channels=0, rngs=nnx.Rngs(0), **TINY)


def test_vmap_over_examples_equals_the_batch(net):
    x, t, label = _inputs()
    graphdef, state = nnx.split(net)

    @jax.jit
    def per_example(state, x, t, label):
        model = nnx.merge(graphdef, state)
        return jax.vmap(lambda x, t, y: model(x[None], t[None], label_map=y[None])[0])(x, t, label)

    np.testing.assert_allclose(per_example(state, x, t, label), _forward(net, x, t, label), atol=1e-5)
