"""WDM: 3D wavelet diffusion on the Haar coefficients of a volume (Friedrich et al. 2024; book ch. 13).

A volume ``x`` ``[B, N, N, N, C]`` in [-1, 1] is mapped by one level of the orthonormal 3D Haar
transform to ``z`` ``[B, N/2, N/2, N/2, 8C]`` (bands LLL..HHH, band-major channels; see
:mod:`gensynth.nn.wavelets`), each band divided by its scale (WDM: LLL by 3, so that
``|LLL| <= 2 sqrt(2) / 3 ~ 0.943``; the detail bands as they are). A 3D U-Net predicts the clean
coefficients ``z0`` from ``z_t`` (``x0``-prediction, MSE averaged over all bands with equal weight)
under DDPM's linear schedule (T = 1000, beta 1e-4..0.02). Sampling runs DDPM (``sigma_t^2 = beta_t``)
or DDIM, clipping each predicted ``z0`` *in image space* (IDWT, clamp to [-1, 1], DWT) and returns
the IDWT of the final coefficients. Because the transform is orthogonal, noise drawn on the
coefficients is the DWT of image-space noise (the official code's way).

WDM's U-Net has additive skips, resampling inside its ResBlocks and no attention; this recipe
uses :class:`gensynth.models.UNet` (concatenated skips, separate down/up convolutions, attention in
the middle block only when ``attention_levels=()``), with the remat and bf16 options of that net.

References:
  Friedrich, Wolleb, Bieder, Durrer & Cattin, "WDM: 3D Wavelet Diffusion Models for
  High-Resolution Medical Image Synthesis", DGM4MICCAI 2024 (arXiv:2402.19043), and its code;
  spec ch. 13, Sects. 2.5-2.6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth import data, diffusion, models, train
from gensynth.data._preprocess import fit_to_size
from gensynth.models.unet import REMAT_POLICIES
from gensynth.nn.wavelets import BANDS_3D, haar_dwt3, haar_idwt3

WDM_BAND_SCALES = (3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # divisor of each band, LLL..HHH (WDM code)
SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class DataConfig:
    size: int = 32  # volume side N in voxels (the MNI152 template padded to a cube and resampled)
    kinds: tuple[str, ...] = ("t1",)  # MNI152 maps stacked as channels: t1, gm, wm
    flip: bool = True  # random left-right flips on device


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 16  # base width of the U-Net (WDM: 64)
    channel_mult: tuple[int, ...] = (1, 2, 2)  # per level on the (N/2)^3 grid (WDM 128^3: 1,2,2,4,4)
    num_res_blocks: int = 1  # res blocks per encoder level (WDM: 2)
    attention_levels: tuple[int, ...] = ()  # levels with attention (WDM: none; the middle block always attends)
    head_dim: int = 32  # channels per attention head
    groups: int = 8  # GroupNorm groups (WDM: 32)
    remat: str = "none"  # none | a key of gensynth.models.unet.REMAT_POLICIES (recompute blocks in backward)


@dataclass(frozen=True)
class DiffusionConfig:
    num_timesteps: int = 1000  # T of the discrete VP process
    band_scales: tuple[float, ...] = WDM_BAND_SCALES  # each band of z is divided by its scale


@dataclass(frozen=True)
class OptimConfig:
    seed: int = 0  # seed of parameters, noise and data order
    batch_size: int = 2  # global batch (WDM: 10 at 128^3)
    num_steps: int = 200  # optimiser steps
    learning_rate: float = 1e-4  # AdamW learning rate (WDM: 1e-5)
    weight_decay: float = 0.0  # AdamW weight decay (WDM: 0)
    clip_norm: float = 1.0  # global gradient-norm clip
    ema_decay: float = 0.999  # EMA of parameters used for sampling
    compute_dtype: str = "float32"  # float32 | bfloat16 (params stay float32)


@dataclass(frozen=True)
class SampleConfig:
    sampler: str = "ddpm"  # ddpm (WDM: 1000 ancestral steps, sigma_t^2 = beta_t) | ddim
    num_steps: int = 1000  # network evaluations (evenly spaced steps when < T)
    eta: float = 0.0  # DDIM eta


@dataclass(frozen=True)
class WDMConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def paper_config() -> WDMConfig:
    """WDM's 128^3 setting (spec ch. 13, Sect. 2.6.2) on this recipe's U-Net: 8 x 64^3 coefficients, base
    width 64, multipliers (1, 2, 2, 4, 4), 2 res blocks, 32 groups, AdamW at 1e-5, batch 10; bf16 and
    remat are left off as in the paper (fp32 on a 40 GB A100). The paper gives no training length:
    set ``train.num_steps``."""
    return WDMConfig(
        data=DataConfig(size=128),
        model=ModelConfig(channels=64, channel_mult=(1, 2, 2, 4, 4), num_res_blocks=2, groups=32),
        train=OptimConfig(batch_size=10, learning_rate=1e-5),
    )


def validate(cfg: WDMConfig) -> WDMConfig:
    """Checks choices and sizes; raises ValueError naming the key."""
    factor = 2 ** len(cfg.model.channel_mult)  # the DWT halves N, each U-Net level but the last too
    if cfg.data.size % factor:
        raise ValueError(f"data.size={cfg.data.size}: must be divisible by {factor} (2 * 2**(levels - 1))")
    if not cfg.data.kinds or any(k not in ("t1", "gm", "wm") for k in cfg.data.kinds):
        raise ValueError(f"data.kinds={cfg.data.kinds}: expected a non-empty tuple of t1, gm, wm")
    if cfg.model.remat != "none" and cfg.model.remat not in REMAT_POLICIES:
        raise ValueError(f"model.remat={cfg.model.remat!r}: expected none or one of {tuple(REMAT_POLICIES)}")
    if len(cfg.diffusion.band_scales) != len(BANDS_3D) or min(cfg.diffusion.band_scales) <= 0:
        raise ValueError(f"diffusion.band_scales={cfg.diffusion.band_scales}: expected 8 positive scales (LLL..HHH)")
    if cfg.train.compute_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"train.compute_dtype={cfg.train.compute_dtype!r}: expected float32 or bfloat16")
    if cfg.sample.sampler not in SAMPLERS:
        raise ValueError(f"sample.sampler={cfg.sample.sampler!r}: expected one of {SAMPLERS}")
    if not 1 <= cfg.sample.num_steps <= cfg.diffusion.num_timesteps:
        raise ValueError(f"sample.num_steps={cfg.sample.num_steps}: expected 1..{cfg.diffusion.num_timesteps}")
    return cfg


# ---------------------------------------------------------------- wavelet coefficients


def _band_divisors(band_scales: Sequence[float], channels: int) -> jax.Array:
    """``[8C]`` divisor of each coefficient channel (band-major: band b covers channels bC..bC+C-1)."""
    if len(band_scales) != len(BANDS_3D):
        raise ValueError(f"band_scales: expected 8 scales (LLL..HHH), got {len(band_scales)}")
    return jnp.repeat(jnp.asarray(band_scales, jnp.float32), channels)


def wdm_encode(x: jax.Array, band_scales: Sequence[float] = WDM_BAND_SCALES) -> jax.Array:
    """Volumes ``[B, N, N, N, C]`` in [-1, 1] -> scaled Haar coefficients ``[B, N/2, N/2, N/2, 8C]``.

    ``z = DWT(x) / s_b`` band by band (``s = band_scales``; WDM: LLL / 3, so ``|LLL| <= 0.943``).

    Raises:
      ValueError: for a non-5D input, odd sizes or not 8 scales.

    >>> z = wdm_encode(jnp.ones((1, 2, 2, 2, 1)))
    >>> round(float(z[0, 0, 0, 0, 0]), 4)  # 2 sqrt(2) / 3
    0.9428
    """
    z = haar_dwt3(x)
    return z / _band_divisors(band_scales, x.shape[-1]).astype(z.dtype)


def wdm_decode(z: jax.Array, band_scales: Sequence[float] = WDM_BAND_SCALES) -> jax.Array:
    """Inverse of :func:`wdm_encode`: ``[B, n, n, n, 8C]`` -> volumes ``[B, 2n, 2n, 2n, C]``.

    Raises:
      ValueError: for a non-5D input, channels not divisible by 8 or not 8 scales.
    """
    if z.ndim != 5 or z.shape[-1] % len(BANDS_3D):
        raise ValueError(f"z: expected [B, n, n, n, 8C] coefficients, got shape {z.shape}")
    return haar_idwt3(z * _band_divisors(band_scales, z.shape[-1] // len(BANDS_3D)).astype(z.dtype))


def clip_in_image_space(z: jax.Array, band_scales: Sequence[float] = WDM_BAND_SCALES) -> jax.Array:
    """``encode(clamp(decode(z), -1, 1))``: WDM's clipping of a predicted ``z0`` ``[B, n, n, n, 8C]``.

    Idempotent, and the identity on coefficients of volumes in [-1, 1].
    """
    return wdm_encode(jnp.clip(wdm_decode(z, band_scales), -1.0, 1.0), band_scales)


# ---------------------------------------------------------------- parts


def mni152_cubes(size: int, kinds: Sequence[str] = ("t1",)) -> np.ndarray:
    """The MNI152 template as one volume ``[1, size, size, size, len(kinds)]`` in [-1, 1].

    Each map (1 mm: 197 x 233 x 189 voxels, RAS) is block-averaged to the coarsest spacing that
    keeps at least 2 * size voxels on its long side, padded with background (-1) to a centred cube
    and resampled (anti-aliased, linear) to ``size^3``; voxel axes stay x, y, z.

    Raises:
      ValueError: for an unknown kind or a non-positive size.
    """
    if size <= 0:
        raise ValueError(f"size: expected a positive int (voxels), got {size}")
    if not kinds:
        raise ValueError("kinds: expected at least one of t1, gm, wm")
    spacing = max(1, max(data.mni152_volume(kinds[0], 1)[0].shape[:3]) // (2 * size))
    volumes = np.concatenate([data.mni152_volume(k, spacing)[0] for k in kinds], axis=-1)  # [X, Y, Z, C]
    cube, _ = fit_to_size(volumes[None], size, fill=-1.0)
    return np.clip(cube, -1.0, 1.0)


def build_model(cfg: WDMConfig, key: jax.Array) -> models.UNet:
    """The 3D U-Net on ``8C`` coefficient channels (``x0``-prediction, as many outputs)."""
    m, channels = cfg.model, len(BANDS_3D) * len(cfg.data.kinds)
    return models.UNet(
        channels, channels, spatial_dims=3, channels=m.channels, channel_mult=m.channel_mult,
        num_res_blocks=m.num_res_blocks, attention_levels=m.attention_levels, head_dim=m.head_dim, groups=m.groups,
        remat=False if m.remat == "none" else m.remat, dtype=jnp.dtype(cfg.train.compute_dtype),
        rngs=nnx.Rngs(params=key),
    )  # fmt: skip


def build_schedule(cfg: DiffusionConfig) -> diffusion.VPSchedule:
    """DDPM's linear schedule (beta 1e-4..0.02) with ``cfg.num_timesteps`` steps."""
    return diffusion.vp_schedule(diffusion.linear_betas(cfg.num_timesteps))


def make_loss_fn(cfg: WDMConfig, schedule: diffusion.VPSchedule):
    """``loss_fn(model, key, batch) -> (loss, metrics)``: flip, encode, ``x0``-prediction MSE.

    ``batch["image"]`` is ``[B, N, N, N, C]`` in [-1, 1]; the MSE is the mean over all coefficients,
    i.e. the equally weighted mean of the 8 per-band MSEs.
    """
    scales = cfg.diffusion.band_scales

    def loss_fn(model, key, batch):
        flip_key, noise_key = jax.random.split(key)
        x = batch["image"]
        if cfg.data.flip:
            flip = jax.random.bernoulli(flip_key, 0.5, (x.shape[0], 1, 1, 1, 1))
            x = jnp.where(flip, x[:, ::-1], x)  # left-right (axis x of the RAS grid)
        return diffusion.diffusion_loss(noise_key, lambda z, t: model(z, t), wdm_encode(x, scales), schedule,
                                        prediction="x0")  # fmt: skip

    return loss_fn


def make_sample_fn(graphdef: nnx.GraphDef, cfg: WDMConfig, schedule: diffusion.VPSchedule):
    """Jitted ``sample_fn(params, key, num) -> [num, N, N, N, C]`` volumes in [-1, 1], one program.

    ``cfg.sample``: DDPM (fixed large variance ``sigma_t^2 = beta_t``) or DDIM (``eta``) over
    ``num_steps`` evenly spaced steps; each predicted ``z0`` goes through :func:`clip_in_image_space`.
    """
    s, scales = cfg.sample, cfg.diffusion.band_scales
    n, channels = cfg.data.size // 2, len(BANDS_3D) * len(cfg.data.kinds)

    @partial(jax.jit, static_argnums=(2,))
    def sample_fn(params, key, num):
        model = nnx.merge(graphdef, params)

        def model_fn(z, t):
            return clip_in_image_space(model(z, t), scales)

        args = (key, model_fn, schedule, (num, n, n, n, channels))
        if s.sampler == "ddpm":
            z = diffusion.ddpm_sample(*args, num_steps=s.num_steps, prediction="x0", variance="fixed_large",
                                      clip_x0=False)  # fmt: skip
        else:
            z = diffusion.ddim_sample(*args, num_steps=s.num_steps, eta=s.eta, prediction="x0", clip_x0=False)
        return wdm_decode(z, scales)

    return sample_fn


def make_optimizer(cfg: OptimConfig):
    """AdamW (no warm-up) after global-norm clipping."""
    return train.make_optimizer(cfg.learning_rate, weight_decay=cfg.weight_decay, clip_norm=cfg.clip_norm)


def init_training(cfg: WDMConfig, mesh: jax.sharding.Mesh | None = None):
    """``(graphdef, state, train_step)``: the step-0 train state and the jitted WDM train step.

    ``train_step(state, {"image": [B, N, N, N, C]}) -> (state, metrics)`` (donates ``state``).
    """
    cfg, t = validate(cfg), cfg.train
    optimizer = make_optimizer(t)
    model_key = jax.random.key(t.seed, impl="rbg")  # threefry init compiles ~3x slower on CPU
    graphdef, state = train.create_train_state(
        jax.random.fold_in(jax.random.key(t.seed), 1), lambda: build_model(cfg, model_key), optimizer, mesh=mesh
    )
    train_step = train.make_train_step(
        graphdef, make_loss_fn(cfg, build_schedule(cfg.diffusion)), optimizer, ema_decay=t.ema_decay,
        compute_dtype=jnp.dtype(t.compute_dtype), mesh=mesh,
    )  # fmt: skip
    return graphdef, state, train_step


@dataclass
class TrainedWDM:
    """What :func:`train_wdm` returns."""

    graphdef: nnx.GraphDef
    state: train.TrainState
    schedule: diffusion.VPSchedule
    losses: np.ndarray  # [num_steps] loss of every step


def train_wdm(
    cfg: WDMConfig,
    volumes: np.ndarray | None = None,
    *,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = False,
) -> TrainedWDM:
    """Trains WDM for ``cfg.train.num_steps`` steps on ``volumes`` (default :func:`mni152_cubes`).

    Args:
      cfg: the configuration (validated here).
      volumes: ``[M, N, N, N, C]`` training volumes in [-1, 1] with ``N = cfg.data.size`` and
        ``C = len(cfg.data.kinds)``; a seeded shuffle per epoch, epochs repeated (a batch may span two).
      mesh: device mesh (default: all devices, ``train.make_mesh()``); the batch is split over it.
      progress: show a progress bar.

    Raises:
      ValueError: for a bad config, volumes of the wrong shape, or a batch the devices do not divide.
    """
    cfg = validate(cfg)
    d, t = cfg.data, cfg.train
    volumes = mni152_cubes(d.size, d.kinds) if volumes is None else np.asarray(volumes, np.float32)
    expected = (d.size,) * 3 + (len(d.kinds),)
    if volumes.ndim != 5 or volumes.shape[1:] != expected:
        raise ValueError(f"volumes: expected [M, {', '.join(map(str, expected))}], got shape {volumes.shape}")
    mesh = train.make_mesh() if mesh is None else mesh
    if t.batch_size % mesh.devices.size:
        raise ValueError(f"train.batch_size={t.batch_size}: must be a multiple of the {mesh.devices.size} devices")
    loader = data.make_loader(data.ArraySource(volumes), batch_size=t.batch_size // jax.process_count(), seed=t.seed)
    graphdef, state, train_step = init_training(cfg, mesh)
    losses = []
    state = train.train_loop(
        state, train_step, iter(loader), num_steps=t.num_steps, shard_fn=partial(train.shard_batch, mesh=mesh),
        log_every=max(1, t.num_steps // 10), progress=progress, hooks=[lambda step, s, m: losses.append(m["loss"])],
    )  # fmt: skip
    return TrainedWDM(graphdef, state, build_schedule(cfg.diffusion), np.asarray(jax.device_get(losses)))
