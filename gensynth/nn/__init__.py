"""Building blocks: 2D/3D convolutions, group norms, attention, time embeddings, residual blocks."""

from gensynth.nn.attention import CrossAttention, SelfAttention
from gensynth.nn.conv import Downsample, Upsample, conv
from gensynth.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from gensynth.nn.norms import AdaGroupNorm, GroupNorm, group_norm
from gensynth.nn.resblock import ResBlock

__all__ = [
    "AdaGroupNorm",
    "CrossAttention",
    "Downsample",
    "GroupNorm",
    "ResBlock",
    "SelfAttention",
    "TimestepEmbedding",
    "Upsample",
    "conv",
    "group_norm",
    "sinusoidal_embedding",
]
