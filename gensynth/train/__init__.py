"""Training: mesh and shardings, train state, optimiser, the jitted step, checkpoints, the loop."""

from gensynth.train.checkpoint import Checkpointer, resolve_resume
from gensynth.train.compile import CompileStats, compile_aot
from gensynth.train.distributed import initialize_distributed
from gensynth.train.log import MetricsWriter
from gensynth.train.loop import train_loop
from gensynth.train.mesh import data_sharding, make_mesh, param_sharding, replicated, shard_batch
from gensynth.train.optim import make_lr_schedule, make_optimizer
from gensynth.train.state import TrainState, create_train_state
from gensynth.train.step import make_train_step

__all__ = [
    "Checkpointer",
    "CompileStats",
    "MetricsWriter",
    "TrainState",
    "compile_aot",
    "create_train_state",
    "data_sharding",
    "initialize_distributed",
    "make_lr_schedule",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "param_sharding",
    "replicated",
    "resolve_resume",
    "shard_batch",
    "train_loop",
]
