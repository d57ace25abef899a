"""Perceptual loss: metric properties, channel and 3D handling, and the torchvision VGG16 loader
checked against an independent NCHW/OIHW convolution of the file's tensors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from gensynth.models.perceptual import (
    VGG16_CONVS,
    VGG16_WIDTHS,
    PerceptualLoss,
    load_vgg16_features,
    random_feature_net,
    torchvision_conv_indices,
)


def _images(seed, shape):
    return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def loss_fn():
    """The default loss (fixed random net), jitted once for the module."""
    graphdef, state = nnx.split(PerceptualLoss(random_feature_net(seed=0), imagenet_norm=False))

    @jax.jit
    def fn(x, y, key=None):
        return nnx.merge(graphdef, state)(x, y, key=key)

    return fn


def test_identity_symmetry_and_positivity(loss_fn):
    x, y = _images(0, (2, 16, 16, 1)), _images(1, (2, 16, 16, 1))
    assert float(loss_fn(x, x)) == 0.0
    np.testing.assert_allclose(loss_fn(x, y), loss_fn(y, x), rtol=1e-6)
    assert float(loss_fn(x, y)) > 0.0
    # A small perturbation is closer than an unrelated image.
    assert float(loss_fn(x, x + 0.05 * _images(2, x.shape))) < float(loss_fn(x, y))


def test_grey_and_multichannel_inputs(loss_fn):
    x, y = _images(0, (2, 16, 16, 1)), _images(1, (2, 16, 16, 1))
    # One channel is compared as a grey RGB image.
    np.testing.assert_allclose(loss_fn(x, y), loss_fn(jnp.repeat(x, 3, -1), jnp.repeat(y, 3, -1)), rtol=1e-6)
    # Two channels: the mean of the per-channel losses.
    x2, y2 = jnp.concatenate([x, y], -1), jnp.concatenate([y, -y], -1)
    expected = (loss_fn(x, y) + loss_fn(y, -y)) / 2
    np.testing.assert_allclose(loss_fn(x2, y2), expected, rtol=1e-5)


def test_3d_sums_the_three_orthogonal_planes(loss_fn):
    x, y = _images(0, (2, 16, 8, 16, 1)), _images(1, (2, 16, 8, 16, 1))
    central = loss_fn(x[:, 8], y[:, 8]) + loss_fn(x[:, :, 4], y[:, :, 4]) + loss_fn(x[:, :, :, 8], y[:, :, :, 8])
    np.testing.assert_allclose(loss_fn(x, y), central, rtol=1e-5)
    key = jax.random.key(5)
    i, j, k = (int(jax.random.randint(s, (), 0, n)) for s, n in zip(jax.random.split(key, 3), (16, 8, 16)))
    random_planes = loss_fn(x[:, i], y[:, i]) + loss_fn(x[:, :, j], y[:, :, j]) + loss_fn(x[:, :, :, k], y[:, :, :, k])
    np.testing.assert_allclose(loss_fn(x, y, key), random_planes, rtol=1e-5)


def test_random_feature_net_is_fixed_by_its_seed():
    a, b, c = (nnx.state(random_feature_net(seed=s), nnx.Param) for s in (0, 0, 1))
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert not np.array_equal(jax.tree.leaves(a)[1], jax.tree.leaves(c)[1])


def _vgg16_tensors(num_slices: int) -> dict[str, np.ndarray]:
    """Random tensors with torchvision VGG16 `features.*` names and shapes (OIHW)."""
    rng = np.random.default_rng(0)
    widths = [w for w, n in zip(VGG16_WIDTHS[:num_slices], VGG16_CONVS) for _ in range(n)]
    tensors, c_in = {}, 3
    for index, c_out in zip(torchvision_conv_indices(VGG16_CONVS[:num_slices]), widths):
        weight = rng.normal(size=(c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)
        tensors[f"features.{index}.weight"] = weight.astype(np.float32)
        tensors[f"features.{index}.bias"] = rng.normal(size=(c_out,)).astype(np.float32) * 0.1
        c_in = c_out
    return tensors


def _reference_first_slice(tensors, x_nhwc):
    """relu1_2 computed in torch's layout (NCHW input, OIHW kernels), independent of the loader."""
    h = jnp.transpose(x_nhwc, (0, 3, 1, 2))
    for i in (0, 2):
        h = jax.lax.conv_general_dilated(h, tensors[f"features.{i}.weight"], (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))  # fmt: skip
        h = jax.nn.relu(h + tensors[f"features.{i}.bias"][None, :, None, None])
    return jnp.transpose(h, (0, 2, 3, 1))


def test_vgg16_loader_matches_torch_layout_convolution(tmp_path):
    tensors = _vgg16_tensors(2)
    assert sorted(tensors) == sorted(f"features.{i}.{p}" for i in (0, 2, 5, 7) for p in ("weight", "bias"))
    path = tmp_path / "vgg16_features.safetensors"
    save_file({**tensors, "classifier.0.weight": np.zeros((2, 2), np.float32)}, str(path))  # extra keys ignored
    net = load_vgg16_features(path, num_slices=2)
    x = _images(3, (1, 16, 16, 3))
    feats = jax.jit(lambda x: net(x))(x)
    assert [f.shape for f in feats] == [(1, 16, 16, 64), (1, 8, 8, 128)]
    np.testing.assert_allclose(feats[0], _reference_first_slice(tensors, x), rtol=1e-4, atol=1e-5)
    loss = PerceptualLoss(net)
    assert loss.layer_weights == (1.0, 1.0)


def test_vgg16_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_vgg16_features(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_vgg16_features(garbage, num_slices=1)
    tensors = _vgg16_tensors(1)
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in tensors.items() if k != "features.2.weight"}, str(partial))
    with pytest.raises(ValueError, match="missing tensor 'features.2.weight'"):
        load_vgg16_features(partial, num_slices=1)
    wrong = tmp_path / "wrong.safetensors"
    save_file({**tensors, "features.0.weight": np.zeros((64, 1, 3, 3), np.float32)}, str(wrong))
    with pytest.raises(ValueError, match=r"'features.0.weight' has shape \(64, 1, 3, 3\), expected \(64, 3, 3, 3\)"):
        load_vgg16_features(wrong, num_slices=1)
    with pytest.raises(ValueError, match="num_slices"):
        load_vgg16_features(wrong, num_slices=6)
