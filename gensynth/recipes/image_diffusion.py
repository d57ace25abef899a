"""Pixel-space image diffusion: config, data, training, DDIM or DPM-Solver++ sampling, and the `gensynth demo` run.

The pieces (U-Net, schedule, loss, train step, sampler, loader) live in their subpackages;
this module wires them for the `gensynth train | sample | demo` commands and for tests.

A run folder holds:
  config.json        the full config (resuming checks it against the command's config)
  checkpoint/        Orbax steps: train state (params, optimizer, EMA, step, key), data iterator
  metrics.jsonl      one JSON line per logged step
and, after sampling: samples.png, samples.nii.gz; after the demo: loss.png, metrics.json, report.md.
"""

from __future__ import annotations

import json
import pathlib
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth import config as config_lib
from gensynth import data, diffusion, figures, models, runs, train
from gensynth.train.log import METRICS_FILE


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mni152"  # a built-in set (data.BUILTIN_DATASETS) or nifti
    path: str = ""  # folder of NIfTI files when dataset=nifti
    image_size: int = 64  # slices are resampled to image_size x image_size px
    augment: bool = True  # random flip, small affine and intensity jitter on device
    num_images: int = 1024  # number of generated phantoms (dataset=phantoms or mni152_phantoms)
    holdout_every: int = 0  # keep image i out of training when i % k == k // 2 (data.holdout_indices); 0: none


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 16  # base width of the U-Net
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # width multiplier per resolution level
    num_res_blocks: int = 1  # res blocks per encoder level
    attention_levels: tuple[int, ...] = (3,)  # levels (indices into channel_mult) with attention
    head_dim: int = 32  # channels per attention head
    groups: int = 8  # GroupNorm groups
    dropout: float = 0.0  # dropout in res blocks


@dataclass(frozen=True)
class DiffusionConfig:
    num_timesteps: int = 1000  # T of the discrete VP process
    schedule: str = "cosine"  # linear | cosine
    prediction: str = "v"  # eps | x0 | v (v: cleaner samples from short CPU training)
    hybrid_loss: bool = False  # iDDPM L_simple + L_vlb with learned variance


@dataclass(frozen=True)
class OptimConfig:
    seed: int = 0  # seed of parameters, noise and data order
    batch_size: int = 8  # global batch (split over the 'data' mesh axis)
    num_steps: int = 1200  # optimiser steps
    learning_rate: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay
    clip_norm: float = 1.0  # global gradient-norm clip
    ema_decay: float = 0.995  # EMA of parameters used for sampling
    compute_dtype: str = "float32"  # float32 | bfloat16 (params stay float32)
    fuse_steps: int = 1  # optimiser steps fused into one compiled call (lax.scan)
    log_every: int = 10  # steps between metric lines
    checkpoint_every: int = 500  # steps between checkpoints (and one at the end)


@dataclass(frozen=True)
class SampleConfig:
    num_samples: int = 16  # images in the demo grid
    num_steps: int = 100  # DDIM steps
    eta: float = 1.0  # DDIM eta (0: deterministic; 1: ancestral, better anatomy from the short CPU run)


@dataclass(frozen=True)
class ImageDiffusionConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def cpu_config() -> ImageDiffusionConfig:
    """The CPU default: a 1.1 M-parameter U-Net on 64 px slices, about 7 minutes on 2 cores."""
    return ImageDiffusionConfig()


def gpu_config() -> ImageDiffusionConfig:
    """The accelerator default: an ADM-sized U-Net on 128 px slices in bf16."""
    return ImageDiffusionConfig(
        data=DataConfig(image_size=128),
        model=ModelConfig(channels=64, channel_mult=(1, 2, 2, 4), num_res_blocks=2, attention_levels=(2, 3), groups=32),
        train=OptimConfig(
            batch_size=64, num_steps=6000, learning_rate=2e-4, warmup_steps=500, ema_decay=0.999,
            compute_dtype="bfloat16", fuse_steps=10, log_every=50, checkpoint_every=2000,
        ),
        sample=SampleConfig(num_samples=64),
    )


def default_config(preset: str | None = None) -> ImageDiffusionConfig:
    """`cpu_config` or `gpu_config`; by default chosen from the JAX backend."""
    preset = preset or ("cpu" if jax.default_backend() == "cpu" else "gpu")
    return {"cpu": cpu_config, "gpu": gpu_config}[preset]()


def validate(cfg: ImageDiffusionConfig) -> ImageDiffusionConfig:
    """Checks choices and sizes; raises ValueError naming the key."""
    choices = {
        "data.dataset": (cfg.data.dataset, (*data.BUILTIN_DATASETS, "nifti")),
        "diffusion.schedule": (cfg.diffusion.schedule, ("linear", "cosine")),
        "diffusion.prediction": (cfg.diffusion.prediction, ("eps", "x0", "v")),
        "train.compute_dtype": (cfg.train.compute_dtype, ("float32", "bfloat16")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{key}={value!r}: expected one of {allowed}")
    levels = len(cfg.model.channel_mult)
    if cfg.data.image_size % 2 ** (levels - 1):
        raise ValueError(f"data.image_size={cfg.data.image_size}: must be divisible by {2 ** (levels - 1)}")
    if any(not 0 <= level < levels for level in cfg.model.attention_levels):
        raise ValueError(f"model.attention_levels={cfg.model.attention_levels}: levels are 0..{levels - 1}")
    if cfg.data.dataset == "nifti" and not cfg.data.path:
        raise ValueError("data.path: required when data.dataset=nifti")
    if cfg.data.holdout_every and cfg.data.dataset == "nifti":
        raise ValueError("data.holdout_every: only for built-in data sets; hold out NIfTI files by folder")
    for key in ("batch_size", "num_steps", "fuse_steps", "log_every", "checkpoint_every"):
        if getattr(cfg.train, key) <= 0:
            raise ValueError(f"train.{key}={getattr(cfg.train, key)}: must be positive")
    if cfg.train.checkpoint_every % cfg.train.fuse_steps or cfg.train.log_every % cfg.train.fuse_steps:
        raise ValueError("train.log_every and train.checkpoint_every must be multiples of train.fuse_steps")
    return cfg


# ---------------------------------------------------------------- parts


def build_source(cfg: DataConfig, seed: int):
    """The grain source of training images `{"image": float32 [H, W, C] in [-1, 1]}`, without the
    held-out ones."""
    if cfg.dataset == "nifti":
        return data.NiftiFolderSource(cfg.path, mode="slices", size=cfg.image_size)
    images = data.builtin_dataset(cfg.dataset, cfg.image_size, n=cfg.num_images, seed=seed)
    return data.ArraySource(images[data.holdout_indices(len(images), cfg.holdout_every)[0]])


def held_out_images(cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [N'], images [N', H, W, C])``: the built-in images kept out of training."""
    images = data.builtin_dataset(cfg.dataset, cfg.image_size, n=cfg.num_images, seed=seed)
    held = data.holdout_indices(len(images), cfg.holdout_every)[1]
    return held, images[held]


def image_channels(cfg: DataConfig) -> int:
    """Channels C of the data set's images."""
    return 3 if cfg.dataset == "mni152_tissue" else 1


def build_model(cfg: ImageDiffusionConfig, key: jax.Array) -> models.UNet:
    """The denoising U-Net; 2C outputs when the variance is learned (hybrid loss)."""
    channels = image_channels(cfg.data)
    m = cfg.model
    return models.UNet(
        channels,
        channels * (2 if cfg.diffusion.hybrid_loss else 1),
        spatial_dims=2,
        channels=m.channels,
        channel_mult=m.channel_mult,
        num_res_blocks=m.num_res_blocks,
        attention_levels=m.attention_levels,
        head_dim=m.head_dim,
        dropout=m.dropout,
        groups=m.groups,
        dtype=jnp.dtype(cfg.train.compute_dtype),
        rngs=nnx.Rngs(params=key),
    )


def build_schedule(cfg: DiffusionConfig) -> diffusion.VPSchedule:
    """The discrete VP schedule of `cfg.num_timesteps` steps."""
    betas = {"linear": diffusion.linear_betas, "cosine": diffusion.cosine_betas}[cfg.schedule]
    return diffusion.vp_schedule(betas(cfg.num_timesteps))


def make_loss_fn(cfg: ImageDiffusionConfig, schedule: diffusion.VPSchedule):
    """`loss_fn(model, key, batch) -> (loss, metrics)`: augment on device, then the diffusion loss."""
    augment_fn = data.make_augment_fn() if cfg.data.augment else None
    dropout = cfg.model.dropout > 0

    def loss_fn(model, key, batch):
        augment_key, noise_key, dropout_key = jax.random.split(key, 3)
        x0 = batch["image"]
        if augment_fn is not None:
            x0 = augment_fn(augment_key, x0)

        def model_fn(x, t):
            return model(x, t, dropout_key=dropout_key if dropout else None)

        return diffusion.diffusion_loss(
            noise_key, model_fn, x0, schedule, prediction=cfg.diffusion.prediction, hybrid=cfg.diffusion.hybrid_loss
        )

    return loss_fn


# `gensynth sample --sampler`: DDIM, or DPM-Solver++ multistep of order 2 / 3 (its name -> order)
SAMPLERS = ("ddim", "dpm++2m", "dpm++3m")
DPM_SOLVER_ORDERS = {"dpm++2m": 2, "dpm++3m": 3}
SAMPLER_TITLES = {"ddim": "DDIM", "dpm++2m": "DPM-Solver++(2M)", "dpm++3m": "DPM-Solver++(3M)"}


def check_sampler(sampler: str, eta: float) -> None:
    """Raises ValueError unless `sampler` is one of SAMPLERS and `eta` suits it: DDIM takes any eta
    in [0, 1]; DPM-Solver++ 0 (the ODE solver) or, dpm++2m only, 1 (SDE-DPM-Solver++(2M), whose
    first-order step is DDIM's eta = 1 step)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"--sampler={sampler!r}: expected one of {SAMPLERS}")
    if sampler == "ddim" and not 0.0 <= eta <= 1.0:
        raise ValueError(f"--eta={eta}: ddim takes a value in [0, 1]")
    if sampler == "dpm++2m" and eta not in (0.0, 1.0):
        raise ValueError(f"--eta={eta}: dpm++2m takes 0 (the ODE solver) or 1 (its SDE variant)")
    if sampler == "dpm++3m" and eta != 0.0:
        raise ValueError(f"--eta={eta}: dpm++3m takes 0 (the ODE solver; it has no SDE variant)")


def make_sample_fn(
    graphdef: nnx.GraphDef, cfg: ImageDiffusionConfig, schedule: diffusion.VPSchedule, sampler: str = "ddim"
):
    """Jitted `sample_fn(params, key, num, num_steps, eta) -> [num, H, W, C]`: the whole sampler in one program.

    `sampler` is one of SAMPLERS; `num_steps` network evaluations on DDIM's evenly spaced steps;
    `eta` (static, checked by `check_sampler` when traced) is DDIM's eta, or for DPM-Solver++ 0
    (the ODE solver) / 1 (the SDE variant).
    """
    check_sampler(sampler, 0.0)
    size, channels = cfg.data.image_size, image_channels(cfg.data)

    @partial(jax.jit, static_argnums=(2, 3, 4))
    def sample_fn(params, key, num, num_steps, eta):
        check_sampler(sampler, eta)
        model = nnx.merge(graphdef, params)
        args = (key, lambda x, t: model(x, t), schedule, (num, size, size, channels))
        if sampler == "ddim":
            return diffusion.ddim_sample(*args, num_steps=num_steps, eta=eta, prediction=cfg.diffusion.prediction)
        return diffusion.dpm_solver_pp_sample(
            *args,
            num_steps=num_steps,
            order=DPM_SOLVER_ORDERS[sampler],
            stochastic=eta == 1.0,
            prediction=cfg.diffusion.prediction,
        )

    return sample_fn


# ---------------------------------------------------------------- runs


@dataclass
class TrainedRun:
    """What `train` returns: the model graph, the final state and the run's facts."""

    graphdef: nnx.GraphDef
    state: train.TrainState
    schedule: diffusion.VPSchedule
    num_params: int
    num_images: int
    steps_done: int  # optimiser steps taken in this call (0 when already complete)
    train_seconds: float  # wall time of this call's training loop, compile included


def _check_saved_config(run_dir: pathlib.Path, cfg: ImageDiffusionConfig) -> None:
    path = run_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        current = config_lib.to_dict(cfg)
        saved["train"]["num_steps"] = current["train"]["num_steps"]  # resuming may extend a run
        if saved != current:
            raise ValueError(
                f"{run_dir}: holds a run with a different config; pass the same overrides to resume "
                "(only train.num_steps may change), or choose a new --run-dir"
            )
        runs.atomic_write_json(path, current)
    elif any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir}: exists and is not a gensynth run folder; refusing to write into it")
    else:
        runs.atomic_write_json(path, config_lib.to_dict(cfg))


def _optimizer(t: OptimConfig):
    return train.make_optimizer(
        t.learning_rate, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, clip_norm=t.clip_norm
    )


def _fresh_state(cfg: ImageDiffusionConfig, optimizer, mesh):
    """The step-0 train state; parameters drawn with an rbg key (threefry init compiles ~3x slower on CPU)."""
    model_key = jax.random.key(cfg.train.seed, impl="rbg")
    train_key = jax.random.fold_in(jax.random.key(cfg.train.seed), 1)
    return train.create_train_state(train_key, lambda: build_model(cfg, model_key), optimizer, mesh=mesh)


def train_run(cfg: ImageDiffusionConfig, run_dir: str | pathlib.Path, *, progress: bool = True) -> TrainedRun:
    """Trains (or resumes) the run in `run_dir` up to `cfg.train.num_steps`.

    The run folder gets `config.json`, `metrics.jsonl` and `checkpoint/` (train state with
    params, optimiser state, EMA, step and key, plus the data iterator's position). A folder
    holding a run with another config is refused; one holding a checkpoint is resumed.
    """
    cfg = validate(cfg)
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_saved_config(run_dir, cfg)
    t = cfg.train
    mesh = train.make_mesh()
    if t.batch_size % mesh.shape["data"]:
        raise ValueError(f"train.batch_size={t.batch_size}: must be a multiple of the {mesh.shape['data']} devices")
    source = build_source(cfg.data, t.seed)
    loader = data.make_loader(source, batch_size=t.batch_size // jax.process_count(), seed=t.seed)
    data_iterator = iter(loader)
    schedule = build_schedule(cfg.diffusion)
    optimizer = _optimizer(t)
    graphdef, fresh = _fresh_state(cfg, optimizer, mesh)
    with train.Checkpointer(run_dir / "checkpoint") as checkpointer:
        state, _ = train.resolve_resume(checkpointer, fresh, data_iterator)
        start = int(state.step)
        train_step = train.make_train_step(
            graphdef,
            make_loss_fn(cfg, schedule),
            optimizer,
            ema_decay=t.ema_decay,
            compute_dtype=jnp.dtype(t.compute_dtype),
            mesh=mesh,
            fuse_steps=t.fuse_steps,
        )
        shard_fn = partial(train.shard_batch, mesh=mesh, batch_axis=1 if t.fuse_steps > 1 else 0)
        began = time.perf_counter()
        with train.MetricsWriter(run_dir) as writer:
            state = train.train_loop(
                state,
                train_step,
                data_iterator,
                num_steps=t.num_steps,
                shard_fn=shard_fn,
                fuse_steps=t.fuse_steps,
                checkpointer=checkpointer,
                checkpoint_every=t.checkpoint_every,
                config=config_lib.to_dict(cfg),
                metrics_writer=writer,
                log_every=t.log_every,
                progress=progress,
            )
        seconds = time.perf_counter() - began
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    return TrainedRun(graphdef, state, schedule, num_params, len(source), int(state.step) - start, seconds)


def restore_run(run_dir: str | pathlib.Path) -> tuple[ImageDiffusionConfig, nnx.GraphDef, train.TrainState]:
    """Loads a run's config and its latest train state (for sampling)."""
    run_dir = pathlib.Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no config.json; expected a folder written by `gensynth train`")
    cfg = validate(config_lib.from_dict(ImageDiffusionConfig, json.loads(path.read_text())))
    graphdef, template = _fresh_state(cfg, _optimizer(cfg.train), None)
    with train.Checkpointer(run_dir / "checkpoint") as checkpointer:
        state, _ = checkpointer.restore(template)
    return cfg, graphdef, state


def samples_to_volume(images: np.ndarray) -> np.ndarray:
    """Display-oriented axial images [N, rows, cols, C] -> RAS volume [X, Y, N, C] (inverse of data's cut)."""
    return np.ascontiguousarray(np.transpose(images[:, ::-1], (2, 1, 0, 3)))


def write_samples(out_dir: pathlib.Path, images: np.ndarray, *, pixel_mm: float, title: str) -> None:
    """Writes `samples.png` (grid) and `samples.nii.gz` (the images stacked along z)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures.save_image_grid(out_dir / "samples.png", images[..., :1], title=title)
    volume = samples_to_volume(images)
    if volume.shape[-1] == 1:
        volume = volume[..., 0]
    data.save_nifti(out_dir / "samples.nii.gz", volume.astype(np.float32), np.diag([pixel_mm, pixel_mm, pixel_mm, 1.0]))


def pixel_spacing_mm(cfg: DataConfig) -> float:
    """In-plane pixel size of the built-in MNI152 slices (mm); 1 mm for other sets."""
    if cfg.dataset.startswith("mni152"):
        return max(data.mni152_volume("t1", 1)[0].shape[:3]) / cfg.image_size
    return 1.0


def sample_images(
    graphdef: nnx.GraphDef,
    params,
    cfg: ImageDiffusionConfig,
    schedule: diffusion.VPSchedule,
    *,
    seed: int,
    num: int,
    num_steps: int,
    eta: float,
    sampler: str = "ddim",
) -> tuple[np.ndarray, float]:
    """Samples `[num, H, W, C]` in [-1, 1] with `sampler` (one of SAMPLERS, see `check_sampler` for
    `eta`) and the wall time in seconds (compile included)."""
    sample_fn = make_sample_fn(graphdef, cfg, schedule, sampler)
    began = time.perf_counter()
    images = np.asarray(jax.device_get(sample_fn(params, jax.random.key(seed), num, num_steps, eta)))
    return images, time.perf_counter() - began


# ---------------------------------------------------------------- commands


def _config_from(preset: str | None, overrides: list[str] | tuple[str, ...]) -> ImageDiffusionConfig:
    return validate(config_lib.apply_overrides(default_config(preset), overrides))


def train_cli(
    *, run_dir: str | None, root: str, preset: str | None, overrides: list[str] | tuple[str, ...]
) -> pathlib.Path:
    """`gensynth train`: trains into `run_dir` (resuming it) or a new folder under `root`."""
    cfg = _config_from(preset, overrides)
    path = pathlib.Path(run_dir) if run_dir else runs.new_run_dir(root, "train")
    trained = train_run(cfg, path)
    print(f"trained {trained.steps_done} steps in {trained.train_seconds:.1f} s; step {int(trained.state.step)}")
    return path


def sample_cli(
    *,
    run_dir: str,
    num: int,
    steps: int | None,
    eta: float | None,
    seed: int,
    out: str | None,
    sampler: str = "ddim",
) -> pathlib.Path:
    """`gensynth sample`: samples from a run's EMA weights into a new folder, with DDIM or DPM-Solver++.

    `steps` defaults to the run's `sample.num_steps`; `eta` to the run's `sample.eta` for DDIM
    and to 0 (the ODE solver) for DPM-Solver++, whose sampler is not part of the run's config.
    """
    cfg, graphdef, state = restore_run(run_dir)
    steps = cfg.sample.num_steps if steps is None else steps
    if eta is None:
        eta = cfg.sample.eta if sampler == "ddim" else 0.0
    if num <= 0 or steps <= 0:
        raise ValueError(f"--num={num} and --steps={steps}: must be positive")
    schedule = build_schedule(cfg.diffusion)
    images, seconds = sample_images(
        graphdef, state.ema_params, cfg, schedule, seed=seed, num=num, num_steps=steps, eta=eta, sampler=sampler
    )
    out_dir = pathlib.Path(out) if out else runs.new_run_dir(run_dir, "samples")
    title = f"{SAMPLER_TITLES[sampler]} {steps} steps, eta {eta}, step {int(state.step)}"
    write_samples(out_dir, images, pixel_mm=pixel_spacing_mm(cfg.data), title=title)
    print(f"sampled {num} images in {seconds:.1f} s")
    return out_dir


def _read_metrics(run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _foreground_fraction(images: np.ndarray) -> float:
    """Mean fraction of pixels brighter than the background (> -0.8 on [-1, 1])."""
    return float((images[..., 0] > -0.8).mean())


def demo(*, root: str = "runs", overrides: list[str] | tuple[str, ...] = (), progress: bool = True) -> pathlib.Path:
    """`gensynth demo`: train on MNI152 slices, DDIM-sample a grid, write figures and a report.

    Writes a new folder `root/demo-<time>` with checkpoint/, metrics.jsonl, data.png, loss.png,
    samples.png, samples.nii.gz, metrics.json and report.md; returns its path.
    """
    began = time.perf_counter()
    cfg = _config_from(None, overrides)
    run_dir = runs.new_run_dir(root, "demo")
    print(f"gensynth demo: writing to {run_dir} (backend {jax.default_backend()}, {jax.device_count()} device(s))")
    trained = train_run(cfg, run_dir, progress=progress)
    lines = _read_metrics(run_dir)
    steps = [line["step"] for line in lines]
    losses = [line["loss"] for line in lines]
    figures.save_curve(run_dir / "loss.png", steps, losses, title="training loss", smooth=5)
    s = cfg.sample
    source = build_source(cfg.data, cfg.train.seed)
    shown = np.linspace(0, len(source) - 1, min(len(source), s.num_samples)).round().astype(int)
    source_images = np.stack([source[int(i)]["image"] for i in shown])  # [n, H, W, C], spread over the set
    figures.save_image_grid(run_dir / "data.png", source_images[..., :1], title="training images")
    images, sample_seconds = sample_images(
        trained.graphdef, trained.state.ema_params, cfg, trained.schedule,
        seed=cfg.train.seed, num=s.num_samples, num_steps=s.num_steps, eta=s.eta,
    )
    write_samples(run_dir, images, pixel_mm=pixel_spacing_mm(cfg.data), title=f"DDIM {s.num_steps} steps, eta {s.eta} (EMA)")
    rates = [line["steps_per_s"] for line in lines[1:]] or [lines[-1]["steps_per_s"]]
    tail = max(1, len(losses) // 10)
    metrics = {
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "jax_version": jax.__version__,
        "num_params": trained.num_params,
        "num_train_images": trained.num_images,
        "train_steps": int(trained.state.step),
        "train_seconds": round(trained.train_seconds, 2),
        "train_steps_per_s": round(float(np.median(rates)), 3),
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-tail:])),
        "sample_count": s.num_samples,
        "sample_nfe": s.num_steps,
        "sample_seconds": round(sample_seconds, 2),
        "sample_foreground_fraction": round(_foreground_fraction(images), 4),
        "data_foreground_fraction": round(_foreground_fraction(source_images), 4),
        "wall_seconds": round(time.perf_counter() - began, 2),
        "config": config_lib.to_dict(cfg),
    }
    runs.atomic_write_json(run_dir / "metrics.json", metrics)
    runs.atomic_write_text(run_dir / "report.md", _report(cfg, metrics))
    return run_dir


def _report(cfg: ImageDiffusionConfig, m: dict) -> str:
    mdl = cfg.model
    return f"""# gensynth demo

A {m['num_params'] / 1e6:.2f} M-parameter ADM-style U-Net (channels {mdl.channels}, multipliers
{list(mdl.channel_mult)}, {mdl.num_res_blocks} res block(s) per level, attention at levels
{list(mdl.attention_levels)}) trained as a DDPM ({cfg.diffusion.schedule} schedule,
T = {cfg.diffusion.num_timesteps}, {cfg.diffusion.prediction}-prediction) on the {m['num_train_images']} images
of the `{cfg.data.dataset}` data set ({cfg.data.image_size} px, augmented on device), then sampled
with DDIM ({m['sample_nfe']} steps, eta = {cfg.sample.eta}) from the EMA weights.

| | |
|---|---|
| backend | {m['backend']} ({m['device_kind']}, {m['num_devices']} device(s)), jax {m['jax_version']} |
| training | {m['train_steps']} steps of batch {cfg.train.batch_size} in {m['train_seconds']} s ({m['train_steps_per_s']} steps/s after compile) |
| loss | {m['loss_first']:.4f} at the first log, {m['loss_last']:.4f} over the last tenth |
| sampling | {m['sample_count']} images, {m['sample_nfe']} network evaluations, {m['sample_seconds']} s (compile included) |
| foreground fraction | samples {m['sample_foreground_fraction']}, training images {m['data_foreground_fraction']} |
| wall time | {m['wall_seconds']} s |

Training images:

![training images](data.png)

Samples:

![samples](samples.png)

Loss:

![loss](loss.png)

Files: `checkpoint/` (Orbax: params, optimiser state, EMA, step, key, data-iterator position),
`metrics.jsonl` (per logged step), `metrics.json` (this table), `samples.nii.gz` (samples as a
NIfTI stack), `config.json`. Sample again with `gensynth sample --run-dir <this folder>`;
train longer with `gensynth train --run-dir <this folder> train.num_steps=<more>`.
"""
