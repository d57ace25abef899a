"""The named suites of ``benchmarks/suite.py`` (``gensynth bench --suite NAME``): which
workloads run, at which sizes, with which network.

Standard library only, so that the definitions can be read (and tested) without jax or torch.

- ``quick``: what fits in 10 minutes on 2 shared CPU cores, peers included: the reference
  U-Net's train step at 64x64, DDIM and PC sampling measured over a few steps and scaled to
  their full step counts, and the MRI solves of ``inverse_solvers.py`` with the demo U-Net.
- ``full``: every size of the issue (2D 64/128/256, 3D 64/128), every sampler run in full,
  the solves with the ADM-size U-Net at their default NFE; meant for an accelerator.
- ``smoke``: a tiny U-Net, seconds on a CPU; checks the harness, not the library's speed.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Net:
    """A U-Net layout in the terms of MONAI's ``DiffusionModelUNet`` and diffusers'
    ``UNet2DModel``; gensynth builds the same network through ``gensynth.models.convert``."""

    channels: tuple[
        int, ...
    ]  # width of each resolution level, highest resolution first
    attention: tuple[
        bool, ...
    ]  # self-attention at each level (the middle block has it)
    num_res_blocks: int  # ResBlocks per encoder level (decoder: one more)
    head_dim: int  # channels per attention head
    groups: int  # GroupNorm groups

    def monai_config(self, spatial_dims: int) -> dict[str, Any]:
        """``DiffusionModelUNet`` constructor arguments (one input and output channel).

        >>> REFERENCE_NET.monai_config(2)["attention_levels"]
        [False, False, True, True]
        """
        return {
            "spatial_dims": spatial_dims,
            "in_channels": 1,
            "out_channels": 1,
            "channels": list(self.channels),
            "attention_levels": list(self.attention),
            "num_res_blocks": self.num_res_blocks,
            "num_head_channels": self.head_dim,
            "norm_num_groups": self.groups,
        }

    def diffusers_config(self, size: int) -> dict[str, Any]:
        """``UNet2DModel`` config entries for ``size`` x ``size`` images (one channel).

        >>> REFERENCE_NET.diffusers_config(64)["down_block_types"][-1]
        'AttnDownBlock2D'
        """
        down = ["AttnDownBlock2D" if a else "DownBlock2D" for a in self.attention]
        return {
            "sample_size": size,
            "in_channels": 1,
            "out_channels": 1,
            "block_out_channels": list(self.channels),
            "down_block_types": down,
            "up_block_types": [b.replace("Down", "Up") for b in reversed(down)],
            "layers_per_block": self.num_res_blocks,
            "attention_head_dim": self.head_dim,
            "norm_num_groups": self.groups,
        }


# The reference network of the 2D comparison (benchmarks/README.md): 18.5 M parameters.
REFERENCE_NET = Net((64, 128, 128, 256), (False, False, True, True), 2, 32, 32)
TINY_NET = Net((8, 16), (False, True), 1, 8, 4)


@dataclasses.dataclass(frozen=True)
class Train:
    """One optimiser step (AdamW, clipping, EMA) of the eps-prediction loss."""

    size: int  # side of the square image (px) or cubic volume (voxels)
    spatial_dims: int  # 2 or 3
    batch: int  # examples per step

    @property
    def name(self) -> str:
        return f"train {'x'.join([str(self.size)] * self.spatial_dims)} B={self.batch}"


@dataclasses.dataclass(frozen=True)
class DDIM:
    """Deterministic DDIM sampling (eta 0, x0 clipped) of ``batch`` 2D images."""

    size: int  # image side (px)
    batch: int  # images per run
    num_steps: tuple[int, ...]  # sampler steps (= NFE) reported
    measured_steps: int | None  # K steps run and scaled to each N; None: each N in full

    @property
    def name(self) -> str:
        return f"ddim {self.size}x{self.size} B={self.batch}"


@dataclasses.dataclass(frozen=True)
class PC:
    """Predictor-corrector sampling (reverse diffusion + Langevin, the VE view of the VP
    network, as score-MRI samples) of ``batch`` 2D images."""

    size: int  # image side (px)
    batch: int  # images per run
    num_steps: int  # noise levels N; NFE = N (1 + n_corrector)
    n_corrector: int  # Langevin steps per level
    measured_steps: int | None  # K levels run and scaled to N; None: all N

    @property
    def name(self) -> str:
        return f"pc {self.size}x{self.size} B={self.batch}"


@dataclasses.dataclass(frozen=True)
class Inverse:
    """The MRI solves of ``inverse_solvers.py`` (its options; deepinv's DPS is the peer)."""

    preset: str  # "cpu" (demo U-Net, 64 px) or "gpu" (ADM-size, 128 px)
    solvers: tuple[str, ...]  # gensynth solvers; "projection" is score-MRI
    batch_sizes: tuple[int, ...]
    quick: int | None  # K steps for solvers above 200 NFE, scaled; None: in full


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named set of workloads; ``repeats`` timed runs of each after one warm-up."""

    name: str
    description: str
    net: Net  # the network of the train, DDIM and PC workloads
    train: tuple[Train, ...]
    ddim: tuple[DDIM, ...]
    pc: tuple[PC, ...]
    inverse: Inverse | None
    repeats: int


INVERSE_SOLVERS = ("projection", "mcg", "dps", "dds")

SUITES = {
    "quick": Suite(
        name="quick",
        description="CPU, <= 10 min with peers: 64x64 train step, samplers over a few "
        "steps scaled to their full counts, MRI solves with the demo U-Net",
        net=REFERENCE_NET,
        train=(Train(64, 2, 8),),
        ddim=(DDIM(64, 8, (50, 100), measured_steps=3),),
        pc=(PC(64, 8, 1000, 1, measured_steps=2),),
        inverse=Inverse("cpu", INVERSE_SOLVERS, (1,), quick=5),
        repeats=3,
    ),
    "full": Suite(
        name="full",
        description="accelerators: every size, every sampler in full, MRI solves with "
        "the ADM-size U-Net at their default NFE",
        net=REFERENCE_NET,
        train=(
            Train(64, 2, 8),
            Train(128, 2, 8),
            Train(256, 2, 8),
            Train(64, 3, 2),
            Train(128, 3, 1),
        ),
        ddim=(DDIM(64, 8, (50, 100), None), DDIM(128, 8, (50, 100), None)),
        pc=(PC(64, 8, 1000, 1, None),),
        inverse=Inverse("gpu", INVERSE_SOLVERS, (1, 4), quick=None),
        repeats=5,
    ),
    "smoke": Suite(
        name="smoke",
        description="a tiny U-Net in seconds: checks the harness, not the speed",
        net=TINY_NET,
        train=(Train(16, 2, 2),),
        ddim=(DDIM(16, 2, (10,), measured_steps=2),),
        pc=(PC(16, 2, 10, 1, measured_steps=2),),
        inverse=None,
        repeats=1,
    ),
}


def validate(suite: Suite) -> Suite:
    """Checks a suite's sizes and step counts; raises ValueError naming the workload.

    >>> validate(SUITES["quick"]).name
    'quick'
    """
    net = suite.net
    if len(net.attention) != len(net.channels):
        raise ValueError(f"{suite.name}: net.attention needs one entry per level")
    factor = 2 ** (len(net.channels) - 1)
    if suite.repeats < 1:
        raise ValueError(f"{suite.name}: repeats {suite.repeats}: expected >= 1")
    for w in (*suite.train, *suite.ddim, *suite.pc):
        if w.size % factor or w.batch < 1:
            raise ValueError(
                f"{suite.name} {w.name}: size must be divisible by {factor} and batch >= 1"
            )
    for w in suite.train:
        if w.spatial_dims not in (2, 3):
            raise ValueError(f"{suite.name} {w.name}: spatial_dims must be 2 or 3")
    for w in suite.ddim:
        if not w.num_steps or (w.measured_steps or 1) > min(w.num_steps):
            raise ValueError(
                f"{suite.name} {w.name}: measured_steps must not exceed num_steps"
            )
    for w in suite.pc:
        if w.n_corrector < 0 or (w.measured_steps or 1) > w.num_steps:
            raise ValueError(
                f"{suite.name} {w.name}: needs n_corrector >= 0 and measured_steps <= "
                "num_steps"
            )
    if suite.inverse and set(suite.inverse.solvers) - set(INVERSE_SOLVERS):
        raise ValueError(
            f"{suite.name}: inverse solvers must be some of {INVERSE_SOLVERS}"
        )
    return suite


def get_suite(name: str) -> Suite:
    """The suite called ``name``, validated.

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    if name not in SUITES:
        raise ValueError(f"--suite {name!r}: expected one of {sorted(SUITES)}")
    return validate(SUITES[name])
