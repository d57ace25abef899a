"""Building blocks: 2D/3D convolutions, group norms, attention, time embeddings, residual blocks."""

from gensynth.nn.attention import CrossAttention, SelfAttention
from gensynth.nn.conv import Downsample, Upsample, conv
from gensynth.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from gensynth.nn.norms import AdaGroupNorm, GroupNorm, group_norm
from gensynth.nn.resblock import ResBlock
from gensynth.nn.spade import SpadeGroupNorm, resize_nearest
from gensynth.nn.wavelets import (
    BANDS_2D,
    BANDS_3D,
    haar_dwt2,
    haar_dwt3,
    haar_idwt2,
    haar_idwt3,
)

__all__ = [
    "BANDS_2D",
    "BANDS_3D",
    "AdaGroupNorm",
    "CrossAttention",
    "Downsample",
    "GroupNorm",
    "ResBlock",
    "SelfAttention",
    "SpadeGroupNorm",
    "TimestepEmbedding",
    "Upsample",
    "conv",
    "group_norm",
    "haar_dwt2",
    "haar_dwt3",
    "haar_idwt2",
    "haar_idwt3",
    "resize_nearest",
    "sinusoidal_embedding",
]
