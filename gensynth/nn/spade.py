"""Spatially adaptive group normalisation (SPADE-GN): a label map modulates the normalised features.

The semantic layout enters through per-pixel gamma/beta predicted by a small conv net from the label
map resized (nearest) to the feature map, after a group norm without its own affine map. Optionally a
time embedding then scale-shifts the result per channel, as in the decoder ResBlocks of SDM / NASDM.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.nn.conv import conv
from gensynth.nn.norms import CONDITIONING_MODES, group_norm


def resize_nearest(label_map: jax.Array, spatial_shape: tuple[int, ...]) -> jax.Array:
    """Nearest-neighbour resize of `[B, *S, K]` to `[B, *spatial_shape, K]`.

    Output index i along an axis of input size n and output size m reads input index
    `floor(i * n / m)`, PyTorch's `F.interpolate(mode="nearest")` (the SPADE/SDM reference): a
    factor-2 down-sampling keeps the even positions, an up-sampling repeats each value.

    Args:
      label_map: `[B, *S, K]` map (any dtype).
      spatial_shape: target spatial sizes, `len(S)` positive ints.

    Returns:
      `[B, *spatial_shape, K]` in the dtype of `label_map`.

    >>> resize_nearest(jnp.arange(4.0).reshape(1, 4, 1, 1), (2, 1))[0, :, 0, 0]
    Array([0., 2.], dtype=float32)
    """
    if len(spatial_shape) != label_map.ndim - 2:
        raise ValueError(f"spatial_shape {spatial_shape} must have one size per spatial axis of {label_map.shape}")
    for axis, (n, m) in enumerate(zip(label_map.shape[1:-1], spatial_shape, strict=True), start=1):
        if n != m:
            label_map = jnp.take(label_map, np.arange(m) * n // m, axis=axis)
    return label_map


class SpadeGroupNorm(nnx.Module):
    """Group norm without affine map, modulated per pixel by a label map (and optionally by time).

    .. math::
      \\mathrm{SPADE\\_GN}(h, y) = \\mathrm{GN}(h) \\odot (1 + \\gamma(y')) + \\beta(y'),\\quad
      y' = \\mathrm{resize\\_nearest}(y, \\mathrm{shape}(h)),\\quad
      [\\gamma, \\beta] = \\mathrm{conv}_{3}(\\mathrm{ReLU}(\\mathrm{conv}_{3}(y', \\mathrm{hidden})), C)

    with h = `h`, y = `label_map`. When built with `emb_dim`, the time embedding `emb` conditions the
    result like `AdaGroupNorm`: `SPADE_GN(h, y) * (1 + scale) + shift` with `(scale, shift) =
    Linear(SiLU(emb))` ("scale_shift", SDM's `SDMResBlock`), or `SPADE_GN(h + Linear(SiLU(emb)), y)`
    ("additive"). The 3x3(x3) convs use zero padding, so a spatially constant label map gives
    constant gamma/beta except within 2 pixels of the border.

    Args:
      num_channels: channels C of `h`.
      label_channels: channels K of the label map (e.g. one-hot classes + an edge map).
      spatial_dims: 2 for `[B, H, W, C]`, 3 for `[B, D, H, W, C]`.
      groups: number of groups G; must divide C.
      hidden: width of the shared conv (SPADE / SDM: 128).
      emb_dim: width E of a time embedding, or None for no time conditioning.
      mode: "scale_shift" or "additive" (used only with `emb_dim`).
      eps: added to the variance.
      zero_init: start the gamma/beta convs at zero (kernel and bias), so the layer begins as plain
        `GN(h)` whatever the label map (SDM initialises them like any conv: False).
      dtype: compute dtype of the convs; parameters are float32.
      rngs: `params` stream.

    Raises:
      ValueError: if `groups` does not divide C, `mode` is unknown or a size is not positive.

    References:
      Park et al., "Semantic Image Synthesis with Spatially-Adaptive Normalization", CVPR 2019, Eq. 1;
      Wang et al., "Semantic Image Synthesis via Diffusion Models" (SDM), 2022; book ch. 2, Eq. 2.31.

    >>> norm = SpadeGroupNorm(8, 3, spatial_dims=2, groups=4, hidden=16, rngs=nnx.Rngs(0))
    >>> norm(jnp.ones((1, 4, 4, 8)), jnp.zeros((1, 16, 16, 3))).shape
    (1, 4, 4, 8)
    """

    def __init__(
        self,
        num_channels: int,
        label_channels: int,
        *,
        spatial_dims: int,
        groups: int,
        hidden: int = 128,
        emb_dim: int | None = None,
        mode: str = "scale_shift",
        eps: float = 1e-5,
        zero_init: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_channels % groups != 0:
            raise ValueError(f"groups={groups} must divide num_channels={num_channels}")
        if label_channels < 1 or hidden < 1:
            raise ValueError(f"label_channels and hidden must be >= 1, got {label_channels} and {hidden}")
        if mode not in CONDITIONING_MODES:
            raise ValueError(f"mode must be one of {CONDITIONING_MODES}, got {mode!r}")
        self.num_channels = num_channels
        self.label_channels = label_channels
        self.groups = groups
        self.eps = eps
        self.mode = mode
        kw = {"spatial_dims": spatial_dims, "dtype": dtype, "rngs": rngs}
        self.shared = conv(label_channels, hidden, **kw)
        self.gamma = conv(hidden, num_channels, zero_init=zero_init, **kw)
        self.beta = conv(hidden, num_channels, zero_init=zero_init, **kw)
        if emb_dim is None:
            self.emb_proj = None
        else:
            width = 2 * num_channels if mode == "scale_shift" else num_channels
            self.emb_proj = nnx.Linear(emb_dim, width, dtype=dtype, rngs=rngs)

    def modulation(self, label_map: jax.Array, spatial_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
        """`(gamma, beta)`, each `[B, *spatial_shape, C]`, from `label_map` `[B, *S', K]`."""
        if label_map.ndim != len(spatial_shape) + 2 or label_map.shape[-1] != self.label_channels:
            raise ValueError(
                f"label_map must have shape [B, *spatial ({len(spatial_shape)} axes), {self.label_channels}], "
                f"got {label_map.shape}"
            )
        y = resize_nearest(label_map, spatial_shape).astype(self.shared.dtype)
        actv = nnx.relu(self.shared(y))
        return self.gamma(actv), self.beta(actv)

    def __call__(self, h: jax.Array, label_map: jax.Array, emb: jax.Array | None = None) -> jax.Array:
        """Normalises `h` `[B, *S, C]` under `label_map` `[B, *S', K]` (any spatial size; resized
        nearest) and, iff built with `emb_dim`, the embedding `emb` `[B, E]`; returns `[B, *S, C]`
        in the dtype of `h`. Statistics and modulation are computed in float32."""
        if (emb is None) != (self.emb_proj is None):
            raise ValueError("emb is required iff the layer was built with emb_dim")
        if label_map.shape[0] != h.shape[0]:
            raise ValueError(f"label_map batch {label_map.shape[0]} does not match h batch {h.shape[0]}")
        bshape = (h.shape[0],) + (1,) * (h.ndim - 2) + (h.shape[-1],)
        cond = None if emb is None else self.emb_proj(nnx.silu(emb)).astype(jnp.float32)  # [B, 2C] or [B, C]
        if cond is not None and self.mode == "additive":
            h = h + cond.astype(h.dtype).reshape(bshape)
        ones, zeros = jnp.ones((self.num_channels,), jnp.float32), jnp.zeros((self.num_channels,), jnp.float32)
        out = group_norm(h.astype(jnp.float32), groups=self.groups, scale=ones, bias=zeros, eps=self.eps)
        gamma, beta = self.modulation(label_map, h.shape[1:-1])
        out = out * (1 + gamma.astype(jnp.float32)) + beta.astype(jnp.float32)
        if cond is not None and self.mode == "scale_shift":
            scale, shift = jnp.split(cond, 2, axis=-1)  # [B, C] each
            out = out * (1 + scale.reshape(bshape)) + shift.reshape(bshape)
        return out.astype(h.dtype)
