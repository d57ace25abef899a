"""Feature extraction: batching, the extractor record, the built-in network, its training and its weight files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from gensynth.data import builtin_dataset
from gensynth.metrics.distribution import frechet_distance
from gensynth.metrics.feature_net import (
    NOISE_STD,
    BuiltinFeatureNet,
    builtin_feature_extractor,
    load_builtin_extractor,
    save_builtin_extractor,
    train_builtin_extractor,
)
from gensynth.metrics.features import extract_features, feature_extractor_from_module
from gensynth.models.params import count_params


def test_extract_features_batches_pads_and_compiles_once():
    traces = []

    @jax.jit
    def apply_fn(x):
        traces.append(x.shape)
        return jnp.concatenate([x.sum(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)  # [B, 2C]

    images = np.random.default_rng(0).normal(size=(7, 4, 4, 3)).astype(np.float32)
    feats = extract_features(apply_fn, images, batch_size=3)  # batches 3, 3, 1 (+2 padding rows)
    np.testing.assert_allclose(feats, apply_fn(images), rtol=1e-6)
    assert feats.shape == (7, 6) and feats.dtype == np.float32
    assert traces == [(3, 4, 4, 3), (7, 4, 4, 3)]  # one compile for all batches, one for the reference call
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(apply_fn, images, batch_size=0)
    with pytest.raises(ValueError, match="apply_fn"):
        extract_features(lambda x: x, images, batch_size=2)


def test_builtin_net_sizes_and_shapes():
    # abstract networks: shapes and parameter counts without compiling the random initialisers
    net2 = nnx.eval_shape(lambda: BuiltinFeatureNet(1, spatial_dims=2, rngs=nnx.Rngs(0)))
    net3 = nnx.eval_shape(lambda: BuiltinFeatureNet(2, spatial_dims=3, rngs=nnx.Rngs(0)))
    assert 100_000 <= count_params(net2) <= 250_000 and 400_000 <= count_params(net3) <= 700_000
    assert nnx.eval_shape(lambda m: m(jnp.zeros((2, 16, 16, 1))), net2).shape == (2, 96)
    assert nnx.eval_shape(lambda m: m(jnp.zeros((1, 8, 16, 16, 2))), net3).shape == (1, 96)
    rotation, corruption = nnx.eval_shape(lambda m: m.logits(jnp.zeros((2, 8, 16, 16, 2))), net3)
    assert rotation.shape == (2, 4) and corruption.shape == (2, 3)
    with pytest.raises(ValueError, match="images"):
        nnx.eval_shape(lambda m: m(jnp.zeros((2, 16, 16, 3))), net2)
    with pytest.raises(ValueError, match="channels"):
        BuiltinFeatureNet(1, channels=(8, 12), rngs=nnx.Rngs(0))
    linear = nnx.Linear(2, 5, rngs=nnx.Rngs(0))
    record = feature_extractor_from_module("linear", linear, feature_dim=5)
    x = jnp.arange(8.0).reshape(4, 2)
    assert record.name == "linear" and record.feature_dim == 5 and not record.comparable_to_published
    np.testing.assert_allclose(record.apply_fn(x), x @ linear.kernel[...] + linear.bias[...], rtol=1e-6)


def test_training_learns_the_pretext_tasks_and_features_see_noise(tmp_path):
    images = builtin_dataset("mni152", 16)  # [113, 16, 16, 1] axial T1 slices
    net, metrics = train_builtin_extractor(
        jax.random.key(0), images, steps=80, batch_size=16, learning_rate=3e-3, channels=(8, 16, 32)
    )
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    assert all(v.shape == (80,) for v in metrics.values())
    assert metrics["loss"][-20:].mean() < 0.8 * metrics["loss"][:10].mean()
    assert metrics["rotation_accuracy"][-20:].mean() > 0.5  # chance 0.25
    assert metrics["corruption_accuracy"][-20:].mean() > 0.5  # chance 1/3
    # the features separate clean from noisy slices: FID(clean, noisy) >> FID(clean half, other clean half)
    noisy = images + NOISE_STD * np.random.default_rng(0).normal(size=images.shape).astype(np.float32)
    extractor = builtin_feature_extractor(net, tag="mni152 16px")
    assert extractor.name == "gensynth-builtin-cnn-2d (mni152 16px)" and extractor.feature_dim == 32
    assert not extractor.comparable_to_published
    feats = extract_features(extractor.apply_fn, np.concatenate([images, noisy]), 64)
    clean, noise = feats[: len(images)], feats[len(images) :]
    np.testing.assert_allclose(clean[:4], net(images[:4]), rtol=1e-5, atol=1e-6)  # the record runs `net`
    assert frechet_distance(clean[0::2], noise[1::2]) > 3 * frechet_distance(clean[0::2], clean[1::2])
    # save -> load gives the same network; keys are the parameter paths
    path = tmp_path / "extractor.safetensors"
    save_builtin_extractor(path, net)
    assert "stages.0.down.kernel" in load_file(path)
    loaded = load_builtin_extractor(path)
    assert loaded.channels == (8, 16, 32) and loaded.spatial_dims == 2
    np.testing.assert_array_equal(loaded(images[:4]), net(images[:4]))


def test_load_builtin_extractor_rejects_bad_files(tmp_path):
    path = tmp_path / "net.safetensors"
    save_builtin_extractor(path, BuiltinFeatureNet(1, spatial_dims=2, channels=(8, 16), rngs=nnx.Rngs(0)))
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    tensors["stages.0.down.kernel"] = np.zeros((3, 3, 8, 8), np.float32)  # 8 outputs instead of 16
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=r"stages\.0\.down\.kernel.*\(3, 3, 8, 8\).*\(3, 3, 8, 16\)"):
        load_builtin_extractor(path)
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a BuiltinFeatureNet"):
        load_builtin_extractor(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_builtin_extractor(tmp_path / "missing.safetensors")
