"""The trained prior of E2-E4: one VP U-Net on MNI152 axial slices plus random ellipse phantoms
(spec Sect. 10.3 E2, "MNI152 slices plus random ellipse phantoms"), with every 7th image held out
for evaluation; and the evaluation images.

Decisions:
  - quick (CPU): 32 px (the spec's CPU size), a 0.7 M-parameter U-Net (channels 16, multipliers
    1, 2, 4, attention at 8x8), 1500 steps of batch 16; full (GPU): 128 px, the ADM-sized U-Net
    of ``gpu_config``, 30 k steps.
  - v-prediction on the cosine schedule (T = 1000), as in the demo: short CPU runs learn cleaner
    images with it than with eps/linear; every solver converts v to eps and x0 itself.
  - evaluation images: the 16 held-out MNI152 slices (MRI) and, for CT, 15 held-out phantoms plus
    pydicom's CT slice (never seen in training: a real-anatomy, out-of-distribution case).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from gensynth import data, diffusion
from gensynth.recipes import image_diffusion as recipe

HOLDOUT_EVERY = 7  # 113 MNI152 slices -> 16 held out (indices 3, 10, ..., 108)
NUM_PHANTOMS = 256


@dataclasses.dataclass(frozen=True)
class Prior:
    """A trained VP prior as the solvers take it."""

    model_fn: Callable[[jax.Array, jax.Array], jax.Array]  # (x [B, H, W, 1], t [B] int32) -> out
    schedule: diffusion.VPSchedule
    prediction: str
    cfg: recipe.ImageDiffusionConfig
    num_params: int


def prior_config(quick: bool) -> recipe.ImageDiffusionConfig:
    """The experiment's training config (see the module docstring)."""
    base = recipe.cpu_config() if quick else recipe.gpu_config()
    data_cfg = dataclasses.replace(
        base.data, dataset="mni152_phantoms", num_images=NUM_PHANTOMS, holdout_every=HOLDOUT_EVERY,
        image_size=32 if quick else 128,
    )
    if quick:
        model = dataclasses.replace(base.model, channel_mult=(1, 2, 4), attention_levels=(2,))
        optim = dataclasses.replace(base.train, batch_size=16, num_steps=1500, log_every=50, checkpoint_every=500)
    else:
        model = base.model
        optim = dataclasses.replace(base.train, num_steps=30000, checkpoint_every=5000)
    return dataclasses.replace(base, data=data_cfg, model=model, train=optim)


def load_prior(run_dir: str | pathlib.Path, *, quick: bool, progress: bool = True) -> Prior:
    """Trains the prior in ``run_dir`` (resuming or reusing a finished run), or loads any
    one-channel run folder given by the user; returns its EMA network."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").exists():
        recipe.train_run(prior_config(quick), run_dir, progress=progress)
    cfg, graphdef, state = recipe.restore_run(run_dir)
    if recipe.image_channels(cfg.data) != 1:
        raise ValueError(f"{run_dir}: the chapter 7 experiments need a one-channel prior")
    model = nnx.merge(graphdef, state.ema_params)

    def model_fn(x, t):
        return model(x, t)

    num_params = sum(leaf.size for leaf in jax.tree.leaves(state.ema_params))
    return Prior(model_fn, recipe.build_schedule(cfg.diffusion), cfg.diffusion.prediction, cfg, num_params)


def mri_test_images(cfg: recipe.ImageDiffusionConfig) -> np.ndarray:
    """The held-out MNI152 slices ``[16, H, W]`` in [-1, 1] (held out only for a prior trained by
    :func:`prior_config`; a user's own run may have seen them)."""
    size = cfg.data.image_size
    held = data.holdout_indices(113, HOLDOUT_EVERY)[1]
    return data.mni152_slices(size)[held, ..., 0]


def mri_train_images(cfg: recipe.ImageDiffusionConfig) -> np.ndarray:
    """The MNI152 slices the prior was trained on, ``[97, H, W]`` (for the supervised baseline)."""
    train = data.holdout_indices(113, HOLDOUT_EVERY)[0]
    return data.mni152_slices(cfg.data.image_size)[train, ..., 0]


def ct_test_images(cfg: recipe.ImageDiffusionConfig, n_phantoms: int = 15) -> np.ndarray:
    """``[n_phantoms + 1, H, W]``: held-out phantoms of the training seed, then pydicom's CT slice."""
    size = cfg.data.image_size
    phantoms = data.builtin_dataset("phantoms", size, n=NUM_PHANTOMS, seed=cfg.train.seed)
    held = data.holdout_indices(113 + NUM_PHANTOMS, HOLDOUT_EVERY)[1]
    held = held[held >= 113][:n_phantoms] - 113
    return np.concatenate([phantoms[held, ..., 0], data.builtin_dataset("pydicom_ct", size)[:, ..., 0]])
