"""Import U-Net weights trained with the PyTorch peers, MONAI and diffusers, into `UNet`.

The peer network is described by its own constructor arguments (see `peer_config`, which also
says why `UNet` reproduces it exactly); this module maps the peer's state-dict keys onto `UNet`'s
parameters. Weights come as a mapping key -> array, read from safetensors without torch
(`load_peer_unet`), or from a torch state dict when torch is installed. Layouts: a PyTorch conv
weight `[C_out, C_in, *k]` becomes a kernel `[*k, C_in, C_out]`, a linear weight `[out, in]` a
kernel `[in, out]`, separate Q/K/V projections one `[C, 3C]` kernel (heads contiguous in each, as
in both peers).
"""

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.models.peer_config import PeerSpec, diffusers_spec, monai_spec
from gensynth.models.unet import UNet

PEERS = ("monai", "diffusers")  # the libraries whose U-Net weights load_peer_unet imports

_DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"  # file name `save_pretrained` writes


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where a peer keeps each part of the network in its state dict."""

    time_fc: tuple[str, str]  # the two Linear layers of the time MLP
    class_embed: str
    stem: str
    down: str  # one encoder level, formatted with the level index
    downsample: str  # inside `down`
    mid: tuple[str, str, str]  # ResBlock, attention, ResBlock
    up: str  # one decoder level, formatted with its index counted from the lowest resolution
    upsample: str  # inside `up`
    head: tuple[str, str]  # GroupNorm, conv
    res: tuple[str, str, str, str, str, str]  # norm1, conv1, time projection, norm2, conv2, 1x1 skip
    attn: tuple[str, str, str, str, str]  # norm, q, k, v, output projection
    qkv: str  # the fused Q/K/V projection of MONAI's `use_combined_linear=True`


_MONAI = _Layout(
    time_fc=("time_embed.0", "time_embed.2"),
    class_embed="class_embedding",
    stem="conv_in.conv",
    down="down_blocks.{}",
    downsample="downsampler.op.conv",
    mid=("middle_block.resnet_1", "middle_block.attention", "middle_block.resnet_2"),
    up="up_blocks.{}",
    upsample="upsampler.postconv.conv",
    head=("out.0", "out.2.conv"),
    res=("norm1", "conv1.conv", "time_emb_proj", "norm2", "conv2.conv", "skip_connection.conv"),
    attn=("norm", "attn.to_q", "attn.to_k", "attn.to_v", "attn.out_proj"),
    qkv="attn.qkv",
)
_DIFFUSERS = _Layout(
    time_fc=("time_embedding.linear_1", "time_embedding.linear_2"),
    class_embed="class_embedding",
    stem="conv_in",
    down="down_blocks.{}",
    downsample="downsamplers.0.conv",
    mid=("mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"),
    up="up_blocks.{}",
    upsample="upsamplers.0.conv",
    head=("conv_norm_out", "conv_out"),
    res=("norm1", "conv1", "time_emb_proj", "norm2", "conv2", "conv_shortcut"),
    attn=("group_norm", "to_q", "to_k", "to_v", "to_out.0"),
    qkv="",
)


_LAYOUTS = {"monai": _MONAI, "diffusers": _DIFFUSERS}


@dataclasses.dataclass(frozen=True)
class _Rule:
    """How one gensynth parameter is made from peer arrays."""

    keys: tuple[str, ...]  # peer state-dict keys read
    convert: Callable[[list[np.ndarray]], np.ndarray]
    peer_shape: Callable[[tuple[int, ...]], tuple[int, ...]]  # each key's shape, from the gensynth shape


def _copy(key: str) -> _Rule:
    return _Rule((key,), lambda a: a[0], lambda s: s)


def _linear_kernel(key: str) -> _Rule:
    return _Rule((key,), lambda a: a[0].T, lambda s: (s[1], s[0]))  # [out, in] -> [in, out]


def _conv_kernel(key: str) -> _Rule:
    def convert(a):
        return np.transpose(a[0], (*range(2, a[0].ndim), 1, 0))  # [O, I, *k] -> [*k, I, O]

    return _Rule((key,), convert, lambda s: (s[-1], s[-2], *s[:-2]))


def _time_in_kernel(key: str, sin_first: bool) -> _Rule:
    """First time-MLP layer; a `[sin, cos]` input order becomes gensynth's `[cos, sin]` by rolling rows."""

    def convert(a):
        kernel = a[0].T  # [dim, E]
        return np.roll(kernel, kernel.shape[0] // 2, axis=0) if sin_first else kernel

    return _Rule((key,), convert, lambda s: (s[1], s[0]))


def _class_table(key: str) -> _Rule:
    """Peer class table `[N, E]` plus gensynth's null-label row `N`, set to zero (no class term)."""

    def convert(a):
        return np.concatenate([a[0], np.zeros((1, a[0].shape[1]), a[0].dtype)])

    return _Rule((key,), convert, lambda s: (s[0] - 1, s[1]))


def _linear(ours: tuple, peer: str) -> dict[tuple, _Rule]:
    return {ours + ("kernel",): _linear_kernel(f"{peer}.weight"), ours + ("bias",): _copy(f"{peer}.bias")}


def _conv(ours: tuple, peer: str) -> dict[tuple, _Rule]:
    return {ours + ("kernel",): _conv_kernel(f"{peer}.weight"), ours + ("bias",): _copy(f"{peer}.bias")}


def _norm(ours: tuple, peer: str) -> dict[tuple, _Rule]:
    return {ours + ("scale",): _copy(f"{peer}.weight"), ours + ("bias",): _copy(f"{peer}.bias")}


def _res(ours: tuple, peer: str, layout: _Layout) -> dict[tuple, _Rule]:
    norm1, conv1, proj, norm2, conv2, skip = (f"{peer}.{name}" for name in layout.res)
    return (
        _norm(ours + ("in_norm",), norm1)
        | _conv(ours + ("in_conv",), conv1)
        | _norm(ours + ("out_norm", "norm"), norm2)
        | _linear(ours + ("out_norm", "proj"), proj)
        | _conv(ours + ("out_conv",), conv2)
        | _conv(ours + ("skip",), skip)
    )


def _attn(ours: tuple, peer: str, spec: PeerSpec) -> dict[tuple, _Rule]:
    norm, q, k, v, out = (f"{peer}.{name}" for name in _LAYOUTS[spec.peer].attn)
    if spec.fused_qkv:
        qkv = _linear(ours + ("qkv",), f"{peer}.{_LAYOUTS[spec.peer].qkv}")
    else:
        qkv = {
            ours + ("qkv", "kernel"): _Rule(
                tuple(f"{p}.weight" for p in (q, k, v)),
                lambda a: np.concatenate([w.T for w in a], axis=1),  # 3 x [C, C] -> [C, 3C]
                lambda s: (s[1] // 3, s[0]),
            ),
            ours + ("qkv", "bias"): _Rule(
                tuple(f"{p}.bias" for p in (q, k, v)), np.concatenate, lambda s: (s[0] // 3,)
            ),
        }
    return _norm(ours + ("norm",), norm) | qkv | _linear(ours + ("out",), out)


def _rules(spec: PeerSpec) -> dict[tuple, _Rule]:
    """Every gensynth parameter path the spec's network can have, mapped to its rule."""
    lay, kw = _LAYOUTS[spec.peer], spec.kwargs
    levels, n = len(kw["channel_mult"]), kw["num_res_blocks"]
    rules = {
        ("time_embed", "fc1", "kernel"): _time_in_kernel(f"{lay.time_fc[0]}.weight", spec.sin_first),
        ("time_embed", "fc1", "bias"): _copy(f"{lay.time_fc[0]}.bias"),
        ("class_embed", "embedding"): _class_table(f"{lay.class_embed}.weight"),
    }
    rules |= _linear(("time_embed", "fc2"), lay.time_fc[1]) | _conv(("stem",), lay.stem)
    for level in range(levels):
        down = lay.down.format(level)
        for j in range(n):
            rules |= _res(("down", level * n + j, "res"), f"{down}.resnets.{j}", lay)
            rules |= _attn(("down", level * n + j, "self_attn"), f"{down}.attentions.{j}", spec)
        rules |= _conv(("downsample", level, "conv"), f"{down}.{lay.downsample}")
    rules |= _res(("mid", "res"), lay.mid[0], lay) | _attn(("mid", "self_attn"), lay.mid[1], spec)
    rules |= _res(("mid_out",), lay.mid[2], lay)
    for i in range(levels):
        up = lay.up.format(i)
        for j in range(n + 1):
            rules |= _res(("up", i * (n + 1) + j, "res"), f"{up}.resnets.{j}", lay)
            rules |= _attn(("up", i * (n + 1) + j, "self_attn"), f"{up}.attentions.{j}", spec)
        rules |= _conv(("upsample", i, "conv"), f"{up}.{lay.upsample}")
    return rules | _norm(("head_norm",), lay.head[0]) | _conv(("head_conv",), lay.head[1])


def _to_numpy(key: str, value) -> np.ndarray:
    """A state-dict value (NumPy array or torch tensor) as a float32 NumPy array."""
    if hasattr(value, "detach"):  # a torch tensor, converted without importing torch
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        value = value.numpy()
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"state key {key!r} must hold floating-point weights, got dtype {array.dtype}")
    return array.astype(np.float32)


def _unet_from_state(state: Mapping[str, Any], spec: PeerSpec, peer: str, dtype) -> UNet:
    graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: UNet(**spec.kwargs, dtype=dtype, rngs=nnx.Rngs(0))),
                                       nnx.Param, ...)  # fmt: skip
    rules = _rules(spec)
    flat = list(nnx.to_flat_state(params))
    needed = [(path, variable, rules[path]) for path, variable in flat]
    used = {key for _, _, rule in needed for key in rule.keys}
    missing = sorted(used - set(state))
    if missing:
        raise ValueError(f"{peer} state is missing {len(missing)} key(s) this config needs: {missing[:8]}")
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise ValueError(
            f"{peer} state has {len(unexpected)} key(s) this config does not use: {unexpected[:8]} "
            "(does the config match the weights?)"
        )
    arrays = {key: _to_numpy(key, state[key]) for key in used}
    filled = []
    for path, variable, rule in needed:
        shape = tuple(variable.get_value().shape)
        expected = rule.peer_shape(shape)
        for key in rule.keys:
            if arrays[key].shape != expected:
                raise ValueError(
                    f"{peer} state key {key!r} has shape {arrays[key].shape}, expected {expected} for this config"
                )
        filled.append((path, variable.replace(jnp.asarray(rule.convert([arrays[k] for k in rule.keys])))))
    return nnx.merge(graphdef, nnx.from_flat_state(filled), rest)


def unet_from_monai_state(state: Mapping[str, Any], config: Mapping[str, Any], *, dtype=jnp.float32) -> UNet:
    """Builds the `UNet` equal to a MONAI `DiffusionModelUNet(**config)` with weights `state`.

    Args:
      state: the MONAI model's `state_dict()`: key -> NumPy array or torch tensor.
      config: MONAI constructor arguments (see `monai_unet_kwargs`).
      dtype: compute dtype of the returned network; parameters are float32.

    Returns:
      A `UNet` taking `[B, *S, C]` channels-last inputs and `t` `[B]` (MONAI's `timesteps`).
      A class-conditional net gets the extra null label `num_class_embeds` with a zero embedding.

    Raises:
      ValueError: on an unsupported config, missing or unexpected keys, or a shape mismatch,
        naming the key.
    """
    return _unet_from_state(state, monai_spec(config), "MONAI", dtype)


def unet_from_diffusers_state(state: Mapping[str, Any], config: Mapping[str, Any], *, dtype=jnp.float32) -> UNet:
    """Builds the `UNet` equal to a diffusers `UNet2DModel(**config)` with weights `state`.

    Args:
      state: the diffusers model's `state_dict()`: key -> NumPy array or torch tensor.
      config: `UNet2DModel` config entries (see `diffusers_unet_kwargs`).
      dtype: compute dtype of the returned network; parameters are float32.

    Returns:
      A `UNet` taking `[B, H, W, C]` channels-last inputs and `t` `[B]`.

    Raises:
      ValueError: on an unsupported config, missing or unexpected keys, or a shape mismatch,
        naming the key.
    """
    return _unet_from_state(state, diffusers_spec(config), "diffusers", dtype)


def _read_state(path: Path) -> dict[str, Any]:
    """Reads safetensors without torch; a pickled torch state dict only with `weights_only=True`."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(path)
    try:
        import torch
    except ImportError as err:
        raise ValueError(f"{path}: reading a torch checkpoint needs torch; convert it to .safetensors") from err
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor), got {type(state).__name__}")
    return dict(state)


def load_peer_unet(
    source: str | Path | Mapping[str, Any],
    *,
    peer: str,
    config: Mapping[str, Any] | None = None,
    dtype=jnp.float32,
) -> UNet:
    """Loads a U-Net trained with MONAI or diffusers as a gensynth `UNet`.

    Args:
      source: the weights: a `.safetensors` file (read without torch), a torch state-dict file
        (`.pt`, `.pth`, `.bin`, `.ckpt`; needs torch, loaded with `weights_only=True`), a diffusers
        model folder (`config.json` + `diffusion_pytorch_model.safetensors`, as `save_pretrained`
        writes), or a mapping key -> array or tensor.
      peer: "monai" or "diffusers".
      config: the peer's constructor arguments; required for MONAI, read from the folder's
        `config.json` for a diffusers folder when omitted.
      dtype: compute dtype of the returned network; parameters are float32.

    Returns:
      The `UNet`; `net(x, t)` with `x` `[B, *S, C]` equals the peer's output on `x` moved to
      channels-first, to float32 rounding.

    Raises:
      FileNotFoundError: if `source` is a path that does not exist.
      ValueError: on an unknown peer, a missing config, an unsupported config, missing or
        unexpected keys or a shape mismatch (naming the key).

    >>> state = {}  # e.g. safetensors.numpy.load_file("unet.safetensors")
    >>> load_peer_unet(state, peer="monai", config={"spatial_dims": 2, "in_channels": 1,
    ...                "out_channels": 1, "channels": (8, 16), "attention_levels": (False, True),
    ...                "num_res_blocks": 1, "norm_num_groups": 4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: MONAI state is missing ... key(s) this config needs: ...
    """
    if peer not in PEERS:
        raise ValueError(f"peer must be one of {PEERS}, got {peer!r}")
    if isinstance(source, Mapping):
        state = source
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such weights file or folder")
        if path.is_dir():
            if config is None and (path / "config.json").is_file():
                config = json.loads((path / "config.json").read_text())
            path = path / _DIFFUSERS_WEIGHTS
            if not path.is_file():
                raise FileNotFoundError(f"{path}: a weights folder must hold {_DIFFUSERS_WEIGHTS}")
        state = _read_state(path)
    if config is None:
        raise ValueError(f"config (the {peer} constructor arguments) is required for this source")
    build = unet_from_monai_state if peer == "monai" else unet_from_diffusers_state
    return build(state, config, dtype=dtype)
