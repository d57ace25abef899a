"""Networks as flax.nnx modules."""

from gensynth.models.params import count_params
from gensynth.models.unet import UNet

__all__ = ["UNet", "count_params"]
