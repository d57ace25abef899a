"""FID Inception: PyTorch key names and shapes written out here, round trip through safetensors,
and the conversion checked against a hand-computed conv + batch norm."""

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import save_file

from gensynth.metrics.features import extract_features
from gensynth.metrics.inception import fid_inception_extractor, load_fid_inception


def _torchvision_convs() -> dict[str, tuple[int, int, int, int]]:
    """BasicConv2d name -> conv weight shape [O, I, kh, kw], from torchvision's Inception3 source."""
    convs = {}

    def add(name, cin, cout, kh, kw=None):
        convs[name] = (cout, cin, kh, kh if kw is None else kw)

    add("Conv2d_1a_3x3", 3, 32, 3)
    add("Conv2d_2a_3x3", 32, 32, 3)
    add("Conv2d_2b_3x3", 32, 64, 3)
    add("Conv2d_3b_1x1", 64, 80, 1)
    add("Conv2d_4a_3x3", 80, 192, 3)
    for block, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        add(f"{block}.branch1x1", cin, 64, 1)
        add(f"{block}.branch5x5_1", cin, 48, 1)
        add(f"{block}.branch5x5_2", 48, 64, 5)
        add(f"{block}.branch3x3dbl_1", cin, 64, 1)
        add(f"{block}.branch3x3dbl_2", 64, 96, 3)
        add(f"{block}.branch3x3dbl_3", 96, 96, 3)
        add(f"{block}.branch_pool", cin, pool, 1)
    add("Mixed_6a.branch3x3", 288, 384, 3)
    add("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    add("Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    add("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for block, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        add(f"{block}.branch1x1", 768, 192, 1)
        add(f"{block}.branch7x7_1", 768, c7, 1)
        add(f"{block}.branch7x7_2", c7, c7, 1, 7)
        add(f"{block}.branch7x7_3", c7, 192, 7, 1)
        add(f"{block}.branch7x7dbl_1", 768, c7, 1)
        add(f"{block}.branch7x7dbl_2", c7, c7, 7, 1)
        add(f"{block}.branch7x7dbl_3", c7, c7, 1, 7)
        add(f"{block}.branch7x7dbl_4", c7, c7, 7, 1)
        add(f"{block}.branch7x7dbl_5", c7, 192, 1, 7)
        add(f"{block}.branch_pool", 768, 192, 1)
    add("Mixed_7a.branch3x3_1", 768, 192, 1)
    add("Mixed_7a.branch3x3_2", 192, 320, 3)
    add("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    add("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    add("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    add("Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for block, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        add(f"{block}.branch1x1", cin, 320, 1)
        add(f"{block}.branch3x3_1", cin, 384, 1)
        add(f"{block}.branch3x3_2a", 384, 384, 1, 3)
        add(f"{block}.branch3x3_2b", 384, 384, 3, 1)
        add(f"{block}.branch3x3dbl_1", cin, 448, 1)
        add(f"{block}.branch3x3dbl_2", 448, 384, 3)
        add(f"{block}.branch3x3dbl_3a", 384, 384, 1, 3)
        add(f"{block}.branch3x3dbl_3b", 384, 384, 3, 1)
        add(f"{block}.branch_pool", cin, 192, 1)
    return convs


def _random_state(seed: int = 0) -> dict[str, np.ndarray]:
    """A pytorch-fid-style state dict with random weights (activations kept O(1))."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, (o, i, kh, kw) in _torchvision_convs().items():
        state[f"{name}.conv.weight"] = (rng.normal(size=(o, i, kh, kw)) * np.sqrt(2.0 / (i * kh * kw))).astype(
            np.float32
        )
        state[f"{name}.bn.weight"] = rng.uniform(0.5, 1.5, o).astype(np.float32)
        state[f"{name}.bn.bias"] = rng.normal(0.0, 0.1, o).astype(np.float32)
        state[f"{name}.bn.running_mean"] = rng.normal(0.0, 0.1, o).astype(np.float32)
        state[f"{name}.bn.running_var"] = rng.uniform(0.5, 1.5, o).astype(np.float32)
        state[f"{name}.bn.num_batches_tracked"] = np.array(7, np.int64)  # present in newer torch files
    state["fc.weight"] = np.zeros((1008, 2048), np.float32)  # pytorch-fid's 1008-class head, unused
    state["fc.bias"] = np.zeros((1008,), np.float32)
    return state


def _conv_bn_relu(x: np.ndarray, state: dict, name: str, stride: int, pad: tuple[int, int]) -> np.ndarray:
    """PyTorch's BasicConv2d by hand in float64: cross-correlation of NHWC x with OIHW weights, BN, ReLU."""
    w = state[f"{name}.conv.weight"].astype(np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    windows = sliding_window_view(xp, w.shape[2:], axis=(1, 2))[:, ::stride, ::stride]  # [B, H', W', C, kh, kw]
    y = np.einsum("bhwcuv,ocuv->bhwo", windows, w)
    bn = {k: state[f"{name}.bn.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var")}
    y = (y - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-3) * bn["weight"] + bn["bias"]
    return np.maximum(y, 0.0)


def test_pytorch_names_round_trip_and_features(tmp_path):
    state = _random_state()
    assert len(_torchvision_convs()) == 94  # torchvision's trunk: 94 BasicConv2d layers
    path = tmp_path / "pt_inception.safetensors"
    save_file(state, str(path))
    net = load_fid_inception(path)  # fails on any name or shape the module does not share with the table
    np.testing.assert_array_equal(net.Mixed_5b.branch1x1.bn.mean[...], state["Mixed_5b.branch1x1.bn.running_mean"])
    # (b) the conversion: one stem layer (3x3, stride 2, no padding) and an asymmetric 1x7 kernel
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    expected = _conv_bn_relu(x, state, "Conv2d_1a_3x3", 2, (0, 0))
    np.testing.assert_allclose(net.Conv2d_1a_3x3(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-5)
    h = rng.normal(size=(1, 5, 9, 128)).astype(np.float32)
    expected = _conv_bn_relu(h, state, "Mixed_6b.branch7x7_2", 1, (0, 3))
    np.testing.assert_allclose(net.Mixed_6b.branch7x7_2(jnp.asarray(h)), expected, rtol=1e-4, atol=1e-4)
    # (a) features of a 2-image batch at 299 px (resized from 32), through the extractor record
    extractor = fid_inception_extractor(path)
    assert extractor.feature_dim == 2048 and extractor.comparable_to_published
    assert "pt_inception.safetensors" in extractor.name
    images = np.linspace(-1.0, 1.0, 2 * 32 * 32).reshape(2, 32, 32, 1).astype(np.float32)
    feats = extract_features(extractor.apply_fn, images, batch_size=2)
    assert feats.shape == (2, 2048) and np.all(np.isfinite(feats)) and np.all(feats >= 0.0)  # mean of ReLUs
    assert not np.allclose(feats[0], feats[1])


def test_bad_state_dicts_name_the_key():
    state = _random_state()
    bad = dict(state)
    bad["Mixed_6b.branch7x7_2.conv.weight"] = np.zeros((128, 128, 7, 1), np.float32)  # 7x1 instead of 1x7
    message = r"Mixed_6b\.branch7x7_2\.conv\.weight.*\(128, 128, 7, 1\).*\(128, 128, 1, 7\)"
    with pytest.raises(ValueError, match=message):
        load_fid_inception(bad)
    missing = {k: v for k, v in state.items() if k != "Mixed_7c.branch_pool.bn.running_var"}
    with pytest.raises(ValueError, match=r"missing 1 key.*Mixed_7c\.branch_pool\.bn\.running_var"):
        load_fid_inception(missing)
    with pytest.raises(ValueError, match=r"unexpected.*Mixed_5b\.branch9x9\.conv\.weight"):
        load_fid_inception(state | {"Mixed_5b.branch9x9.conv.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(FileNotFoundError):
        load_fid_inception("no/such/file.safetensors")
