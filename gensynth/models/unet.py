"""ADM-style denoising U-Net for 2D images and 3D volumes, conditioned on time, class and context."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from gensynth.nn import (
    CrossAttention,
    Downsample,
    GroupNorm,
    ResBlock,
    SelfAttention,
    TimestepEmbedding,
    Upsample,
    conv,
)
from gensynth.nn.norms import CONDITIONING_MODES

# `remat` choices: the jax.checkpoint policy each checkpointed block runs under (True: "nothing_saveable").
REMAT_POLICIES = {
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,  # keep block inputs only, recompute the rest
    "dots_saveable": jax.checkpoint_policies.dots_saveable,  # also keep conv and matmul outputs
    # also keep matmuls without batch dimensions (the Linear layers, not the convs or attention scores)
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class _Stage(nnx.Module):
    """One U-Net stage: a ResBlock, then (at attention levels) self- and cross-attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        *,
        attend: bool,
        spatial_dims: int,
        head_dim: int,
        context_dim: int | None,
        groups: int,
        norm_eps: float,
        time_conditioning: str,
        dropout: float,
        dtype,
        rngs: nnx.Rngs,
        label_channels: int | None = None,
        spade_hidden: int = 128,
    ):
        self.res = ResBlock(
            in_channels, out_channels, emb_dim, spatial_dims=spatial_dims, groups=groups, norm_eps=norm_eps,
            time_conditioning=time_conditioning, dropout=dropout, label_channels=label_channels,
            spade_hidden=spade_hidden, dtype=dtype, rngs=rngs,
        )  # fmt: skip
        attn = {"head_dim": head_dim, "groups": groups, "norm_eps": norm_eps, "dtype": dtype, "rngs": rngs}
        self.self_attn = SelfAttention(out_channels, **attn) if attend else None
        self.cross_attn = CrossAttention(out_channels, context_dim, **attn) if attend and context_dim is not None else None

    def __call__(self, h, emb, context, dropout_key, label_map=None):
        """`h` [B, *S, C_in], `emb` [B, E], `context` [B, L, context_dim] or None, `label_map`
        [B, *S', K] (SPADE stages) or None -> [B, *S, C_out]."""
        h = self.res(h, emb, label_map=label_map, dropout_key=dropout_key)
        if self.self_attn is not None:
            h = self.self_attn(h)
        if self.cross_attn is not None:
            h = self.cross_attn(h, context)
        return h


class UNet(nnx.Module):
    """ADM / improved-DDPM U-Net with scale-shift (or additive) time conditioning, for 2D or 3D inputs.

    Encoder: a 3x3(x3) stem conv, then per level i (width `channels * channel_mult[i]`)
    `num_res_blocks` ResBlocks, each followed by self-attention (and cross-attention when
    `context_dim` is set) if `i in attention_levels`, and a stride-2 conv down-sampling between
    levels. Middle: ResBlock, attention, ResBlock. Decoder: per level, from the lowest resolution
    up, `num_res_blocks + 1` ResBlocks whose input is the concatenation with the matching encoder
    activation (attention as in the encoder), and nearest-x2 + conv up-sampling between levels.
    Head: GN, SiLU, zero-initialised 3x3(x3) conv. The time embedding (sinusoidal of width
    `channels`, then an MLP to `4 * channels`) plus the optional class embedding condition every
    ResBlock through `GN(h) * (1 + scale) + shift`, or through `GN(h + bias)` when
    `time_conditioning="additive"`.

    With `label_channels` (semantic diffusion, SDM / NASDM) the middle and decoder ResBlocks
    normalise with `SpadeGroupNorm` on a label map `[B, *S, K]` given at call time (resized nearest
    to each resolution); the encoder, the attention blocks and the head keep plain group norms, and
    the time embedding still enters by scale-shift (or additively) after the SPADE modulation.

    With `time_conditioning="additive"`, `norm_eps=1e-6` this is MONAI's `DiffusionModelUNet`
    (and with `norm_eps=1e-5` diffusers' `UNet2DModel`) of the same sizes, parameter for parameter:
    `monai_unet_kwargs` / `diffusers_unet_kwargs` build the keyword arguments from a peer's
    configuration and `load_peer_unet` imports its weights.

    Args:
      in_channels: channels of the input image.
      out_channels: channels of the output (e.g. 2 * in_channels when the variance is learned).
      spatial_dims: 2 for `[B, H, W, C]` images, 3 for `[B, D, H, W, C]` volumes.
      channels: base width; level i has `channels * channel_mult[i]` channels.
      channel_mult: width multiplier per resolution level, highest resolution first.
      num_res_blocks: ResBlocks per encoder level (the decoder has one more per level).
      attention_levels: indices into `channel_mult` of the levels with attention.
      head_dim: channels per attention head.
      dropout: dropout rate in the ResBlocks, used only when `__call__` gets a `dropout_key`.
      num_classes: number of classes for class conditioning, or None. The embedding has
        `num_classes + 1` rows; label `num_classes` is the "null" label for classifier-free
        guidance.
      context_dim: width of the cross-attention context tokens, or None for no cross-attention.
      label_channels: channels K of a SPADE label map conditioning the middle and decoder ResBlocks
        (NASDM: 7 one-hot classes + 1 edge map = 8), or None. An all-zero map is the null condition.
      spade_hidden: width of the SPADE layers' shared conv (SDM: 128).
      groups: GroupNorm groups; must divide every level's width.
      norm_eps: epsilon of every GroupNorm (ResBlocks, attention, head).
      time_conditioning: "scale_shift" (ADM's AdaGN) or "additive" (DDPM, MONAI, diffusers); see
        `gensynth.nn.AdaGroupNorm`.
      freq_shift: frequency shift of the sinusoidal time embedding (see
        `gensynth.nn.sinusoidal_embedding`); 1 reproduces the original DDPM embedding.
      remat: rematerialise each ResBlock stage (with its attention) under `nnx.remat` to save
        activation memory in the backward pass (3D volumes): False (off), True (the
        "nothing_saveable" policy) or a key of `REMAT_POLICIES`. Outputs and gradients are
        unchanged; the backward pass recomputes each stage's forward pass. On CPU the saving needs
        `XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false` (XLA's default CPU
        scheduler hoists the recomputation into the forward pass).
      dtype: compute dtype (e.g. bfloat16 on accelerators); parameters are float32 and the output
        is float32.
      rngs: `params` stream for initialisation. The module keeps no random state.

    Raises:
      ValueError: on inconsistent sizes (named in the message).

    References:
      Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021;
      Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021;
      Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022;
      Wang et al., "Semantic Image Synthesis via Diffusion Models" (SDM), 2022.

    >>> net = UNet(1, 1, channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
    ...            head_dim=8, groups=4, rngs=nnx.Rngs(0))
    >>> net(jnp.zeros((2, 8, 8, 1)), jnp.array([0, 999])).shape
    (2, 8, 8, 1)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2, 3),
        head_dim: int = 32,
        dropout: float = 0.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        label_channels: int | None = None,
        spade_hidden: int = 128,
        groups: int = 32,
        norm_eps: float = 1e-5,
        time_conditioning: str = "scale_shift",
        freq_shift: float = 0.0,
        remat: bool | str = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_config(spatial_dims, channels, channel_mult, num_res_blocks, attention_levels, head_dim, dropout,
                      num_classes, context_dim, groups, norm_eps, time_conditioning)  # fmt: skip
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.num_levels = len(channel_mult)
        self.num_res_blocks = num_res_blocks
        self.num_classes = num_classes
        self.context_dim = context_dim
        self.label_channels = label_channels
        self.dtype = dtype
        self.remat = _remat_policy_name(remat)
        emb_dim = 4 * channels
        res = {"groups": groups, "norm_eps": norm_eps, "time_conditioning": time_conditioning, "dropout": dropout}
        stage = {"spatial_dims": spatial_dims, "head_dim": head_dim, "context_dim": context_dim, "dtype": dtype,
                 "rngs": rngs, **res}  # fmt: skip
        if label_channels is not None and label_channels < 1:
            raise ValueError(f"label_channels must be None or >= 1, got {label_channels}")
        spade = {"label_channels": label_channels, "spade_hidden": spade_hidden}  # middle and decoder only

        self.time_embed = TimestepEmbedding(channels, emb_dim, freq_shift=freq_shift, dtype=dtype, rngs=rngs)
        self.class_embed = nnx.Embed(num_classes + 1, emb_dim, dtype=dtype, rngs=rngs) if num_classes is not None else None
        self.stem = conv(in_channels, channels, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs)

        skips = [channels]  # widths of the activations the decoder concatenates, in encoder order
        width = channels
        down, downsample = [], []
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                down.append(_Stage(width, channels * mult, emb_dim, attend=level in attention_levels, **stage))
                width = channels * mult
                skips.append(width)
            if level < self.num_levels - 1:
                downsample.append(Downsample(width, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs))
                skips.append(width)
        self.down = nnx.List(down)
        self.downsample = nnx.List(downsample)

        self.mid = _Stage(width, width, emb_dim, attend=True, **stage, **spade)
        self.mid_out = ResBlock(
            width, width, emb_dim, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs, **res, **spade
        )  # fmt: skip

        up, upsample = [], []
        for level in reversed(range(self.num_levels)):
            for _ in range(num_res_blocks + 1):
                out = channels * channel_mult[level]
                up.append(_Stage(width + skips.pop(), out, emb_dim, attend=level in attention_levels, **stage, **spade))
                width = out
            if level > 0:
                upsample.append(Upsample(width, spatial_dims=spatial_dims, dtype=dtype, rngs=rngs))
        self.up = nnx.List(up)
        self.upsample = nnx.List(upsample)

        self.head_norm = GroupNorm(width, groups=groups, eps=norm_eps, rngs=rngs)
        self.head_conv = conv(width, out_channels, spatial_dims=spatial_dims, zero_init=True, dtype=dtype, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        *,
        y: jax.Array | None = None,
        context: jax.Array | None = None,
        label_map: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """Runs the network.

        Args:
          x: `[B, H, W, C_in]` (2D) or `[B, D, H, W, C_in]` (3D); each spatial size divisible by
            `2 ** (len(channel_mult) - 1)`.
          t: `[B]` diffusion time, integer step or continuous value (embedded sinusoidally).
          y: `[B]` int labels in `0..num_classes` (`num_classes` = null label); required iff the
            net was built with `num_classes`.
          context: `[B, L, context_dim]` cross-attention tokens; required iff the net was built
            with `context_dim`.
          label_map: `[B, *S', label_channels]` SPADE label map at any resolution (usually that of
            `x`); required iff the net was built with `label_channels`.
          dropout_key: typed PRNG key; dropout is active only when it is given.

        Returns:
          `[B, *S, C_out]` float32.

        Raises:
          ValueError: if an input's shape or presence does not match the configuration.
        """
        self._check_inputs(x, t, y, context, label_map)
        emb = self.time_embed(t)  # [B, E]
        if self.class_embed is not None:
            emb = emb + self.class_embed(y)
        if context is not None:
            context = context.astype(self.dtype)

        def key(i):  # one dropout key per ResBlock, numbered in execution order
            return None if dropout_key is None else jax.random.fold_in(dropout_key, i)

        stage_fn = self._checkpointed(lambda stage, *args: stage(*args))
        res_fn = self._checkpointed(lambda res, h, emb, label_map, k: res(h, emb, label_map=label_map, dropout_key=k))
        n = self.num_res_blocks
        h = self.stem(x.astype(self.dtype))
        hs = [h]
        for level in range(self.num_levels):
            for j in range(level * n, (level + 1) * n):
                h = stage_fn(self.down[j], h, emb, context, key(j))
                hs.append(h)
            if level < self.num_levels - 1:
                h = self.downsample[level](h)
                hs.append(h)

        offset = len(self.down)
        h = stage_fn(self.mid, h, emb, context, key(offset), label_map)
        h = res_fn(self.mid_out, h, emb, label_map, key(offset + 1))

        offset += 2
        for i in range(self.num_levels):
            for j in range(i * (n + 1), (i + 1) * (n + 1)):
                joined = jnp.concatenate([h, hs.pop()], axis=-1)
                h = stage_fn(self.up[j], joined, emb, context, key(offset + j), label_map)
            if i < self.num_levels - 1:
                h = self.upsample[i](h)

        h = self.head_conv(nnx.silu(self.head_norm(h)))
        return h.astype(jnp.float32)

    def _checkpointed(self, block_fn):
        """`block_fn(block, *arrays)` under `nnx.remat` with the net's policy, or as is without remat."""
        return block_fn if self.remat is None else nnx.remat(block_fn, policy=REMAT_POLICIES[self.remat])

    def _check_inputs(self, x, t, y, context, label_map) -> None:
        d = self.spatial_dims
        if x.ndim != d + 2:
            raise ValueError(f"x must have rank {d + 2} ([B, *spatial, C]) for spatial_dims={d}, got shape {x.shape}")
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels (last axis), got shape {x.shape}")
        factor = 2 ** (self.num_levels - 1)
        if any(n % factor for n in x.shape[1:-1]):
            raise ValueError(f"x spatial sizes must be divisible by {factor} (2**(levels-1)), got shape {x.shape}")
        batch = x.shape[0]
        if jnp.shape(t) != (batch,):
            raise ValueError(f"t must have shape ({batch},) to match x, got {jnp.shape(t)}")
        if (y is None) != (self.num_classes is None):
            expected = "required (the net has num_classes)" if y is None else "not accepted (num_classes is None)"
            raise ValueError(f"y (class labels) is {expected}")
        if y is not None and (jnp.shape(y) != (batch,) or not jnp.issubdtype(jnp.result_type(y), jnp.integer)):
            raise ValueError(f"y must be integer labels of shape ({batch},), got {jnp.result_type(y)} {jnp.shape(y)}")
        if (context is None) != (self.context_dim is None):
            expected = "required (the net has context_dim)" if context is None else "not accepted (context_dim is None)"
            raise ValueError(f"context is {expected}")
        if context is not None and (context.ndim != 3 or context.shape[0] != batch or context.shape[2] != self.context_dim):
            raise ValueError(f"context must have shape ({batch}, L, {self.context_dim}), got {context.shape}")
        if (label_map is None) != (self.label_channels is None):
            expected = "required (the net has label_channels)" if label_map is None else "not accepted"
            raise ValueError(f"label_map is {expected}")
        if label_map is not None and (
            label_map.ndim != d + 2 or label_map.shape[0] != batch or label_map.shape[-1] != self.label_channels
        ):
            expected = f"({batch}, *spatial ({d} axes), {self.label_channels})"
            raise ValueError(f"label_map must have shape {expected}, got {label_map.shape}")


def _check_config(
    spatial_dims, channels, channel_mult, num_res_blocks, attention_levels, head_dim, dropout, num_classes,
    context_dim, groups, norm_eps, time_conditioning,
) -> None:  # fmt: skip
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if not channel_mult or any(m <= 0 for m in channel_mult):
        raise ValueError(f"channel_mult must be a non-empty sequence of positive ints, got {channel_mult}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    if any(not 0 <= level < len(channel_mult) for level in attention_levels):
        raise ValueError(f"attention_levels must index channel_mult (0..{len(channel_mult) - 1}), got {attention_levels}")
    widths = [channels * m for m in channel_mult]
    if any(w % groups for w in widths):
        raise ValueError(f"groups={groups} must divide every level width {widths}")
    attended = [widths[i] for i in attention_levels] + [widths[-1]]  # the middle block always attends
    if head_dim <= 0 or any(w % head_dim for w in attended):
        raise ValueError(f"head_dim={head_dim} must divide the widths of attention levels {attended}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be None or >= 1, got {num_classes}")
    if context_dim is not None and context_dim < 1:
        raise ValueError(f"context_dim must be None or >= 1, got {context_dim}")
    if not norm_eps > 0:
        raise ValueError(f"norm_eps must be > 0, got {norm_eps}")
    if time_conditioning not in CONDITIONING_MODES:
        raise ValueError(f"time_conditioning must be one of {CONDITIONING_MODES}, got {time_conditioning!r}")


def _remat_policy_name(remat: bool | str) -> str | None:
    """The `REMAT_POLICIES` key for the `remat` argument (True: "nothing_saveable"), or None for no remat."""
    if remat is False:
        return None
    if remat is True:
        return "nothing_saveable"
    if not isinstance(remat, str) or remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be a bool or one of {tuple(REMAT_POLICIES)}, got {remat!r}")
    return remat
