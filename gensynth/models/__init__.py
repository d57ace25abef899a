"""Networks as flax.nnx modules."""

from gensynth.models.convert import (
    PEERS,
    load_peer_unet,
    unet_from_diffusers_state,
    unet_from_monai_state,
)
from gensynth.models.params import count_params
from gensynth.models.peer_config import diffusers_unet_kwargs, monai_unet_kwargs
from gensynth.models.unet import UNet

__all__ = [
    "PEERS",
    "UNet",
    "count_params",
    "diffusers_unet_kwargs",
    "load_peer_unet",
    "monai_unet_kwargs",
    "unet_from_diffusers_state",
    "unet_from_monai_state",
]
