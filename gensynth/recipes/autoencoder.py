"""First-stage autoencoder training (KL-AE or VQ-GAN) with a PatchGAN discriminator, in one jitted step.

One step, with x the batch and x_hat = Dec(z) the reconstruction:

    L_AE = w_rec * rec(x, x_hat) + w_perc * P(x_hat, x)                  (the "nll" part)
         + w_KL * KL(q(z|x) || N(0, I))                                   (KL-AE)
         | beta * |z_e - sg(e)|^2 [+ |sg(z_e) - e|^2 if the codebook is not EMA]   (VQ)
         + a * (w_adv * lambda * g(D(x_hat)) + w_fm * FM(D; x, x_hat))
    L_D  = d(D(x), D(sg(x_hat)))                                          (applied only where a = 1)

with a = 1[step >= disc_start] (a traced weight: one compiled program for the whole run), g/d the
generator/discriminator losses of `gensynth.gan.ADVERSARIAL_LOSSES`, and lambda LDM's adaptive
weight `|grad_W nll| / (|grad_W g| + 1e-4)` (clipped to [0, 1e4], no gradient) on the decoder's
last conv W, or 1. The autoencoder and the discriminator are updated from the same forward pass
(the discriminator sees the pre-update reconstruction, as in LDM/taming); the discriminator and its
optimiser state stay frozen before `disc_start`. For a VQ autoencoder with an EMA codebook the
codebook is then updated (`ema_codebook_update`), dead codes are restarted from the batch's
encoder outputs, and at step 0 every code is (data-dependent initialisation, as DiffTumor).

Defaults follow LDM's AutoencoderKL losses (L1, hinge, adaptive weight, w_adv = 0.5, Adam betas
(0.5, 0.9)) at a CPU-sized width; DiffTumor's VQ-GAN is `kind="vq"`, `adaptive_weight=False`,
`feature_matching_weight=4`, `recon_weight=4`, `perceptual_weight=4` and brainSPADE's label VAE is
`recon_loss="focal"`, `adv_loss="lsgan"`.

References:
  Rombach et al., LDM, CVPR 2022; Esser et al., "Taming Transformers", CVPR 2021 (adaptive weight);
  Chen et al., DiffTumor, CVPR 2024; Fernandez et al., brainSPADE, 2022.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from gensynth import data, gan, train
from gensynth.models import autoencoder_losses as ae_losses
from gensynth.models.autoencoder import KLAutoencoder, VQAutoencoder
from gensynth.models.patchgan import NORMS, PatchGAN
from gensynth.models.perceptual import (
    PerceptualLoss,
    load_vgg16_features,
    random_feature_net,
)
from gensynth.models.vector_quantizer import (
    codebook_perplexity,
    dead_code_mask,
    ema_codebook_update,
    restart_dead_codes,
)

RECON_LOSSES = ("l1", "l2", "focal")
ADAPTIVE_WEIGHT_MAX = 1e4


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    kind: str = "kl"  # kl (KL-regularised) | vq (vector-quantised)
    spatial_dims: int = 2  # 2: images [B, H, W, C]; 3: volumes [B, D, H, W, C]
    in_channels: int = 1  # image channels (label maps: classes)
    channels: int = 32  # base width of encoder and decoder
    channel_mult: tuple[int, ...] = (1, 2, 4)  # width multipliers; downsampling factor 2**(len - 1)
    num_res_blocks: int = 1  # residual blocks per encoder level
    latent_channels: int = 4  # latent channels (VQ: code dimension)
    attention: bool = False  # self-attention in the middle blocks
    groups: int = 8  # GroupNorm groups
    compute_dtype: str = "float32"  # float32 | bfloat16 (parameters stay float32)
    num_codes: int = 512  # VQ codebook size
    ema_codebook: bool = True  # VQ codebook by EMA (else by the codebook loss)
    codebook_decay: float = 0.99  # EMA decay of the codebook
    codebook_eps: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    dead_code_after: int = 100  # restart codes unassigned for this many steps; 0: never
    dead_code_min_usage: float = 0.0  # also restart codes with EMA usage below this (DiffTumor: 1.0)
    restart_jitter: float = 0.0  # std of the noise added to restarted codes
    recon_loss: str = "l1"  # l1 | l2 | focal (decoder outputs class logits; x holds class probabilities)
    focal_gamma: float = 2.0  # focusing exponent of the focal loss
    recon_weight: float = 1.0  # w_rec
    kl_weight: float = 1e-6  # w_KL (KL-AE)
    commitment_beta: float = 0.25  # beta (VQ)
    perceptual_weight: float = 0.0  # w_perc; 0 disables the perceptual term
    perceptual_net: str = "random"  # random (fixed-seed conv net) | path to a torchvision VGG16 safetensors file
    perceptual_slices: int = 5  # VGG16 slices used when loading a file
    adv_loss: str = "hinge"  # bce | lsgan | hinge | wgan (gensynth.gan.ADVERSARIAL_LOSSES)
    adv_weight: float = 0.5  # w_adv; 0 and feature_matching_weight 0: no discriminator
    adaptive_weight: bool = True  # LDM's adaptive adversarial weight lambda
    feature_matching_weight: float = 0.0  # w_fm on the discriminator's features
    disc_start: int = 50001  # step from which the adversarial terms are on and D trains
    disc_channels: int = 64  # PatchGAN base width
    disc_layers: int = 3  # PatchGAN stride-2 convs (3: 70 px patches)
    disc_norm: str = "instance"  # instance | group | none
    disc_spectral_norm: bool = False  # spectral normalisation in D
    seed: int = 0  # seed of the data order
    batch_size: int = 8  # global batch (split over the mesh)
    learning_rate: float = 2e-4  # Adam learning rate of the autoencoder
    disc_learning_rate: float = 2e-4  # Adam learning rate of the discriminator
    adam_b1: float = 0.5  # Adam beta1 (both)
    adam_b2: float = 0.9  # Adam beta2 (both)
    clip_norm: float = 1.0  # global gradient-norm clip (both)

    @property
    def use_discriminator(self) -> bool:
        return self.adv_weight > 0 or self.feature_matching_weight > 0


def validate_config(cfg: AutoencoderConfig) -> AutoencoderConfig:
    """Checks choices and ranges; raises ValueError naming the field."""
    choices = {
        "kind": (cfg.kind, ("kl", "vq")),
        "recon_loss": (cfg.recon_loss, RECON_LOSSES),
        "adv_loss": (cfg.adv_loss, tuple(gan.ADVERSARIAL_LOSSES)),
        "disc_norm": (cfg.disc_norm, NORMS),
        "compute_dtype": (cfg.compute_dtype, ("float32", "bfloat16")),
        "spatial_dims": (cfg.spatial_dims, (2, 3)),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{name}={value!r}: expected one of {allowed}")
    for name in ("recon_weight", "kl_weight", "commitment_beta", "perceptual_weight", "adv_weight",
                 "feature_matching_weight", "disc_start", "dead_code_after", "dead_code_min_usage", "restart_jitter"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name}={getattr(cfg, name)}: must be >= 0")  # fmt: skip
    if not 0.0 <= cfg.codebook_decay < 1.0:
        raise ValueError(f"codebook_decay={cfg.codebook_decay}: must be in [0, 1)")
    for name in ("batch_size", "learning_rate", "disc_learning_rate", "clip_norm"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}={getattr(cfg, name)}: must be positive")
    return cfg


@struct.dataclass
class AutoencoderTrainState:
    """Everything a run changes, as one pytree.

    Attributes:
      step: int32 `[]`, steps taken.
      params: `nnx.State` of the autoencoder's `nnx.Param` leaves (float32).
      codebook: `nnx.State` of the EMA codebook variables (VQ with EMA; else empty).
      opt_state: optax state of `params`.
      disc_params: `nnx.State` of the PatchGAN's parameters (empty without discriminator).
      disc_stats: `nnx.State` of its spectral-norm vectors (empty without spectral norm).
      disc_opt_state: optax state of `disc_params`.
      perceptual: `nnx.State` of the frozen perceptual feature net (empty when unused).
      key: uint32 raw key data of the run's key; step i uses `fold_in(key, i)`.
    """

    step: jax.Array
    params: nnx.State
    codebook: nnx.State
    opt_state: optax.OptState
    disc_params: nnx.State
    disc_stats: nnx.State
    disc_opt_state: optax.OptState
    perceptual: nnx.State
    key: jax.Array

    @property
    def rng_key(self) -> jax.Array:
        """The typed run key (`jax.random.wrap_key_data(self.key)`)."""
        return jax.random.wrap_key_data(self.key)


class AutoencoderGraphs(NamedTuple):
    """Static graphs of the run's modules (None when unused)."""

    autoencoder: nnx.GraphDef
    discriminator: nnx.GraphDef | None
    perceptual: nnx.GraphDef | None


def build_autoencoder(cfg: AutoencoderConfig, rngs: nnx.Rngs) -> KLAutoencoder | VQAutoencoder:
    """The autoencoder the config describes."""
    common = {
        "spatial_dims": cfg.spatial_dims, "channels": cfg.channels, "channel_mult": cfg.channel_mult,
        "num_res_blocks": cfg.num_res_blocks, "latent_channels": cfg.latent_channels, "attention": cfg.attention,
        "groups": cfg.groups, "dtype": jnp.dtype(cfg.compute_dtype), "rngs": rngs,
    }  # fmt: skip
    if cfg.kind == "kl":
        return KLAutoencoder(cfg.in_channels, **common)
    return VQAutoencoder(cfg.in_channels, num_codes=cfg.num_codes, ema_codebook=cfg.ema_codebook, **common)


def build_discriminator(cfg: AutoencoderConfig, rngs: nnx.Rngs) -> PatchGAN:
    """The PatchGAN the config describes."""
    return PatchGAN(
        cfg.in_channels, spatial_dims=cfg.spatial_dims, channels=cfg.disc_channels, n_layers=cfg.disc_layers,
        norm=cfg.disc_norm, groups=min(cfg.groups, cfg.disc_channels), spectral_norm=cfg.disc_spectral_norm,
        dtype=jnp.dtype(cfg.compute_dtype), rngs=rngs,
    )  # fmt: skip


def build_perceptual(cfg: AutoencoderConfig) -> PerceptualLoss:
    """The perceptual loss: VGG16 from `cfg.perceptual_net` (a file), or the fixed random net."""
    if cfg.perceptual_net == "random":
        return PerceptualLoss(random_feature_net(seed=0), imagenet_norm=False)
    return PerceptualLoss(load_vgg16_features(cfg.perceptual_net, num_slices=cfg.perceptual_slices))


def _optimizers(cfg: AutoencoderConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    adam = {"b1": cfg.adam_b1, "b2": cfg.adam_b2, "clip_norm": cfg.clip_norm}
    return train.make_optimizer(cfg.learning_rate, **adam), train.make_optimizer(cfg.disc_learning_rate, **adam)


def _constrain(state, mesh):
    return state if mesh is None else jax.lax.with_sharding_constraint(state, train.param_sharding(state, mesh))


def init_autoencoder_state(
    key: jax.Array, cfg: AutoencoderConfig, *, mesh: jax.sharding.Mesh | None = None
) -> tuple[AutoencoderGraphs, AutoencoderTrainState]:
    """Builds the modules (parameters initialised under `jit`, placed on `mesh`) and a step-0 state.

    Args:
      key: typed PRNG key of the run. Parameters are drawn from an rbg key made of its bits (rbg
        streams may differ between backends), training noise from `fold_in(key, step)`.
      cfg: the run's config.
      mesh: device mesh; state leaves follow `gensynth.train.param_sharding`. None: default device.
    """
    cfg = validate_config(cfg)
    ae_opt, disc_opt = _optimizers(cfg)
    perceptual = build_perceptual(cfg) if cfg.perceptual_weight > 0 else None
    perceptual_graph, perceptual_state = nnx.split(perceptual) if perceptual is not None else (None, nnx.State({}))

    def modules(k):  # k: an rbg key (initialisation compiles ~3x faster on CPU than with threefry)
        ae = build_autoencoder(cfg, nnx.Rngs(jax.random.fold_in(k, 0)))
        disc = build_discriminator(cfg, nnx.Rngs(jax.random.fold_in(k, 1))) if cfg.use_discriminator else None
        return ae, disc

    abstract_ae, abstract_disc = nnx.eval_shape(lambda: modules(jax.random.key(0, impl="rbg")))
    graphs = AutoencoderGraphs(
        nnx.split(abstract_ae)[0], nnx.split(abstract_disc)[0] if abstract_disc is not None else None, perceptual_graph
    )

    def init_fn(key_data, perceptual_state):
        init_key = jax.random.wrap_key_data(jax.random.bits(jax.random.wrap_key_data(key_data), (4,)), impl="rbg")
        ae, disc = modules(init_key)
        _, params, codebook = nnx.split(ae, nnx.Param, ...)
        _, disc_params, disc_stats = nnx.split(disc, nnx.Param, ...) if disc is not None else (None, {}, {})
        disc_params, disc_stats = nnx.State(disc_params), nnx.State(disc_stats)
        state = AutoencoderTrainState(
            step=jnp.zeros((), jnp.int32), params=params, codebook=codebook, opt_state=ae_opt.init(params),
            disc_params=disc_params, disc_stats=disc_stats, disc_opt_state=disc_opt.init(disc_params),
            perceptual=perceptual_state, key=key_data,
        )  # fmt: skip
        return _constrain(state, mesh)

    return graphs, jax.jit(init_fn)(jax.random.key_data(key), perceptual_state)


def make_autoencoder_train_step(
    cfg: AutoencoderConfig, graphs: AutoencoderGraphs, *, mesh: jax.sharding.Mesh | None = None
):
    """Builds the jitted `train_step_fn(state, batch) -> (state, metrics)` (see the module docstring).

    Args:
      cfg: the run's config.
      graphs: from `init_autoencoder_state`.
      mesh: device mesh; the batch `{"image": [B, *S, C]}` is split over its batch axes and the
        state held to `param_sharding` (data parallel, or FSDP when the mesh has an fsdp axis > 1).

    Returns:
      The jitted step (state donated). `metrics` are float32 scalars: `loss` (L_AE), `rec_loss`,
      `kl_loss` or `commitment_loss` and `perplexity`, and with a discriminator `g_loss`, `d_loss`,
      `adaptive_weight`, `disc_active`, `logits_real`, `logits_fake` (and `fm_loss`).
    """
    cfg = validate_config(cfg)
    ae_opt, disc_opt = _optimizers(cfg)
    d_loss_fn, g_loss_fn = gan.ADVERSARIAL_LOSSES[cfg.adv_loss]
    vq, ema = cfg.kind == "vq", cfg.kind == "vq" and cfg.ema_codebook

    def as_image(out):  # what D and the perceptual net see of a decoder output
        return jax.nn.softmax(out, axis=-1) if cfg.recon_loss == "focal" else out

    def rec_loss(x, out):
        if cfg.recon_loss == "focal":
            return ae_losses.focal_loss(x, out, gamma=cfg.focal_gamma)
        return (ae_losses.l1_loss if cfg.recon_loss == "l1" else ae_losses.l2_loss)(x, out)

    def single_step(state: AutoencoderTrainState, batch: Mapping[str, jax.Array]):
        state = _constrain(state, mesh)
        x = batch["image"]
        sample_key, restart_key, perceptual_key = jax.random.split(jax.random.fold_in(state.rng_key, state.step), 3)
        active = (state.step >= cfg.disc_start).astype(jnp.float32)
        perceptual = nnx.merge(graphs.perceptual, state.perceptual) if cfg.perceptual_weight > 0 else None
        disc = nnx.merge(graphs.discriminator, state.disc_params, state.disc_stats) if cfg.use_discriminator else None

        def nll_of_output(out):
            loss = cfg.recon_weight * rec_loss(x, out)
            if perceptual is not None:
                loss = loss + cfg.perceptual_weight * perceptual(as_image(out), x, key=perceptual_key)
            return loss

        def g_of_output(out):
            return g_loss_fn(disc(as_image(out)))

        def ae_loss_fn(params):
            ae = nnx.merge(graphs.autoencoder, params, state.codebook)
            metrics, aux = {}, {}
            if vq:
                z_e = ae.encode(x)
                z, indices, terms = ae.quantize(z_e)
                reg = cfg.commitment_beta * terms["commitment"] + (0.0 if ema else terms["codebook"])
                metrics["commitment_loss"] = terms["commitment"]
                metrics["perplexity"] = codebook_perplexity(indices, cfg.num_codes)
                aux.update(z_e=z_e, indices=indices)
            else:
                mean, logvar = ae.encode(x)
                z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(sample_key, mean.shape)
                metrics["kl_loss"] = ae_losses.kl_divergence(mean, logvar)
                reg = cfg.kl_weight * metrics["kl_loss"]
            h = ae.decoder.head_input(z.astype(ae.dtype))
            out = ae.decoder.out_conv(h).astype(jnp.float32)
            nll = nll_of_output(out)
            loss = nll + reg
            metrics["rec_loss"] = rec_loss(x, out)
            if disc is not None:
                g = g_of_output(out)
                weight = (
                    _adaptive_weight(ae.decoder.out_conv, h, nll_of_output, g_of_output) if cfg.adaptive_weight else 1.0
                )
                adv = cfg.adv_weight * weight * g
                if cfg.feature_matching_weight > 0:
                    fm = gan.feature_matching_loss(disc.features(x)[:-1], disc.features(as_image(out))[:-1])
                    adv = adv + cfg.feature_matching_weight * fm
                    metrics["fm_loss"] = fm
                loss = loss + active * adv
                metrics.update(g_loss=g, adaptive_weight=jnp.asarray(weight, jnp.float32))
            aux["fake"] = jax.lax.stop_gradient(as_image(out))
            return loss, (aux, metrics)

        (loss, (aux, metrics)), grads = jax.value_and_grad(ae_loss_fn, has_aux=True)(state.params)
        updates, opt_state = ae_opt.update(grads, state.opt_state, state.params)
        state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        if ema:
            state = state.replace(codebook=_update_codebook(cfg, graphs, state, aux, restart_key))
        if disc is not None:
            state, disc_metrics = _discriminator_step(state, graphs, disc_opt, d_loss_fn, x, aux["fake"], active)
            metrics.update(disc_metrics, disc_active=active)
        metrics = jax.tree.map(lambda m: m.astype(jnp.float32), {**metrics, "loss": loss})
        return _constrain(state.replace(step=state.step + 1), mesh), metrics

    if mesh is None:
        return jax.jit(single_step, donate_argnums=(0,))
    return jax.jit(
        single_step,
        in_shardings=(None, train.data_sharding(mesh, 1)),
        out_shardings=(None, train.replicated(mesh)),
        donate_argnums=(0,),
    )


def _adaptive_weight(head: nnx.Module, h: jax.Array, nll_of_output, g_of_output) -> jax.Array:
    """LDM's `|grad_W nll| / (|grad_W g| + 1e-4)` on the last conv's kernel W, clipped, no gradient."""
    head_graph, head_state = nnx.split(head)

    def kernel_grad_norm(loss_of_output):
        grads = jax.grad(lambda s: loss_of_output(nnx.merge(head_graph, s)(h).astype(jnp.float32)))(head_state)
        return jnp.linalg.norm(grads["kernel"][...].astype(jnp.float32))

    weight = kernel_grad_norm(nll_of_output) / (kernel_grad_norm(g_of_output) + 1e-4)
    return jax.lax.stop_gradient(jnp.clip(weight, 0.0, ADAPTIVE_WEIGHT_MAX))


def _update_codebook(cfg, graphs, state, aux, key) -> nnx.State:
    """EMA update, then restart of dead codes (all codes at step 0: initialisation from data)."""
    ae = nnx.merge(graphs.autoencoder, state.params, state.codebook, copy=True)  # the codebook is written
    codebook = ema_codebook_update(
        ae.quantizer.codebook_state(), aux["z_e"], aux["indices"], decay=cfg.codebook_decay, eps=cfg.codebook_eps
    )
    dead = jnp.full((cfg.num_codes,), state.step == 0)
    if cfg.dead_code_after > 0:
        dead = dead | dead_code_mask(codebook, dead_after=cfg.dead_code_after, min_usage=cfg.dead_code_min_usage)
    ae.quantizer.set_codebook_state(restart_dead_codes(key, codebook, aux["z_e"], dead, jitter=cfg.restart_jitter))
    return _like(state.codebook, nnx.split(ae, nnx.Param, ...)[2])


def _like(template, tree):
    """`tree`'s leaves in `template`'s pytree structure (a State split inside the step nests its
    lists differently from one that went through `jit`; the carried state must keep one structure)."""
    return jax.tree.unflatten(jax.tree.structure(template), jax.tree.leaves(tree))


def _discriminator_step(state, graphs, disc_opt, d_loss_fn, x, fake, active):
    """One discriminator update on real `x` and the (constant) reconstruction `fake`; kept only
    when `active` (before `disc_start` D, its optimiser state and its statistics stay as they are)."""

    def loss_fn(disc_params):
        disc = nnx.merge(graphs.discriminator, disc_params, state.disc_stats, copy=True)  # stats are written
        logits = disc(jnp.concatenate([x, fake.astype(x.dtype)], axis=0), update_stats=True)
        real, fake_logits = jnp.split(logits, 2, axis=0)
        stats = _like(state.disc_stats, nnx.split(disc, nnx.Param, ...)[2])
        metrics = {"logits_real": jnp.mean(real), "logits_fake": jnp.mean(fake_logits)}
        return d_loss_fn(real, fake_logits), (stats, metrics)

    (d_loss, (stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.disc_params)
    updates, opt_state = disc_opt.update(grads, state.disc_opt_state, state.disc_params)
    new = (optax.apply_updates(state.disc_params, updates), opt_state, stats)
    old = (state.disc_params, state.disc_opt_state, state.disc_stats)
    disc_params, opt_state, stats = jax.tree.map(lambda n, o: jnp.where(active > 0, n, o), new, old)
    state = state.replace(disc_params=disc_params, disc_opt_state=opt_state, disc_stats=stats)
    return state, {**metrics, "d_loss": d_loss}


def _check_images(images: np.ndarray, cfg: AutoencoderConfig) -> np.ndarray:
    images = np.asarray(images, np.float32)
    d, factor = cfg.spatial_dims, 2 ** (len(cfg.channel_mult) - 1)
    if images.ndim != d + 2 or images.shape[-1] != cfg.in_channels:
        raise ValueError(f"images: expected [N, *spatial({d}), {cfg.in_channels}] channels-last, got {images.shape}")
    if any(n % factor for n in images.shape[1:-1]):
        raise ValueError(f"images: spatial sizes must be divisible by {factor} (2**(levels-1)), got {images.shape}")
    if images.shape[0] < cfg.batch_size:
        raise ValueError(f"images: need at least batch_size={cfg.batch_size} images, got {images.shape[0]}")
    return images


def train_autoencoder(
    key: jax.Array,
    images: np.ndarray,
    cfg: AutoencoderConfig,
    steps: int,
    *,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
) -> tuple[KLAutoencoder | VQAutoencoder, AutoencoderTrainState, dict[str, np.ndarray]]:
    """Trains the autoencoder (and discriminator) of `cfg` on `images` for `steps` steps.

    Args:
      key: typed PRNG key of the run (parameters and per-step noise).
      images: float32 `[N, *S, C]` in [-1, 1] (class probabilities for `recon_loss="focal"`).
      cfg: the run's config (`batch_size` is the global batch).
      steps: optimiser steps, >= 1.
      mesh: device mesh; None uses all devices (`gensynth.train.make_mesh()`).
      progress: show a tqdm bar.

    Returns:
      `(autoencoder, state, history)`: the trained module (parameters and codebook of `state`),
      the final `AutoencoderTrainState`, and each metric's per-step values `{name: [steps]}`.

    Raises:
      ValueError: for bad images (shape, channels, divisibility, fewer than a batch) or config.
    """
    cfg = validate_config(cfg)
    images = _check_images(images, cfg)
    if steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps}")
    mesh = train.make_mesh() if mesh is None else mesh
    graphs, state = init_autoencoder_state(key, cfg, mesh=mesh)
    train_step_fn = make_autoencoder_train_step(cfg, graphs, mesh=mesh)
    loader = data.make_loader(data.ArraySource(images), batch_size=cfg.batch_size // jax.process_count(), seed=cfg.seed)
    recorded = []
    state = train.train_loop(
        state, train_step_fn, iter(loader), num_steps=steps, shard_fn=partial(train.shard_batch, mesh=mesh),
        log_every=max(1, steps // 20), progress=progress, hooks=[lambda step, s, metrics: recorded.append(metrics)],
    )  # fmt: skip
    history = {name: np.array([float(m[name]) for m in jax.device_get(recorded)]) for name in recorded[0]}
    return nnx.merge(graphs.autoencoder, state.params, state.codebook), state, history
