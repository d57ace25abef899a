"""Tests for gensynth.models.convert: imported MONAI / diffusers U-Nets compute the peers' outputs.

The cases under tests/fixtures/peers/ were written by make_fixtures.py beside them, with torch,
MONAI and diffusers: randomly initialised peer networks, their weights as safetensors and their
outputs on random inputs. These tests read them with NumPy and safetensors only.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from gensynth.models import (
    UNet,
    count_params,
    diffusers_unet_kwargs,
    load_peer_unet,
    monai_unet_kwargs,
    unet_from_diffusers_state,
    unet_from_monai_state,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "peers"
CASES = ["monai_2d", "monai_3d", "diffusers_2d", "diffusers_ddpm"]

# The benchmark reference network in each peer's own arguments.
MONAI_REFERENCE = {
    "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": (64, 128, 128, 256),
    "attention_levels": (False, False, True, True), "num_res_blocks": 2, "num_head_channels": 32,
    "norm_num_groups": 32,
}  # fmt: skip
DIFFUSERS_REFERENCE = {
    "in_channels": 1, "out_channels": 1, "block_out_channels": (64, 128, 128, 256), "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "attention_head_dim": 32, "norm_num_groups": 32,
}  # fmt: skip
REFERENCE_UNET = {
    "in_channels": 1, "out_channels": 1, "spatial_dims": 2, "channels": 64, "channel_mult": (1, 2, 2, 4),
    "num_res_blocks": 2, "attention_levels": (2, 3), "head_dim": 32, "groups": 32, "num_classes": None,
    "time_conditioning": "additive",
}  # fmt: skip
REFERENCE_PEER_PARAMS = 18_534_017  # sum(p.numel() for p in model.parameters()), MONAI and diffusers alike


def _config(case: str) -> dict:
    return json.loads((FIXTURES / case / "config.json").read_text())


def _load(case: str) -> UNet:
    if case.startswith("monai"):
        return load_peer_unet(FIXTURES / case / "model.safetensors", peer="monai", config=_config(case))
    return load_peer_unet(FIXTURES / case, peer="diffusers")  # config.json + weights, as save_pretrained wrote


@nnx.jit
def _forward(net, x, t, y):
    return net(x, t, y=y)


@pytest.mark.parametrize("case", CASES)
def test_imported_unet_matches_peer_output(case):
    io = np.load(FIXTURES / case / "io.npz")
    net = _load(case)
    y = io.get("y")
    out = np.moveaxis(np.asarray(_forward(net, np.moveaxis(io["x"], 1, -1), io["t"], y)), -1, 1)  # [B, C, *S]
    assert np.abs(io["out"]).max() > 1.0  # the peer's output is far from the zero of an untrained head
    np.testing.assert_allclose(out, io["out"], rtol=0, atol=1e-4)


def test_reference_config_is_expressed_exactly():
    monai = monai_unet_kwargs(MONAI_REFERENCE)
    diffusers = diffusers_unet_kwargs(DIFFUSERS_REFERENCE)
    assert monai == REFERENCE_UNET | {"norm_eps": 1e-6}
    assert diffusers == REFERENCE_UNET | {"norm_eps": 1e-5, "freq_shift": 0.0, "dropout": 0.0}
    net = nnx.eval_shape(lambda: UNet(**monai, rngs=nnx.Rngs(0)))
    assert count_params(net) == REFERENCE_PEER_PARAMS


def test_sin_first_embedding_becomes_a_row_roll_of_the_first_time_layer():
    state = load_file(FIXTURES / "diffusers_ddpm" / "diffusion_pytorch_model.safetensors")
    net = load_peer_unet(FIXTURES / "diffusers_ddpm", peer="diffusers")
    w = state["time_embedding.linear_1.weight"]  # [E, dim], input order [sin, cos]
    half = w.shape[1] // 2
    np.testing.assert_array_equal(net.time_embed.fc1.kernel[...][:half], w[:, half:].T)  # cos rows
    np.testing.assert_array_equal(net.time_embed.fc1.kernel[...][half:], w[:, :half].T)  # sin rows
    assert net.time_embed.freq_shift == 1.0
    np.testing.assert_array_equal(net.class_embed.embedding[...][-1], 0.0)  # null label: no class term


def _small_state():
    return dict(load_file(FIXTURES / "diffusers_ddpm" / "diffusion_pytorch_model.safetensors"))


def test_missing_key_is_named():
    state = _small_state()
    del state["conv_in.weight"]
    with pytest.raises(ValueError, match=r"missing 1 key.*'conv_in\.weight'"):
        unet_from_diffusers_state(state, _config("diffusers_ddpm"))


def test_unexpected_key_is_named():
    state = _small_state() | {"extra.weight": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"does not use.*'extra\.weight'"):
        unet_from_diffusers_state(state, _config("diffusers_ddpm"))


def test_shape_mismatch_is_named():
    state = _small_state()
    state["mid_block.attentions.0.to_q.weight"] = np.zeros((16, 8), np.float32)
    with pytest.raises(
        ValueError, match=r"'mid_block\.attentions\.0\.to_q\.weight' has shape \(16, 8\), expected \(16, 16\)"
    ):
        unet_from_diffusers_state(state, _config("diffusers_ddpm"))


def test_config_that_does_not_match_the_weights():
    state = load_file(FIXTURES / "monai_3d" / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing .*attn\.to_q\.weight"):  # the weights use a fused qkv
        unet_from_monai_state(state, _config("monai_3d") | {"use_combined_linear": False})


def test_integer_weights_are_refused():
    state = _small_state()
    state["conv_in.bias"] = np.zeros(8, np.int64)
    with pytest.raises(ValueError, match=r"'conv_in\.bias' must hold floating-point"):
        unet_from_diffusers_state(state, _config("diffusers_ddpm"))


@pytest.mark.parametrize(
    "peer,change,message",
    [
        ("monai", {"with_conditioning": True, "cross_attention_dim": 8}, "with_conditioning"),
        ("monai", {"resblock_updown": True}, "resblock_updown"),
        ("monai", {"channels": (64, 96, 128, 256)}, "multiples"),
        ("monai", {"num_res_blocks": (2, 2, 1, 2)}, "same number of res blocks"),
        ("monai", {"num_head_channels": (32, 32, 32, 64)}, "head widths"),
        ("monai", {"num_res_block": 2}, "unknown"),
        ("diffusers", {"down_block_types": ("DownBlock2D",) * 3 + ("CrossAttnDownBlock2D",)}, "down_block_types"),
        ("diffusers", {"up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D")}, "mirror"),
        ("diffusers", {"resnet_time_scale_shift": "scale_shift"}, "attn_norm_num_groups"),
        ("diffusers", {"time_embedding_type": "fourier"}, "time_embedding_type"),
        ("diffusers", {"attention_head_dim": None}, "head widths"),  # 128 at level 2, 256 at level 3
    ],
)
def test_unsupported_config_is_named(peer, change, message):
    translate, reference = {
        "monai": (monai_unet_kwargs, MONAI_REFERENCE),
        "diffusers": (diffusers_unet_kwargs, DIFFUSERS_REFERENCE),
    }[peer]
    with pytest.raises(ValueError, match=message):
        translate(reference | change)


def test_load_peer_unet_input_errors(tmp_path):
    with pytest.raises(ValueError, match="peer"):
        load_peer_unet({}, peer="torch", config={})
    with pytest.raises(ValueError, match="config"):
        load_peer_unet(FIXTURES / "monai_2d" / "model.safetensors", peer="monai")
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_peer_unet(tmp_path / "nothing.safetensors", peer="monai", config=MONAI_REFERENCE)
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_peer_unet(tmp_path, peer="diffusers", config=DIFFUSERS_REFERENCE)


def test_torch_state_dict_file_loads_like_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    state = _small_state()
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "unet.pt")
    from_torch = load_peer_unet(tmp_path / "unet.pt", peer="diffusers", config=_config("diffusers_ddpm"))
    from_numpy = unet_from_diffusers_state(state, _config("diffusers_ddpm"))
    leaves = [jax.tree.leaves(nnx.state(net, nnx.Param)) for net in (from_torch, from_numpy)]
    assert len(leaves[0]) == len(leaves[1])
    for a, b in zip(*leaves):
        np.testing.assert_array_equal(a, b)
