"""`gensynth` command line: train, sample, demo, reconstruct. Each sub-command parses and calls the library."""

from __future__ import annotations

import argparse
import sys

from gensynth import bench, runtime


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. train.num_steps=500 model.channels=64 data.image_size=128",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gensynth",
        description="Generative models for medical image computing (JAX/Flax).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train a small diffusion U-Net on MNI152 axial slices, sample with DDIM, write a report",
        description=(
            "Trains a small U-Net on the MNI152 T1 template's axial slices (64 px on CPU, a larger "
            "default on GPU) for a few minutes, samples a grid with DDIM and writes a new run folder: "
            "checkpoint/, samples.png, samples.nii.gz, loss.png, metrics.json, metrics.jsonl, report.md."
        ),
    )
    demo.add_argument("--root", default="runs", help="folder under which the new run folder is made (default: runs)")
    _add_overrides(demo)

    train = sub.add_parser(
        "train",
        help="train an image diffusion model (resumes an existing run folder)",
        description=(
            "Trains a diffusion U-Net on a data set (data.dataset=mni152|phantoms|shepp_logan|nifti, "
            "data.path for nifti). With --run-dir pointing at an existing run, resumes from its latest "
            "checkpoint; the config must then match the saved one."
        ),
    )
    train.add_argument("--run-dir", help="run folder (default: a new folder under --root)")
    train.add_argument("--root", default="runs", help="where new run folders are made (default: runs)")
    train.add_argument("--preset", choices=("cpu", "gpu"), help="base config (default: by backend)")
    _add_overrides(train)

    sample = sub.add_parser(
        "sample",
        help="sample images from a trained run with DDIM or DPM-Solver++",
        description="Loads the latest checkpoint of a run (EMA weights) and writes a PNG grid and a NIfTI stack.",
    )
    sample.add_argument("--run-dir", required=True, help="a run folder written by `gensynth train` or `demo`")
    sample.add_argument("--num", type=int, default=16, help="number of images (default: 16)")
    # Choices are repeated from gensynth.recipes.image_diffusion.SAMPLERS so that --help needs no jax import.
    sample.add_argument(
        "--sampler", default="ddim", choices=("ddim", "dpm++2m", "dpm++3m"),
        help="ddim, or DPM-Solver++ multistep of order 2 or 3 (fewer steps for the same quality) (default: ddim)",
    )
    sample.add_argument(
        "--steps", type=int, help="sampler steps = network evaluations (default: the run's sample.num_steps)"
    )
    sample.add_argument(
        "--eta", type=float,
        help="ddim: 0 deterministic, 1 ancestral (default: the run's sample.eta); dpm++: 0 the ODE solver "
        "(default), 1 the SDE variant (dpm++2m only)",
    )
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    sample.add_argument("--out", help="output folder (default: a new samples-* folder in the run)")

    # Choices are repeated from gensynth.recipes.reconstruct so that --help needs no jax import.
    rec = sub.add_parser(
        "reconstruct",
        help="solve a simulated MRI / CT / restoration problem with a trained run as the prior",
        description=(
            "Takes a reference slice (or, for dds3d / mbir, a stack of axial slices), simulates measurements "
            "y = A x (+ noise), runs a diffusion solver with the run's EMA network as prior and writes a new "
            "folder: reference.png, measurement.png, baseline.png, recon.png (reference | baseline | "
            "reconstruction | |error|; volumes: axial, coronal, sagittal mid-planes), recon.nii.gz, "
            "metrics.json (PSNR, SSIM, NMSE of baseline and reconstruction, per plane for volumes, NFE, seconds)."
        ),
    )
    rec.add_argument("--checkpoint", required=True, help="a run folder written by `gensynth train` or `demo`")
    rec.add_argument("--data", required=True, help="mni152 | pydicom_ct | shepp_logan | phantoms | a .nii/.nii.gz file")
    rec.add_argument("--slice", type=int, help="slice index (default: the middle one)")
    rec.add_argument("--operator", required=True, choices=("mri", "mri-multicoil", "ct", "inpaint", "sr", "blur"))
    rec.add_argument(
        "--mask", default="uniform1d", choices=("uniform1d", "random1d", "gaussian1d", "gaussian2d", "poisson", "radial"),
        help="MRI sampling mask (default: uniform1d)",
    )
    rec.add_argument(
        "--accel", type=float, default=4.0,
        help="undersampling ratio: MRI acceleration, inpainting 1-1/accel pixels hidden, SR factor sqrt(accel) (default: 4)",
    )
    rec.add_argument("--views", type=int, default=30, help="CT views (default: 30)")
    rec.add_argument("--angle-range", type=float, default=180.0, help="CT angular range in degrees; < 180 is limited-angle (default: 180)")
    rec.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std in measurement units (default: 0)")
    rec.add_argument(
        "--noise-model", default="gaussian", choices=("gaussian", "poisson"),
        help="poisson (ct, inpaint, sr, blur): counts of the intensity (x+1)/2; DPS uses its Poisson "
        "likelihood, the other solvers treat the data as Gaussian (default: gaussian)",
    )
    rec.add_argument("--count-scale", type=float, help="Poisson counts per unit of A (x+1)/2 (default: 100)")
    rec.add_argument(
        "--solver", required=True,
        choices=("projection", "mcg", "dps", "dds", "ccdf", "score_ald", "dds3d", "mbir"),
        help="dds3d and mbir reconstruct a volume of --depth axial slices (mni152 or a NIfTI file)",
    )
    rec.add_argument("--depth", type=int, help="slices of the volume for dds3d / mbir (default: 8)")
    rec.add_argument(
        "--steps", type=int,
        help="solver steps (default: the solver's own; DDS and dds3d 50, score_ald 1000, projection and mbir 2000)",
    )
    rec.add_argument("--seed", type=int, default=0, help="seed of mask, noise and solver (default: 0)")
    rec.add_argument("--out", help="output folder (default: a new reconstruct-* folder in the run)")

    bench_parser = sub.add_parser(
        "bench",
        help="run a benchmark suite beside the PyTorch peers (MONAI, diffusers, deepinv); needs a source checkout",
        description=(
            "Runs benchmarks/suite.py of the source checkout: U-Net train step, DDIM, PC sampling and MRI solves, "
            "alternating with the peers in their own Python; writes benchmarks/results/suite-SUITE-DEVICE.json and "
            ".md and prints the ratio table (see benchmarks/README.md)."
        ),
    )
    bench.add_arguments(bench_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":  # before jax starts: the suite sets it up itself (compile cache off)
        try:
            bench.run(args)
        except (ValueError, FileNotFoundError) as error:
            print(f"gensynth bench: error: {error}", file=sys.stderr)
            return 2
        return 0
    runtime.configure()
    from gensynth.recipes import image_diffusion as recipe

    try:
        if args.command == "demo":
            run_dir = recipe.demo(root=args.root, overrides=args.overrides)
            print(f"demo written to {run_dir}")
        elif args.command == "train":
            run_dir = recipe.train_cli(
                run_dir=args.run_dir, root=args.root, preset=args.preset, overrides=args.overrides
            )
            print(f"run written to {run_dir}")
        elif args.command == "sample":
            out = recipe.sample_cli(
                run_dir=args.run_dir, num=args.num, steps=args.steps, eta=args.eta, seed=args.seed, out=args.out,
                sampler=args.sampler,
            )
            print(f"samples written to {out}")
        elif args.command == "reconstruct":
            from gensynth.recipes import reconstruct

            out = reconstruct.reconstruct(
                checkpoint=args.checkpoint, source=args.data, operator=args.operator, solver=args.solver,
                index=args.slice, mask=args.mask, accel=args.accel, views=args.views,
                angle_range=args.angle_range, noise=args.noise, noise_model=args.noise_model,
                count_scale=args.count_scale, depth=args.depth, steps=args.steps, seed=args.seed, out=args.out,
            )
            print(f"reconstruction written to {out}")
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"gensynth {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
