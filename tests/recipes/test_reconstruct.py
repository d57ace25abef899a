"""`gensynth reconstruct` end to end on a tiny 2-step run, plus its two adapters (VP -> VE score,
real-image restriction of complex operators) against closed forms."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import cli, diffusion
from gensynth.data._preprocess import display_slices
from gensynth.data.nifti import load_nifti
from gensynth.recipes import reconstruct as rec
from tests.recipes.test_image_diffusion import TINY

FILES = ("reference.png", "measurement.png", "baseline.png", "recon.png", "recon.nii.gz", "metrics.json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "run"
    assert cli.main(["train", "--run-dir", str(path), *TINY, "train.num_steps=2"]) == 0
    return path


def _recon(out):
    volume, _ = load_nifti(out / "recon.nii.gz")  # [X, Y, 1]
    return display_slices(volume[..., None], 2)[0, ..., 0]  # [H, W], inverse of samples_to_volume


def _check_outputs(out, solver, nfe):
    for name in FILES:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["solver"] == solver and m["nfe"] == nfe
    for part in ("baseline", "reconstruction"):
        assert all(np.isfinite(m[part][k]) for k in ("psnr", "ssim", "nmse")), m[part]
    return m


def test_inpaint_dds_is_data_consistent(run_dir):
    out = run_dir / "inpaint"
    argv = ["reconstruct", "--checkpoint", str(run_dir), "--data", "mni152", "--operator", "inpaint",
            "--solver", "dds", "--steps", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    m = _check_outputs(out, "dds", 4)
    assert m["needs_vjp"] is False and m["missing_fraction"] == 0.75
    ref, _, _ = rec.load_reference("mni152", 16, None)
    op, _ = rec.build_operator("inpaint", 16, mask="uniform1d", accel=4.0, views=30, angle_range=180.0, seed=0)
    observed = np.asarray(op.mask) > 0
    # noiseless data, CG on A^H A = diag(mask) is exact, and the last DDS step returns x0'
    np.testing.assert_allclose(_recon(out)[observed], ref[observed], atol=1e-4)
    assert m["relative_residual"] < 1e-4
    assert cli.main(argv) == 2  # never writes into a non-empty folder


def test_mri_ccdf_writes_everything(run_dir):
    out = run_dir / "mri"
    argv = ["reconstruct", "--checkpoint", str(run_dir), "--data", "shepp_logan", "--operator", "mri",
            "--mask", "random1d", "--solver", "ccdf", "--steps", "3", "--noise", "0.01", "--out", str(out)]
    assert cli.main(argv) == 0
    m = _check_outputs(out, "ccdf", 3)
    assert m["baseline_name"] == "zero-filled" and m["accel_effective"] > 2.0


def test_bad_arguments_are_clear_errors(run_dir, capsys):
    base = ["reconstruct", "--checkpoint", str(run_dir), "--operator", "mri"]
    with pytest.raises(SystemExit):
        cli.main([*base, "--data", "mni152", "--solver", "admm"])
    assert "invalid choice: 'admm'" in capsys.readouterr().err
    assert cli.main([*base, "--data", "brain.png", "--solver", "dds"]) == 2
    assert "--data 'brain.png'" in capsys.readouterr().err
    parser = cli.build_parser()  # the CLI's repeated choice lists accept every library name
    for flag, names in (("--operator", rec.OPERATORS), ("--mask", rec.MASKS), ("--solver", rec.SOLVERS)):
        for name in names:
            args = parser.parse_args(["reconstruct", "--checkpoint", "r", "--data", "d", "--operator", "ct",
                                      "--solver", "dds", flag, name])
            assert getattr(args, flag[2:]) == name

def test_ve_score_of_vp_eps_model_is_the_exact_ve_score():
    # Gaussian data: the VP eps of gaussian_eps_fn converted to a VE score must equal the exact VE
    # score at the trained levels sigma_k (t chosen with sigma(t) = sigma_k).
    schedule = diffusion.vp_schedule(diffusion.cosine_betas(1000))
    mu, sigma2 = jnp.float32(0.3), jnp.float32(0.5)
    score_fn, sde = rec.make_ve_score_fn(diffusion.gaussian_eps_fn(mu, sigma2, schedule), schedule, "eps")
    k = jnp.array([0, 10, 500, 999])
    _, sigma_k = diffusion.vp_s_sigma(schedule.alpha_bar[k])
    t = jnp.log(sigma_k / sde.sigma_min) / jnp.log(sde.sigma_max / sde.sigma_min)
    x = jax.random.normal(jax.random.key(0), (4, 3, 3, 1)) * (sigma_k + 1.0)[:, None, None, None]
    exact = diffusion.gaussian_score_fn(mu, sigma2, sde)(x, t)
    np.testing.assert_allclose(score_fn(x, t), exact, rtol=2e-3, atol=1e-6)
