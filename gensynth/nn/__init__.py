"""Building blocks: 2D/3D convolutions, group norms, attention, time embeddings, residual blocks."""

from gensynth.nn.attention import CrossAttention, SelfAttention
from gensynth.nn.conv import Downsample, Upsample, conv
from gensynth.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from gensynth.nn.norms import AdaGroupNorm, GroupNorm, group_norm
from gensynth.nn.resblock import ResBlock
from gensynth.nn.spade import SpadeGroupNorm, resize_nearest

__all__ = [
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
    "resize_nearest",
    "sinusoidal_embedding",
]
