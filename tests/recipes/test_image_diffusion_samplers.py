"""`gensynth sample --sampler`: DDIM or DPM-Solver++ through the real entry points on a tiny run."""

import nibabel as nib
import numpy as np
import pytest

from gensynth import cli
from gensynth.recipes import image_diffusion as recipe

from .test_image_diffusion import TINY


def test_sample_command_runs_the_chosen_sampler(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--run-dir", str(run), *TINY, "train.num_steps=1"]) == 0
    out = tmp_path / "samples"
    argv = ["sample", "--run-dir", str(run), "--num", "2", "--steps", "4", "--seed", "3", "--out", str(out)]
    assert cli.main([*argv, "--sampler", "dpm++2m"]) == 0
    written = nib.load(out / "samples.nii.gz").get_fdata()

    cfg, graphdef, state = recipe.restore_run(run)
    schedule = recipe.build_schedule(cfg.diffusion)

    def sample(sampler):
        images, _ = recipe.sample_images(
            graphdef, state.ema_params, cfg, schedule, seed=3, num=2, num_steps=4, eta=0.0, sampler=sampler
        )
        return recipe.samples_to_volume(images)[..., 0]  # as written: [H, W, N]

    # The command ran DPM-Solver++(2M) with the ODE default (eta 0, not the run's DDIM eta = 1) ...
    np.testing.assert_allclose(written, sample("dpm++2m"), atol=1e-6)
    # ... which is not DDIM: of its 4 steps the second is second order (warm-up 1, then 2, and the
    # last two first order), so the samples move away from DDIM's with the same start.
    assert np.abs(written - sample("ddim")).max() > 1e-3

    assert cli.main([*argv, "--sampler", "dpm++3m", "--eta", "1"]) == 2
    assert "dpm++3m takes 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*argv, "--sampler", "heun"])
