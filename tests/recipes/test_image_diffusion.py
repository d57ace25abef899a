"""End to end through the real entry point on a tiny config: train, resume, sample, demo."""

import json

import jax
import nibabel as nib
import numpy as np
from PIL import Image

from gensynth import cli
from gensynth.recipes import image_diffusion as recipe
from gensynth.train import Checkpointer

TINY = [
    "data.image_size=16",
    "model.channels=8",
    "model.channel_mult=1,2",
    "model.attention_levels=1",
    "model.groups=4",
    "model.head_dim=8",
    "train.batch_size=8",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "sample.num_steps=3",
    "sample.num_samples=4",
]


def _state(run_dir):
    return recipe.restore_run(run_dir)[2]


def _leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves((state.params, state.ema_params, state.opt_state))]


def test_train_resume_matches_straight_run(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli.main(["train", "--run-dir", str(straight), *TINY, "train.num_steps=4"]) == 0
    assert cli.main(["train", "--run-dir", str(resumed), *TINY, "train.num_steps=2"]) == 0
    assert cli.main(["train", "--run-dir", str(resumed), *TINY, "train.num_steps=4"]) == 0
    a, b = _state(straight), _state(resumed)
    assert int(a.step) == int(b.step) == 4
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    lines = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]


def test_run_dir_with_other_config_or_foreign_files_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--run-dir", str(run), *TINY, "train.num_steps=1"]) == 0
    assert cli.main(["train", "--run-dir", str(run), *TINY, "train.num_steps=1", "model.channels=16"]) == 2
    assert "different config" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert cli.main(["train", "--run-dir", str(foreign), *TINY]) == 2
    assert "not a gensynth run folder" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_bad_override_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--root", str(tmp_path), "model.nope=1"]) == 2
    assert "'model.nope'" in capsys.readouterr().err
    assert cli.main(["train", "--root", str(tmp_path), "diffusion.schedule=quadratic"]) == 2
    assert "diffusion.schedule" in capsys.readouterr().err


def test_demo_writes_every_output(tmp_path):
    run_dir = recipe.demo(root=str(tmp_path), overrides=[*TINY, "train.num_steps=4"], progress=False)
    for name in ("config.json", "metrics.jsonl", "metrics.json", "report.md", "loss.png", "data.png",
                 "samples.png", "samples.nii.gz"):
        assert (run_dir / name).is_file(), name
    assert Checkpointer(run_dir / "checkpoint").latest_step() == 4
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_steps"] == 4 and metrics["sample_nfe"] == 3
    assert np.isfinite(metrics["loss_last"])
    volume = nib.load(run_dir / "samples.nii.gz").get_fdata()
    assert volume.shape == (16, 16, 4)
    assert volume.min() >= -1.0 - 1e-6 and volume.max() <= 1.0 + 1e-6
    assert Image.open(run_dir / "samples.png").size[0] > 16
    assert "![samples](samples.png)" in (run_dir / "report.md").read_text()


def test_sample_command_writes_a_new_folder(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--run-dir", str(run), *TINY, "train.num_steps=2"]) == 0
    out = tmp_path / "samples"
    assert cli.main(["sample", "--run-dir", str(run), "--num", "2", "--steps", "2", "--out", str(out)]) == 0
    assert nib.load(out / "samples.nii.gz").shape == (16, 16, 2)
    assert cli.main(["sample", "--run-dir", str(tmp_path / "missing")]) == 2


def test_samples_to_volume_inverts_the_display_cut():
    from gensynth.data._preprocess import display_slices

    volume = np.random.default_rng(0).normal(size=(5, 6, 3, 1)).astype(np.float32)  # [X, Y, Z, C]
    slices = display_slices(volume, 2)  # [Z, rows, cols, C]
    np.testing.assert_array_equal(recipe.samples_to_volume(slices), volume)


def test_gpu_preset_fused_bf16_steps_run_and_keep_f32_params(tmp_path):
    run = tmp_path / "run"
    fused = ["train.num_steps=4", "train.fuse_steps=2", "train.log_every=2", "train.checkpoint_every=2"]
    assert cli.main(["train", "--preset", "gpu", "--run-dir", str(run), *TINY, *fused]) == 0
    cfg, _, state = recipe.restore_run(run)
    assert cfg.train.compute_dtype == "bfloat16" and int(state.step) == 4
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {np.dtype("float32")}
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4] and all(np.isfinite(line["loss"]) for line in lines)


def test_held_out_images_never_reach_training():
    cfg = recipe.DataConfig(dataset="mni152_phantoms", image_size=16, num_images=12, holdout_every=5)
    source = recipe.build_source(cfg, seed=3)
    index, held = recipe.held_out_images(cfg, seed=3)
    train_images = np.stack([source[i]["image"] for i in range(len(source))])
    assert len(source) + len(held) == 113 + 12 and np.all(index % 5 == 2)
    distances = np.abs(train_images[:, None] - held[None]).reshape(len(train_images), len(held), -1).max(-1)
    assert distances.min() > 0  # no held-out image is among the training images
