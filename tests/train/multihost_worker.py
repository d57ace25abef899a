"""One process of a multi-process run on localhost, for tests/train/test_distributed.py.

Run from the repository root, once per process, with the coordinator in the environment:

    JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \\
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m tests.train.multihost_worker OUT_NPZ

Each process reads its own shard of the data (``make_loader`` splits the records by
``jax.process_index()``) in batches of ``GLOBAL_BATCH / jax.process_count()``, the processes
train the wide TinyNet together on one ``("data", "fsdp")`` mesh over all their devices, and
each writes the gathered parameters and the labels it read to OUT_NPZ.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from gensynth.data import ArraySource, make_loader
from gensynth.train import (
    create_train_state,
    initialize_distributed,
    make_mesh,
    make_train_step,
    shard_batch,
    train_loop,
)

from .train_testkit import EMA_DECAY, NUM_EXAMPLES, OPTIMIZER, denoise_loss, example_images, init_wide_model

NUM_STEPS, GLOBAL_BATCH, FSDP = 3, 8, 2


def source() -> ArraySource:
    return ArraySource(example_images(), labels=np.arange(NUM_EXAMPLES))


def train(mesh: jax.sharding.Mesh, data_iterator: Iterator[dict]) -> tuple[object, list[int]]:
    """NUM_STEPS steps of the wide TinyNet on ``mesh``; returns the state and the labels read."""
    graphdef, state = create_train_state(jax.random.key(1), init_wide_model, OPTIMIZER, mesh=mesh)
    train_step = make_train_step(graphdef, denoise_loss, OPTIMIZER, ema_decay=EMA_DECAY, mesh=mesh)
    labels: list[int] = []

    def shard_fn(batch):
        labels.extend(batch["label"].tolist())
        return shard_batch(batch, mesh)

    state = train_loop(state, train_step, data_iterator, num_steps=NUM_STEPS, shard_fn=shard_fn, progress=False)
    return state, labels


def main(out_path: str) -> None:
    initialize_distributed()  # from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
    mesh = make_mesh(fsdp=FSDP)  # every device of every process
    loader = make_loader(source(), batch_size=GLOBAL_BATCH // jax.process_count(), seed=0)
    state, labels = train(mesh, iter(loader))
    params = jax.tree.leaves(state.params)
    gathered = multihost_utils.process_allgather(params, tiled=True)  # full arrays on every process
    np.savez(
        out_path,
        labels=np.asarray(labels),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        device_count=jax.device_count(),
        num_sharded=sum(not leaf.sharding.is_fully_replicated for leaf in params),
        **{f"param_{i}": np.asarray(leaf) for i, leaf in enumerate(gathered)},
    )


if __name__ == "__main__":
    main(sys.argv[1])
