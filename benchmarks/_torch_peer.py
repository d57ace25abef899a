"""The PyTorch peers of ``suite.py``: MONAI's ``DiffusionModelUNet`` + ``DDIMScheduler``
(``monai.networks.schedulers``) and diffusers' ``UNet2DModel`` + ``DDIMScheduler``.

Runs as a worker under the peers' Python (torch, monai, diffusers; not gensynth), spoken to in
JSON lines by :class:`_common.PeerProcess`. Requests:

  setup    {"device", "threads", "seed"}: the device, threads and versions
  prepare  {"id", "library": "monai" | "diffusers", "kind": "train" | "ddim", "config": the
           library's constructor arguments, "shape": [B, C, *S], "steps": DDIM steps,
           "dtype"}: builds the workload, counts its FLOPs, runs it once (warm-up)
  run      {"id"}: one timed run: seconds, peak RSS rise, CUDA peak bytes
  drop     {"id"}: frees the workload

train: one step of the eps-prediction loss (``x_t`` from DDPM's linear schedule, MSE), AdamW
(lr 1e-4, no weight decay) after clipping the gradient norm to 1, and an EMA of the weights
(``torch.optim.swa_utils.AveragedModel``, decay 0.999): what gensynth's train step does.
ddim: the library's ``DDIMScheduler`` (linear betas, eta 0, x0 clipped, eps-prediction) with
``set_timesteps(steps)`` and the loop both libraries' pipelines run: network, then
``scheduler.step``. ``bfloat16`` runs the network under ``torch.autocast``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import _common as common
import torch

PACKAGES = ("torch", "monai", "diffusers", "numpy")
NUM_TIMESTEPS = 1000
LEARNING_RATE = 1e-4
EMA_DECAY = 0.999


def _hide_broken_torchvision() -> None:
    """PyPI's torchvision is a CUDA build whose import fails beside a CPU torch (see
    benchmarks/README.md); MONAI and diffusers use none of it here and treat it as absent
    when its module is None."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        sys.modules["torchvision"] = None


_hide_broken_torchvision()


def _monai(config: dict[str, Any]):
    """``(net, forward(x, t), scheduler, step(out, t, x) -> x_prev)`` of MONAI."""
    from monai.networks.nets import DiffusionModelUNet
    from monai.networks.schedulers import DDIMScheduler

    net = DiffusionModelUNet(**config)
    scheduler = DDIMScheduler(
        num_train_timesteps=NUM_TIMESTEPS, schedule="linear_beta", clip_sample=True,
        prediction_type="epsilon",
    )  # fmt: skip
    return (
        net,
        lambda x, t: net(x, timesteps=t),
        scheduler,
        lambda out, t, x: scheduler.step(out, t, x)[0],
    )


def _diffusers(config: dict[str, Any]):
    """``(net, forward(x, t), scheduler, step(out, t, x) -> x_prev)`` of diffusers."""
    from diffusers import DDIMScheduler, UNet2DModel

    net = UNet2DModel(**config)
    scheduler = DDIMScheduler(
        num_train_timesteps=NUM_TIMESTEPS, beta_schedule="linear", clip_sample=True,
        prediction_type="epsilon",
    )  # fmt: skip
    return (
        net,
        lambda x, t: net(x, t, return_dict=False)[0],
        scheduler,
        lambda out, t, x: scheduler.step(out, t, x, return_dict=False)[0],
    )


LIBRARIES = {"monai": _monai, "diffusers": _diffusers}


class Peer:
    """The worker's state: device, threads and the prepared workloads by id."""

    def __init__(self, message: dict[str, Any]):
        device = message["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        torch.set_num_threads(message["threads"])
        self.seed = message["seed"]
        self.workloads: dict[str, Callable[[], None]] = {}

    def describe(self) -> dict[str, Any]:
        on_cuda = self.device.type == "cuda"
        return {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device)
            if on_cuda
            else common.machine()["cpu"],
            "torch_threads": torch.get_num_threads(),
            "versions": common.package_versions(PACKAGES),
            "python": sys.executable,
        }

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _autocast(self, dtype: str):
        if dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, dtype))

    def prepare(self, m: dict[str, Any]) -> dict[str, Any]:
        """Builds workload ``m["id"]``; returns parameters, FLOPs per step, first run."""
        from torch.utils.flop_counter import FlopCounterMode

        torch.manual_seed(self.seed)
        net, forward, scheduler, step = LIBRARIES[m["library"]](m["config"])
        net = net.to(self.device)
        shape = tuple(m["shape"])  # [B, C, *S]
        gen = torch.Generator(self.device).manual_seed(self.seed)
        autocast = self._autocast(m["dtype"])
        if m["kind"] == "train":
            fn = _train_fn(net, forward, shape, self.device, gen, autocast)
        elif m["kind"] == "ddim":
            fn = _ddim_fn(
                net, forward, scheduler, step, shape, m["steps"], gen, autocast
            )
        else:
            raise ValueError(f"kind {m['kind']!r}: expected 'train' or 'ddim'")

        def call():
            fn()
            self._sync()

        with FlopCounterMode(display=False) as counter:
            _, first = common.timed(call)
        flops = counter.get_total_flops()
        steps = 1 if m["kind"] == "train" else m["steps"]
        self.workloads[m["id"]] = call
        return {
            "params": sum(p.numel() for p in net.parameters()),
            "flops_per_step": flops / steps,
            "first_run_seconds": first,
        }

    def run(self, m: dict[str, Any]) -> dict[str, Any]:
        """One timed run of workload ``m["id"]``."""
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        call = self.workloads[m["id"]]
        (_, seconds), rss = common.peak_rss_delta(lambda: common.timed(call))
        return {
            "seconds": seconds,
            "rss_peak_delta_bytes": rss,
            "device_peak_bytes": torch.cuda.max_memory_allocated() if on_cuda else None,
        }

    def drop(self, m: dict[str, Any]) -> dict[str, Any]:
        self.workloads.pop(m["id"], None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return {}


def _train_fn(net, forward, shape, device, gen, autocast) -> Callable[[], None]:
    """One optimiser step on a fixed batch ``shape`` ``[B, C, *S]`` in [-1, 1]."""
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.0)
    ema = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(EMA_DECAY)
    )
    betas = torch.linspace(1e-4, 0.02, NUM_TIMESTEPS, device=device)
    alpha_bar = torch.cumprod(1.0 - betas, dim=0)  # [T]
    x0 = torch.rand(shape, generator=gen, device=device) * 2 - 1
    b, ones = shape[0], (1,) * (len(shape) - 1)

    def step():
        t = torch.randint(0, NUM_TIMESTEPS, (b,), generator=gen, device=device)
        noise = torch.randn(shape, generator=gen, device=device)
        a = alpha_bar[t].view(b, *ones)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with autocast:
            out = forward(x_t, t)
        loss = torch.nn.functional.mse_loss(out.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update_parameters(net)

    return step


def _ddim_fn(net, forward, scheduler, step, shape, steps, gen, autocast):
    """``steps``-step DDIM of ``shape`` ``[B, C, *S]`` from Gaussian noise."""
    net.eval()
    b = shape[0]

    def sample():
        scheduler.set_timesteps(steps)
        x = torch.randn(shape, generator=gen, device=gen.device)
        with torch.no_grad():
            for t in scheduler.timesteps:
                with autocast:
                    out = forward(x, torch.full((b,), int(t), device=x.device))
                x = step(out.float(), t, x)
        return x

    return sample


def main() -> None:
    """Serves requests on stdin/stdout until ``{"cmd": "exit"}``."""
    common.serve_peer(Peer, ("prepare", "run", "drop"))


if __name__ == "__main__":
    main()
