"""MONAI's and diffusers' U-Net constructor arguments, translated into `gensynth.models.UNet` arguments.

MONAI's `DiffusionModelUNet` (self-attention only: `with_conditioning=False`) and diffusers'
`UNet2DModel` (`DownBlock2D`/`AttnDownBlock2D` levels, conv down/up-sampling) are the same
network as `UNet` with additive time conditioning: a sinusoidal time embedding (cosines first)
and a two-layer MLP to `4 * channels[0]`, per level `num_res_blocks` ResBlocks (GN, SiLU, conv3,
`+ Linear(SiLU(emb))`, GN, SiLU, conv3, 1x1 skip when the width changes), each followed by
residual GN + multi-head self-attention at attention levels, a stride-2 conv between levels, a
ResBlock-attention-ResBlock middle, `num_res_blocks + 1` ResBlocks per decoder level on the
concatenation with the matching encoder activation, nearest-x2 + conv up-sampling, and a
GN-SiLU-conv head. They differ only in the GroupNorm epsilon (MONAI 1e-6, diffusers 1e-5) and in
diffusers' options (scale-shift conditioning, sin-first or shifted embeddings), all of which
`UNet` expresses. A setting it cannot express is refused, naming the argument.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

_REQUIRED = object()  # marks a constructor argument without a default

# MONAI `DiffusionModelUNet.__init__` arguments and their defaults (MONAI 1.4-1.6).
_MONAI_DEFAULTS: dict[str, Any] = {
    "spatial_dims": _REQUIRED,
    "in_channels": _REQUIRED,
    "out_channels": _REQUIRED,
    "num_res_blocks": (2, 2, 2, 2),
    "channels": (32, 64, 64, 64),
    "attention_levels": (False, False, True, True),
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "resblock_updown": False,
    "num_head_channels": 8,
    "with_conditioning": False,
    "transformer_num_layers": 1,
    "cross_attention_dim": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "dropout_cattn": 0.0,
    "include_fc": True,
    "use_combined_linear": False,
    "use_flash_attention": False,
}

# diffusers `UNet2DModel` config entries and their defaults (diffusers 0.2x-0.4x).
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}
_DIFFUSERS_BLOCKS = {"DownBlock2D": False, "AttnDownBlock2D": True, "UpBlock2D": False, "AttnUpBlock2D": True}


@dataclasses.dataclass(frozen=True)
class PeerSpec:
    """A peer network as `UNet` arguments plus what the weight mapping needs to know."""

    peer: str  # "monai" or "diffusers"
    kwargs: dict[str, Any]  # UNet keyword arguments (no rngs, no dtype)
    fused_qkv: bool  # MONAI use_combined_linear: one Q/K/V weight instead of three
    sin_first: bool  # diffusers flip_sin_to_cos=False: embedding input is [sin, cos]


def _resolve(config: Mapping[str, Any], defaults: dict[str, Any], peer: str) -> dict[str, Any]:
    """The peer's arguments with its defaults filled in; metadata keys (leading `_`) are dropped."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of {peer} constructor arguments, got {type(config).__name__}")
    given = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"config: unknown {peer} argument(s) {unknown}; known: {sorted(defaults)}")
    cfg = defaults | given
    missing = sorted(k for k, v in cfg.items() if v is _REQUIRED)
    if missing:
        raise ValueError(f"config: the {peer} argument(s) {missing} are required")
    return cfg


def _require(cfg: dict[str, Any], key: str, allowed: tuple, peer: str) -> None:
    if cfg[key] not in allowed:
        raise ValueError(
            f"config: {peer} {key}={cfg[key]!r} cannot be reproduced by gensynth's UNet (supported: {list(allowed)})"
        )


def _per_level(value, levels: int, key: str, peer: str) -> list:
    values = [value] * levels if isinstance(value, int) or value is None else list(value)
    if len(values) != levels:
        raise ValueError(f"config: {peer} {key} must have one entry per level ({levels}), got {value!r}")
    return values


def _unet_kwargs(
    peer: str, *, widths_key: str, widths, num_res_blocks, attention: list[bool], head_dims: list[int],
    **fixed: Any,
) -> dict[str, Any]:  # fmt: skip
    """Common translation: level widths -> (channels, channel_mult), per-level values -> single ones."""
    widths = [int(w) for w in widths]
    if not widths or any(w <= 0 or w % widths[0] for w in widths):
        raise ValueError(f"config: {peer} {widths_key} must be positive multiples of its first entry, got {widths}")
    blocks = set(_per_level(num_res_blocks, len(widths), "num_res_blocks", peer))
    if len(blocks) != 1:
        raise ValueError(f"config: {peer} needs the same number of res blocks on every level, got {num_res_blocks}")
    if len(set(head_dims)) != 1:
        raise ValueError(
            f"config: {peer} attention head widths {head_dims} (attention levels, then the middle block) must all "
            "be equal for gensynth's single head_dim"
        )
    return {
        "channels": widths[0],
        "channel_mult": tuple(w // widths[0] for w in widths),
        "num_res_blocks": blocks.pop(),
        "attention_levels": tuple(i for i, a in enumerate(attention) if a),
        "head_dim": head_dims[0],
        **fixed,
    }


def monai_spec(config: Mapping[str, Any]) -> PeerSpec:
    """MONAI constructor arguments as a `PeerSpec`; see `monai_unet_kwargs`."""
    peer = "MONAI DiffusionModelUNet"
    cfg = _resolve(config, _MONAI_DEFAULTS, peer)
    for key, allowed in [("resblock_updown", (False,)), ("with_conditioning", (False,)), ("include_fc", (True,))]:
        _require(cfg, key, allowed, peer)
    levels = len(cfg["channels"])
    attention = [bool(a) for a in _per_level(cfg["attention_levels"], levels, "attention_levels", peer)]
    heads = _per_level(cfg["num_head_channels"], levels, "num_head_channels", peer)
    kwargs = _unet_kwargs(
        peer, widths_key="channels", widths=cfg["channels"], num_res_blocks=cfg["num_res_blocks"], attention=attention,
        head_dims=[heads[i] for i in range(levels) if attention[i]] + [heads[-1]],
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"], spatial_dims=cfg["spatial_dims"],
        num_classes=cfg["num_class_embeds"], groups=cfg["norm_num_groups"], norm_eps=cfg["norm_eps"],
        time_conditioning="additive",
    )  # fmt: skip
    return PeerSpec("monai", kwargs, fused_qkv=bool(cfg["use_combined_linear"]), sin_first=False)


def diffusers_spec(config: Mapping[str, Any]) -> PeerSpec:
    """diffusers config entries as a `PeerSpec`; see `diffusers_unet_kwargs`."""
    peer = "diffusers UNet2DModel"
    cfg = _resolve(config, _DIFFUSERS_DEFAULTS, peer)
    for key, allowed in [
        ("center_input_sample", (False,)), ("time_embedding_type", ("positional",)),
        ("mid_block_type", ("UNetMidBlock2D",)), ("add_attention", (True,)), ("mid_block_scale_factor", (1,)),
        ("downsample_padding", (1,)), ("downsample_type", ("conv",)), ("upsample_type", ("conv",)),
        ("act_fn", ("silu", "swish")), ("class_embed_type", (None,)),
        ("resnet_time_scale_shift", ("default", "scale_shift")), ("attn_norm_num_groups", (None, cfg["norm_num_groups"])),
    ]:  # fmt: skip
        _require(cfg, key, allowed, peer)
    if cfg["resnet_time_scale_shift"] == "scale_shift" and cfg["attn_norm_num_groups"] is None:
        raise ValueError(
            f"config: {peer} with resnet_time_scale_shift='scale_shift' and attn_norm_num_groups=None has no "
            "GroupNorm before its middle attention, which gensynth's UNet cannot reproduce"
        )
    widths = list(cfg["block_out_channels"])
    _require(cfg, "time_embedding_dim", (None, 4 * widths[0]), peer)
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    for key, blocks in [("down_block_types", down), ("up_block_types", up)]:
        if len(blocks) != len(widths) or any(b not in _DIFFUSERS_BLOCKS for b in blocks):
            raise ValueError(f"config: {peer} {key} must be {len(widths)} of {sorted(_DIFFUSERS_BLOCKS)}, got {blocks}")
    attention = [_DIFFUSERS_BLOCKS[b] for b in down]
    if [_DIFFUSERS_BLOCKS[b] for b in reversed(up)] != attention:
        raise ValueError(f"config: {peer} up_block_types {up} must mirror down_block_types {down} (attention levels)")
    head = cfg["attention_head_dim"]
    kwargs = _unet_kwargs(
        peer, widths_key="block_out_channels", widths=widths, num_res_blocks=cfg["layers_per_block"],
        attention=attention, head_dims=[head or w for w, a in zip(widths, attention) if a] + [head or widths[-1]],
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"], spatial_dims=2,
        num_classes=cfg["num_class_embeds"], groups=cfg["norm_num_groups"], norm_eps=cfg["norm_eps"],
        time_conditioning="additive" if cfg["resnet_time_scale_shift"] == "default" else "scale_shift",
        freq_shift=float(cfg["freq_shift"]), dropout=cfg["dropout"],
    )  # fmt: skip
    return PeerSpec("diffusers", kwargs, fused_qkv=False, sin_first=not cfg["flip_sin_to_cos"])


def monai_unet_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """`UNet` keyword arguments that build MONAI's `DiffusionModelUNet(**config)` exactly.

    Args:
      config: MONAI constructor arguments (`spatial_dims`, `in_channels`, `out_channels` required;
        the rest default as in MONAI). `channels` must be multiples of `channels[0]`, the same
        number of res blocks on every level and one head width for all attention layers.

    Returns:
      Keyword arguments for `UNet` (add `rngs` and, optionally, `dtype`).

    Raises:
      ValueError: on an unknown argument or a setting gensynth cannot reproduce (cross-attention
        conditioning, `resblock_updown`, `include_fc=False`, ...), naming it.

    >>> kw = monai_unet_kwargs({"spatial_dims": 2, "in_channels": 1, "out_channels": 1,
    ...                         "channels": (64, 128, 128, 256), "num_head_channels": 32})
    >>> kw["channel_mult"], kw["attention_levels"], kw["norm_eps"], kw["time_conditioning"]
    ((1, 2, 2, 4), (2, 3), 1e-06, 'additive')

    References:
      Pinaya et al., "Generative AI for Medical Imaging: extending the MONAI Framework", 2023.
    """
    return dict(monai_spec(config).kwargs)


def diffusers_unet_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """`UNet` keyword arguments that build diffusers' `UNet2DModel(**config)` exactly.

    Args:
      config: `UNet2DModel` config entries, e.g. the parsed `config.json` of a saved model (keys
        starting with `_` are ignored; missing keys default as in diffusers).

    Returns:
      Keyword arguments for `UNet` (add `rngs` and, optionally, `dtype`).

    Raises:
      ValueError: on an unknown entry or a setting gensynth cannot reproduce (other block types,
        Fourier or learned time embeddings, ResNet up/down-sampling, ...), naming it.

    >>> kw = diffusers_unet_kwargs({"block_out_channels": (64, 128, 128, 256), "in_channels": 1,
    ...                             "out_channels": 1, "attention_head_dim": 32})
    >>> kw["channel_mult"], kw["attention_levels"], kw["norm_eps"], kw["time_conditioning"]
    ((1, 2, 2, 4), (1, 2, 3), 1e-05, 'additive')

    References:
      von Platen et al., "Diffusers: State-of-the-art diffusion models", 2022.
    """
    return dict(diffusers_spec(config).kwargs)
