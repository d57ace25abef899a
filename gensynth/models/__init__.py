"""Networks as flax.nnx modules."""

from gensynth.models.autoencoder import KLAutoencoder, VQAutoencoder
from gensynth.models.autoencoder_losses import (
    focal_loss,
    kl_divergence,
    l1_loss,
    l2_loss,
    vq_codebook_loss,
    vq_commitment_loss,
)
from gensynth.models.conditional import ConditionalDenoiser, VectorTokenizer
from gensynth.models.convert import (
    PEERS,
    load_peer_unet,
    unet_from_diffusers_state,
    unet_from_monai_state,
)
from gensynth.models.params import count_params
from gensynth.models.patchgan import PatchGAN, receptive_field
from gensynth.models.peer_config import diffusers_unet_kwargs, monai_unet_kwargs
from gensynth.models.perceptual import (
    PerceptualLoss,
    VGGFeatures,
    load_vgg16_features,
    random_feature_net,
)
from gensynth.models.text_encoder import (
    TextEncoder,
    load_text_encoder_weights,
    save_text_encoder_weights,
)
from gensynth.models.tokenizer import Tokenizer
from gensynth.models.unet import REMAT_POLICIES, UNet
from gensynth.models.vector_quantizer import (
    CodebookState,
    VectorQuantizer,
    codebook_perplexity,
    dead_code_mask,
    ema_codebook_update,
    init_codebook_state,
    restart_dead_codes,
    vq_nearest,
)

__all__ = [
    "PEERS",
    "REMAT_POLICIES",
    "CodebookState",
    "ConditionalDenoiser",
    "KLAutoencoder",
    "PatchGAN",
    "PerceptualLoss",
    "TextEncoder",
    "Tokenizer",
    "UNet",
    "VGGFeatures",
    "VQAutoencoder",
    "VectorQuantizer",
    "VectorTokenizer",
    "codebook_perplexity",
    "count_params",
    "dead_code_mask",
    "diffusers_unet_kwargs",
    "ema_codebook_update",
    "focal_loss",
    "init_codebook_state",
    "kl_divergence",
    "l1_loss",
    "l2_loss",
    "load_peer_unet",
    "load_text_encoder_weights",
    "load_vgg16_features",
    "monai_unet_kwargs",
    "random_feature_net",
    "receptive_field",
    "restart_dead_codes",
    "save_text_encoder_weights",
    "unet_from_diffusers_state",
    "unet_from_monai_state",
    "vq_codebook_loss",
    "vq_commitment_loss",
    "vq_nearest",
]
