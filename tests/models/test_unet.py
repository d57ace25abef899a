"""Tests for gensynth.models.UNet on tiny 2D and 3D configurations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.models import UNet

TINY = {"channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (1,), "head_dim": 8, "groups": 4}
B = 2


def _make(spatial_dims=2, conditioned=True, dropout=0.1, dtype=jnp.float32):
    def make(rngs):
        return UNet(1, 2, spatial_dims=spatial_dims, num_classes=3 if conditioned else None,
                    context_dim=5 if conditioned else None, dropout=dropout, dtype=dtype, rngs=rngs, **TINY)  # fmt: skip

    return make


def _abstract(make):
    return nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))


def _perturb(state, seed, scale=0.1):
    """Adds N(0, scale^2) NumPy noise to every parameter, moving the zero-initialised ones off zero."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a) + scale * rng.normal(size=a.shape), a.dtype), state)


def _random_state(state, seed, scale=0.2):
    """Fills an abstract state with N(0, scale^2) NumPy values (no init compile)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), state)


def _inputs(spatial_dims=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B,) + (size,) * spatial_dims + (1,)).astype(np.float32)
    t = np.array([3, 917], np.int32)
    y = np.array([0, 3], np.int32)  # 3 = null label
    context = rng.normal(size=(B, 4, 5)).astype(np.float32)
    return x, t, y, context


@nnx.jit
def _forward(model, x, t, y, context):
    return model(x, t, y=y, context=context)


@nnx.jit
def _forward_dropout(model, x, t, y, context, key):
    return model(x, t, y=y, context=context, dropout_key=key)


@nnx.jit
def _grads(model, x, t, y, context, target):
    return nnx.grad(lambda m: jnp.sum(m(x, t, y=y, context=context) * target))(model)


@pytest.fixture(scope="module")
def net2d():
    """Real initialisation of the conditioned 2D net (rbg keys: far faster to compile than threefry)."""
    return nnx.jit(_make())(nnx.Rngs(jax.random.key(0, impl="rbg")))


@pytest.fixture(scope="module")
def perturbed2d(net2d):
    graphdef, state = nnx.split(net2d)
    return nnx.merge(graphdef, _perturb(state, 1))


def _param_leaves(state):
    return jax.tree.leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("conditioned", [False, True])
def test_output_shape_and_dtype(spatial_dims, conditioned):
    graphdef, state = _abstract(_make(spatial_dims, conditioned, dtype=jnp.bfloat16))
    x, t, y, context = _inputs(spatial_dims, size=8)
    cond = {"y": y, "context": context} if conditioned else {}
    out = jax.eval_shape(lambda s, x, t: nnx.merge(graphdef, s)(x, t, **cond), state, x, t)
    assert out.shape == x.shape[:-1] + (2,) and out.dtype == jnp.float32


def test_state_holds_only_float32_params(net2d):
    _, state = nnx.split(net2d)
    leaves = _param_leaves(state)
    assert leaves and all(isinstance(v, nnx.Param) and v[...].dtype == jnp.float32 for v in leaves)
    _, _, rest = nnx.split(net2d, nnx.Param, ...)
    assert jax.tree.leaves(rest) == []


def test_zero_init_head_gives_zero_output_but_gradients_flow(net2d):
    x, t, y, context = _inputs()
    np.testing.assert_array_equal(_forward(net2d, x, t, y, context), 0.0)
    target = np.random.default_rng(2).normal(size=x.shape[:-1] + (2,)).astype(np.float32)
    grads = _grads(net2d, x, t, y, context, target)
    assert all(np.isfinite(g[...]).all() for g in _param_leaves(nnx.state(grads)))
    assert float(jnp.abs(grads.head_conv.kernel[...]).max()) > 0
    assert float(jnp.abs(grads.head_conv.bias[...]).max()) > 0


def test_every_parameter_gets_a_finite_nonzero_gradient(perturbed2d):
    x, t, y, context = _inputs()
    target = np.random.default_rng(3).normal(size=x.shape[:-1] + (2,)).astype(np.float32)
    state = nnx.state(_grads(perturbed2d, x, t, y, context, target))
    flat = nnx.to_flat_state(state)
    for path, g in flat:
        g = np.asarray(g[...])
        assert np.isfinite(g).all(), path
        assert np.abs(g).max() > 0, path


def test_labels_and_context_condition_each_example_separately(perturbed2d):
    x, t, y, context = _inputs()
    base = _forward(perturbed2d, x, t, y, context)
    other_label = _forward(perturbed2d, x, t, np.array([0, 1], np.int32), context)
    other_context = _forward(perturbed2d, x, t, y, np.concatenate([context[:1], 2 * context[1:]]))
    for out in (other_label, other_context):
        np.testing.assert_allclose(out[0], base[0], atol=1e-5)  # example 0 unchanged
        assert float(jnp.abs(out[1] - base[1]).max()) > 1e-3  # example 1 follows its own condition


def test_dropout_only_with_key(perturbed2d):
    x, t, y, context = _inputs()
    plain = _forward(perturbed2d, x, t, y, context)
    k0, k1 = jax.random.key(0), jax.random.key(1)
    with_k0 = _forward_dropout(perturbed2d, x, t, y, context, k0)
    np.testing.assert_array_equal(with_k0, _forward_dropout(perturbed2d, x, t, y, context, k0))
    assert not np.allclose(with_k0, plain, atol=1e-4)
    assert not np.allclose(with_k0, _forward_dropout(perturbed2d, x, t, y, context, k1), atol=1e-4)


def test_bfloat16_compute_is_close_to_float32(perturbed2d):
    graphdef16, _ = _abstract(_make(dtype=jnp.bfloat16))
    _, state = nnx.split(perturbed2d)
    net16 = nnx.merge(graphdef16, state)
    x, t, y, context = _inputs()
    out32 = np.asarray(_forward(perturbed2d, x, t, y, context))
    out16 = _forward(net16, x, t, y, context)
    assert out16.dtype == jnp.float32
    assert all(v[...].dtype == jnp.float32 for v in _param_leaves(nnx.state(net16)))
    rel = np.linalg.norm(np.asarray(out16) - out32) / np.linalg.norm(out32)
    assert rel < 5e-2, rel


def test_3d_net_conditions_on_labels():
    graphdef, state = _abstract(_make(spatial_dims=3, dropout=0.0))
    net = nnx.merge(graphdef, _random_state(state, 4))
    x, t, y, context = _inputs(spatial_dims=3, size=8)
    out = _forward(net, x, t, y, context)
    assert out.shape == (B, 8, 8, 8, 2) and np.isfinite(out).all()
    assert float(jnp.abs(out - _forward(net, x, t, np.array([1, 1], np.int32), context)).max()) > 1e-3


def test_jit_via_split_merge_matches_eager():
    make = lambda rngs: UNet(1, 1, channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=(0,),
                             head_dim=8, groups=4, rngs=rngs)  # fmt: skip
    graphdef, state = _abstract(make)
    state = _random_state(state, 5)
    x, t, _, _ = _inputs(size=4)

    @jax.jit
    def apply_fn(state, x, t):
        return nnx.merge(graphdef, state)(x, t)

    eager = nnx.merge(graphdef, state)(x, t)
    np.testing.assert_allclose(apply_fn(state, x, t), eager, atol=1e-5, rtol=1e-5)


_GOOD = _inputs(size=8)


@pytest.mark.parametrize(
    "conditioned,change,match",
    [
        (True, {"x": np.zeros((B, 8, 8))}, "x must have rank"),
        (True, {"x": np.zeros((B, 8, 8, 8, 1))}, "x must have rank"),
        (True, {"x": np.zeros((B, 8, 8, 3))}, "x must have 1 channels"),
        (True, {"x": np.zeros((B, 8, 7, 1))}, "x spatial sizes"),
        (True, {"t": np.zeros((B + 1,))}, "t must have shape"),
        (True, {"y": None}, "y .*required"),
        (False, {"y": _GOOD[2], "context": None}, "y .*not accepted"),
        (True, {"y": np.zeros((B, 1), np.int32)}, "y must be integer labels"),
        (True, {"y": np.zeros((B,), np.float32)}, "y must be integer labels"),
        (True, {"context": None}, "context is required"),
        (False, {"y": None}, "context is not accepted"),
        (True, {"context": np.zeros((B, 4, 6))}, "context must have shape"),
    ],
)
def test_invalid_inputs_raise(conditioned, change, match):
    graphdef, state = _abstract(_make(conditioned=conditioned))
    args = dict(zip(("x", "t", "y", "context"), _GOOD)) | change
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda s, a: nnx.merge(graphdef, s)(a["x"], a["t"], y=a["y"], context=a["context"]), state, args)


@pytest.mark.parametrize(
    "change,name",
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"channel_mult": ()}, "channel_mult"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"attention_levels": (2,)}, "attention_levels"),
        ({"groups": 3}, "groups"),
        ({"head_dim": 3}, "head_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"time_conditioning": "film"}, "time_conditioning"),
    ],
)
def test_invalid_config_raises(change, name):
    with pytest.raises(ValueError, match=name):
        UNet(1, 1, rngs=nnx.Rngs(0), **(TINY | change))
