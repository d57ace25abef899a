"""Image layouts: how a solver's network-side state maps to the operator's image domain.

A solver keeps its diffusion state in the layout the denoiser expects ("net layout", real
``[B', ...]``) and converts it to the operator's domain ("image layout", ``[B, *image_shape]``,
float32 or complex64) around every data-consistency step. Conversions act on whole batches.

- :data:`REAL`: identity (the denoiser takes ``[B, *image_shape]`` real arrays).
- :data:`CHANNEL`: real images ``[B, H, W]`` <-> network ``[B, H, W, 1]`` (channels-last U-Net).
- :data:`COMPLEX_CHANNELS`: complex ``[B, H, W]`` <-> 2-channel real/imag network
  ``[B, H, W, 2]`` (spec ch. 7, Sect. 5.1 prior (b)).
- :data:`COMPLEX_BATCH`: complex ``[B, ...]`` <-> real ``[2B, ...]`` with the real parts first
  and the imaginary parts second: one real-valued (magnitude-trained) network runs two
  parallel reverse processes that couple only through data consistency (Sect. 5.1 prior (a)).

Layouts are module-level constants, so they hash by identity as static ``jit`` arguments.
Solvers take ``layout=None`` to mean :func:`default_layout`: a channels-last U-Net with one real
channel (:data:`CHANNEL`) for real images, two real/imag channels for complex ones.

References:
  Chung & Ye 2022, "Score-based diffusion models for accelerated MRI" (score-MRI), Sect. 3.2;
  spec ch. 7, Sect. 5.1 and 5.2.4 ("network on 2 real channels, CG on the complex image").
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ImageLayout:
    """A pair of batch conversions between net layout and image layout.

    Attributes:
      name: short name for messages.
      to_image: ``x_net [B', ...] -> x [B, *image_shape]``.
      to_net: ``x [B, *image_shape] -> x_net [B', ...]`` (inverse of ``to_image``).
    """

    name: str
    to_image: Callable[[jax.Array], jax.Array]
    to_net: Callable[[jax.Array], jax.Array]


def _identity(x: jax.Array) -> jax.Array:
    return x


def _drop_channel(x: jax.Array) -> jax.Array:
    return x[..., 0]


def _add_channel(x: jax.Array) -> jax.Array:
    return x[..., None]


def _channels_to_complex(x: jax.Array) -> jax.Array:
    return jax.lax.complex(x[..., 0], x[..., 1])


def _complex_to_channels(z: jax.Array) -> jax.Array:
    return jnp.stack([z.real, z.imag], axis=-1)


def _batch_to_complex(x: jax.Array) -> jax.Array:
    B = x.shape[0] // 2
    return jax.lax.complex(x[:B], x[B:])


def _complex_to_batch(z: jax.Array) -> jax.Array:
    return jnp.concatenate([z.real, z.imag], axis=0)


REAL = ImageLayout("real", _identity, _identity)
CHANNEL = ImageLayout("channel", _drop_channel, _add_channel)
COMPLEX_CHANNELS = ImageLayout("complex_channels", _channels_to_complex, _complex_to_channels)
COMPLEX_BATCH = ImageLayout("complex_batch", _batch_to_complex, _complex_to_batch)


def default_layout(image_dtype: jnp.dtype) -> ImageLayout:
    """:data:`COMPLEX_CHANNELS` for a complex image dtype, else :data:`CHANNEL`."""
    return COMPLEX_CHANNELS if jnp.issubdtype(image_dtype, jnp.complexfloating) else CHANNEL
