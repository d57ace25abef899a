"""The PyTorch peer of ``inverse_solvers.py``: deepinv's DPS with a U-Net laid out as gensynth's.

Runs as a worker under the peers' Python (torch, deepinv, diffusers; not gensynth), spoken to in
JSON lines by :class:`_common.PeerProcess`. Requests:

  setup    {"device", "seed", "threads", "model": the gensynth U-Net layout, "prediction",
            "arrays": .npz with mask [H, W], reference [H, W] in [-1, 1], alpha_bar [T]}
  network  {"batch", "repeats"}: the bare U-Net's forward and forward + VJP wall times
  dps      {"batch", "steps"}: one DPS solve with ``steps`` network evaluations

The model: a diffusers ``UNet2DModel`` with the gensynth U-Net's widths, blocks per level,
attention levels, head size, groups and scale-shift time conditioning, wrapped by
``deepinv.models.ScoreModelWrapper`` (the same prediction type and ``alpha_bar``). The
physics: ``deepinv.physics.MRI`` with the gensynth mask, restricted to real images
``[B, 1, H, W]`` by a ``LinearPhysics`` (``A x = MRI([x, 0])``, ``A^T y = Re MRI^H y``), as
gensynth's ``RealImage``. The sampler: ``deepinv.sampling.DPS`` with its defaults (VP SDE,
DDPM solver) except a float32 state (deepinv's default is float64) and a seeded generator.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as common
import numpy as np
import torch

PACKAGES = ("torch", "deepinv", "diffusers", "numpy")
PREDICTION_NAMES = {
    "eps": "epsilon",
    "v": "v_prediction",
    "x0": "sample",
}  # gensynth: deepinv
_TORCHVISION_SCHEMAS = []  # keeps the torch.library fragment alive (freeing it unregisters)


def _import_torchvision() -> None:
    """Imports torchvision, defining its ``nms``/``qnms`` schemas first if its ops are missing.

    PyPI's torchvision wheels are built against CUDA torch; beside the CPU torch wheel their
    C++ ops do not load, yet torchvision 0.28 registers fake kernels for these two at import,
    which then fails. deepinv and diffusers import torchvision but use none of its ops here.
    """
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(
                f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        _TORCHVISION_SCHEMAS.append(lib)
        import torchvision  # noqa: F401


_import_torchvision()
import deepinv
from diffusers import UNet2DModel


def diffusers_unet(model: dict[str, Any], image_size: int) -> UNet2DModel:
    """A ``UNet2DModel`` with the gensynth U-Net's layout (``model``: its config fields)."""
    levels = range(len(model["channel_mult"]))
    attn = set(model["attention_levels"])
    return UNet2DModel(
        sample_size=image_size,
        in_channels=model["in_channels"],
        out_channels=model["out_channels"],
        block_out_channels=tuple(model["channels"] * m for m in model["channel_mult"]),
        layers_per_block=model["num_res_blocks"],
        down_block_types=tuple(
            "AttnDownBlock2D" if i in attn else "DownBlock2D" for i in levels
        ),
        up_block_types=tuple(
            "AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(levels)
        ),
        attention_head_dim=model["head_dim"],
        norm_num_groups=model["groups"],
        resnet_time_scale_shift="scale_shift",
        dropout=model["dropout"],
    )


class _SampleOnly(torch.nn.Module):
    """``UNet2DModel`` returning its output tensor (the wrapper expects a tensor)."""

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.unet(x, t, return_dict=False)[0]


def real_mri(mask: torch.Tensor) -> deepinv.physics.LinearPhysics:
    """Single-coil MRI on real images: ``[B, 1, H, W] -> [B, 2, H, W]`` k-space and back."""
    mri = deepinv.physics.MRI(mask=mask, img_size=tuple(mask.shape), device=mask.device)
    return deepinv.physics.LinearPhysics(
        A=lambda x: mri.A(torch.cat([x, torch.zeros_like(x)], dim=1)),
        A_adjoint=lambda y: mri.A_adjoint(y)[:, :1],
    )


class Peer:
    """The worker's state: U-Net, denoiser, physics and reference, on one device."""

    def __init__(self, message: dict[str, Any]):
        device = message["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        torch.set_num_threads(message["threads"])
        torch.manual_seed(message["seed"])
        self.seed = message["seed"]
        arrays = np.load(message["arrays"])
        size = arrays["mask"].shape[0]
        self.shape = (message["model"]["in_channels"], size, size)  # [C, H, W]
        self.unet = diffusers_unet(message["model"], size).to(self.device).eval()
        self.calls = {"forward": 0, "with_grad": 0}
        self.unet.register_forward_hook(self._count)
        alpha_bar = torch.tensor(arrays["alpha_bar"], dtype=torch.float32)  # [T]
        self.denoiser = deepinv.models.ScoreModelWrapper(
            score_model=_SampleOnly(self.unet),
            prediction_type=PREDICTION_NAMES[message["prediction"]],
            scale_t=alpha_bar.sqrt(),
            variance_preserving=True,
            takes_integer_time=True,
            n_timesteps=len(alpha_bar),
            device=self.device,
        )
        self.physics = real_mri(torch.tensor(arrays["mask"], device=self.device))
        reference = torch.tensor(arrays["reference"], device=self.device)  # [H, W]
        self.reference = (reference + 1) / 2  # deepinv images are in [0, 1]

    def _count(self, module, inputs, output) -> None:
        self.calls["forward"] += 1
        self.calls["with_grad"] += int(torch.is_grad_enabled())

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def describe(self) -> dict[str, Any]:
        """Device, threads, parameter count and versions, for the results."""
        on_cuda = self.device.type == "cuda"
        return {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device)
            if on_cuda
            else common.machine()["cpu"],
            "torch_threads": torch.get_num_threads(),
            "params": sum(p.numel() for p in self.unet.parameters()),
            "versions": common.package_versions(PACKAGES),
            "python": sys.executable,
        }

    def network(self, message: dict[str, Any]) -> dict[str, Any]:
        """Bare U-Net at batch B: forward and forward + VJP (w.r.t. the input) wall times,
        after 3 warm-up calls each, and the forward FLOPs (torch's counter)."""
        from torch.utils.flop_counter import FlopCounterMode

        b = message["batch"]
        x = torch.randn(b, *self.shape, device=self.device)  # [B, C, H, W]
        t = torch.full((b,), 500, device=self.device)

        def forward():
            with torch.no_grad():
                self.unet(x, t)
            self._sync()

        def forward_vjp():
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(self.unet(xg, t).sample.square().sum(), xg)
            self._sync()

        with FlopCounterMode(display=False) as counter, torch.no_grad():
            self.unet(x, t)
        out = {
            "params": sum(p.numel() for p in self.unet.parameters()),
            "flops_forward": counter.get_total_flops(),
        }
        for name, fn in (("forward", forward), ("forward_vjp", forward_vjp)):
            for _ in range(3):
                fn()
            times = [common.timed(fn)[1] for _ in range(message["repeats"])]
            out[f"{name}_seconds"] = common.summarize(times)
        return out

    def dps(self, message: dict[str, Any]) -> dict[str, Any]:
        """One DPS solve of B copies of the reference's measurement with ``steps`` network
        evaluations: seconds, counted NFE and VJPs, peak memory rise."""
        b, steps = message["batch"], message["steps"]
        sampler = deepinv.sampling.DPS(
            self.denoiser,
            num_steps=steps + 1,  # a grid of num_steps times: num_steps - 1 steps
            dtype=torch.float32,
            device=self.device,
            rng=torch.Generator(self.device).manual_seed(self.seed),
        )
        y = self.physics.A(self.reference.expand(b, *self.shape))  # [B, 2, H, W]
        self.calls.update(forward=0, with_grad=0)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def solve():
            x = sampler(y, self.physics, x_init=(b, *self.shape), seed=self.seed)
            self._sync()
            return x

        (x, seconds), rss = common.peak_rss_delta(lambda: common.timed(solve))
        if tuple(x.shape) != (b, *self.shape):
            raise RuntimeError(f"deepinv DPS returned shape {tuple(x.shape)}")
        on_cuda = self.device.type == "cuda"
        return {
            "seconds": seconds,
            "nfe": self.calls["forward"],
            "vjps": self.calls["with_grad"],
            "rss_peak_delta_bytes": rss,
            "device_peak_bytes": torch.cuda.max_memory_allocated() if on_cuda else None,
        }


def main() -> None:
    """Serves requests on stdin/stdout until ``{"cmd": "exit"}``."""
    common.serve_peer(Peer, ("network", "dps"))


if __name__ == "__main__":
    main()
