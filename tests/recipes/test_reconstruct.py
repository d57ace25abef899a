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


def _plane_psnr(a, b):
    return 10 * np.log10(rec.DATA_RANGE**2 / np.mean((a - b) ** 2))


def test_dds3d_volume_with_poisson_counts(run_dir):
    # 4 axial MNI152 slices, sparse-view CT per slice, Poisson counts treated as Gaussian by 3D
    # DDS. recon.nii.gz is the volume; cutting it back into axial slices reproduces the metrics'
    # mid-planes (same orientation and plane choice in both outputs).
    out = run_dir / "dds3d"
    argv = ["reconstruct", "--checkpoint", str(run_dir), "--data", "mni152", "--operator", "ct",
            "--views", "8", "--solver", "dds3d", "--depth", "4", "--steps", "2",
            "--noise-model", "poisson", "--count-scale", "50", "--out", str(out)]
    assert cli.main(argv) == 0
    for name in FILES:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["solver"] == "dds3d" and m["nfe"] == 2 and m["noise_model"] == "poisson"
    assert m["count_scale"] == 50 and m["slices"][1] - m["slices"][0] == 3
    for part in ("baseline", "reconstruction"):
        for plane in ("axial", "coronal", "sagittal"):
            assert all(np.isfinite(m[part][plane][k]) for k in ("psnr", "ssim", "nmse")), (part, plane)
        assert np.isfinite(m[part]["volume"]["psnr"])
    volume, _ = load_nifti(out / "recon.nii.gz")
    assert volume.shape == (16, 16, 4)
    x = display_slices(volume[..., None], 2)[..., 0]  # [D, H, W] axial slices, inverse of the writer
    ref, first, _ = rec.load_reference_volume("mni152", 16, None, 4)
    assert first == m["slices"][0]
    for plane, (a, b) in {k: (rec.mid_planes(x)[k], rec.mid_planes(ref)[k]) for k in ("axial", "sagittal")}.items():
        np.testing.assert_allclose(_plane_psnr(a, b), m["reconstruction"][plane]["psnr"], rtol=1e-4)


def test_mbir_volume_and_score_ald_and_poisson_dps_images(run_dir):
    cases = {
        "mbir": (["--operator", "inpaint", "--depth", "3"], 2),  # N (1 + M) with M = 1
        "score_ald": (["--operator", "mri", "--mask", "random1d"], 3),  # 3 Langevin steps a level
        "dps": (["--operator", "blur", "--noise-model", "poisson"], 1),
    }
    for solver, (extra, nfe) in cases.items():
        out = run_dir / f"{solver}-cases"
        argv = ["reconstruct", "--checkpoint", str(run_dir), "--data", "mni152", "--solver", solver,
                "--steps", "1", "--out", str(out), *extra]
        assert cli.main(argv) == 0, solver
        m = json.loads((out / "metrics.json").read_text())
        assert m["nfe"] == nfe and (out / "recon.png").is_file(), solver
        quality = m["reconstruction"]["axial"] if solver == "mbir" else m["reconstruction"]
        assert np.isfinite(quality["psnr"]), solver
    assert m["needs_vjp"] is True and m["noise_std_equivalent"] > 0


def test_poisson_measurements_are_unbiased_with_poisson_variance():
    # y = 2 c / s - A 1 with c ~ Poisson(s A u), u = (x + 1) / 2: E y = A x exactly and
    # Var y = 4 A u / s per entry; 4000 draws on a 16 px blur, checked within 5 s.e.
    op, _ = rec.build_operator("blur", 16, mask="uniform1d", accel=4.0, views=8, angle_range=180.0, seed=0)
    ref, _, _ = rec.load_reference("shepp_logan", 16, None)
    x = jnp.broadcast_to(jnp.asarray(ref), (4000, 16, 16))
    y, counts, std = rec.measure(jax.random.split(jax.random.key(0), 4000), op, x, noise=0.0,
                                 noise_model="poisson", count_scale=20.0)
    ax, au = np.asarray(op.A(jnp.asarray(ref))), np.asarray(op.A((jnp.asarray(ref) + 1) / 2))
    y = np.asarray(y, np.float64)
    var = 4 * au / 20.0
    assert np.abs((y.mean(0) - ax) / np.sqrt(var / 4000)).max() < 5
    assert np.abs(y.var(0) / var - 1).max() < 5 * np.sqrt(2 / 4000) + 0.05  # + Poisson skew
    np.testing.assert_allclose(np.asarray(counts).mean(), au.mean(), rtol=1e-2)
    np.testing.assert_allclose(std, 2 * np.sqrt(np.asarray(counts).mean() / 20.0), rtol=1e-5)


def test_new_options_are_validated(run_dir, capsys):
    base = ["reconstruct", "--checkpoint", str(run_dir), "--data", "mni152", "--steps", "1"]
    for extra, message in (
        (["--operator", "mri", "--solver", "dps", "--noise-model", "poisson"], "--noise-model poisson"),
        (["--operator", "ct", "--solver", "dps", "--noise-model", "poisson", "--noise", "0.1"], "--noise"),
        (["--operator", "ct", "--solver", "dds", "--count-scale", "10"], "--count-scale"),
        (["--operator", "ct", "--solver", "dds", "--depth", "4"], "--depth"),
        (["--operator", "ct", "--solver", "dds3d", "--depth", "2"], "--depth 2"),
    ):
        assert cli.main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    argv = ["reconstruct", "--checkpoint", str(run_dir), "--data", "shepp_logan", "--operator", "ct",
            "--solver", "mbir"]
    assert cli.main(argv) == 2 and "volume solvers" in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["projection", "mcg", "dps", "dds", "ccdf", "score_ald"])
def test_run_solver_traces_under_an_outer_jit(solver):
    """The experiments and benchmarks compile whole solves with the operator as a jit argument."""
    schedule = diffusion.vp_schedule(diffusion.linear_betas(1000))
    op, _ = rec.build_operator("ct", 8, mask="uniform1d", accel=4, views=6, angle_range=180, seed=0)
    x = jnp.linspace(-1, 1, 64).reshape(8, 8)
    y = op.A(x)[None]

    def solve(op, y):
        return rec.run_solver(
            jax.random.key(0), solver, lambda x, t: jnp.zeros_like(x), schedule, "eps", op, y, jnp.zeros((1, 8, 8)),
            steps=3, noise=0.01,
        )

    out, info = jax.jit(solve)(op, y)
    eager, _ = solve(op, y)
    assert out.shape == (1, 8, 8) and int(info["nfe"]) > 0
    np.testing.assert_allclose(out, eager, atol=1e-4)
