"""Networks as flax.nnx modules."""

from gensynth.models.conditional import ConditionalDenoiser, VectorTokenizer
from gensynth.models.convert import (
    PEERS,
    load_peer_unet,
    unet_from_diffusers_state,
    unet_from_monai_state,
)
from gensynth.models.params import count_params
from gensynth.models.peer_config import diffusers_unet_kwargs, monai_unet_kwargs
from gensynth.models.text_encoder import (
    TextEncoder,
    load_text_encoder_weights,
    save_text_encoder_weights,
)
from gensynth.models.tokenizer import Tokenizer
from gensynth.models.unet import UNet

__all__ = [
    "PEERS",
    "ConditionalDenoiser",
    "TextEncoder",
    "Tokenizer",
    "UNet",
    "VectorTokenizer",
    "count_params",
    "diffusers_unet_kwargs",
    "load_peer_unet",
    "load_text_encoder_weights",
    "monai_unet_kwargs",
    "save_text_encoder_weights",
    "unet_from_diffusers_state",
    "unet_from_monai_state",
]
