"""A tiny model, loss and end-to-end training run shared by the train tests.

Run as a script it trains (or resumes) a run in a fresh process and writes the
final state leaves and the labels of every batch it consumed to an .npz file:

    python train_testkit.py RUN_DIR NUM_STEPS OUT_NPZ
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gensynth.data import ArraySource, make_loader
from gensynth.train import (
    Checkpointer,
    create_train_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    resolve_resume,
    shard_batch,
    train_loop,
)

NUM_EXAMPLES, IMAGE_SIZE, BATCH_SIZE = 64, 8, 8


class TinyNet(nnx.Module):
    """Two 3x3 convolutions, [B, H, W, C] -> [B, H, W, C]."""

    def __init__(self, channels: int = 1, hidden: int = 8, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, hidden, (3, 3), dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(hidden, channels, (3, 3), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv2(jax.nn.gelu(self.conv1(x)))


def denoise_loss(model: TinyNet, key: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """Predict the Gaussian noise added to the image (uses the step key)."""
    x = batch["image"]
    noise = jax.random.normal(key, x.shape, x.dtype)
    pred = model(x + 0.5 * noise)
    loss = jnp.mean((pred.astype(jnp.float32) - noise) ** 2)
    return loss, {"key_uniform": jax.random.uniform(key)}


def example_images(n: int = NUM_EXAMPLES, size: int = IMAGE_SIZE) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


def init_model() -> TinyNet:
    return TinyNet(rngs=nnx.Rngs(0))


def init_wide_model() -> TinyNet:
    """TinyNet whose two kernels (1152 elements each) are large enough for FSDP to split."""
    return TinyNet(hidden=128, rngs=nnx.Rngs(0))


# One optimiser and EMA decay for every test, so each program compiles once per process.
OPTIMIZER = make_optimizer(1e-2, warmup_steps=2)
EMA_DECAY = 0.9


@functools.cache
def mesh_and_fresh_state():
    """The 8-device mesh, the model graph and a fresh replicated state (compiled once).

    The state is shared: pass ``fresh_copy(state)`` to anything that donates it.
    """
    mesh = make_mesh()
    graphdef, state = create_train_state(jax.random.key(1), init_model, OPTIMIZER, mesh=mesh)
    return mesh, graphdef, state


def fresh_copy(state):
    """A copy of ``state`` in new buffers (safe to donate)."""
    return jax.tree.map(jnp.copy, state)


def single_device_copy(state):
    """A copy of ``state`` on device 0 only, in new buffers (safe to donate).

    ``device_put`` from a replicated array aliases device 0's buffer (even with
    ``may_alias=False``), so donating its result would free the original; copy.
    """
    return fresh_copy(jax.device_put(state, jax.sharding.SingleDeviceSharding(jax.devices()[0])))


@functools.cache
def tiny_train_step(sharded: bool = True, fuse_steps: int = 1, compute_dtype=jnp.float32):
    """The jitted train step for TinyNet (on the mesh or unsharded), built once per process."""
    mesh, graphdef, _ = mesh_and_fresh_state()
    return make_train_step(
        graphdef,
        denoise_loss,
        OPTIMIZER,
        ema_decay=EMA_DECAY,
        compute_dtype=compute_dtype,
        mesh=mesh if sharded else None,
        fuse_steps=fuse_steps,
    )


def run(run_dir: str, num_steps: int) -> tuple[object, list[int]]:
    """Trains (resuming from RUN_DIR/checkpoints if present) up to ``num_steps``.

    Returns the final train state and the labels of every example consumed, in order.
    """
    mesh, _, fresh_state = mesh_and_fresh_state()
    source = ArraySource(example_images(), labels=np.arange(NUM_EXAMPLES))
    data_iterator = iter(make_loader(source, batch_size=BATCH_SIZE, seed=0))
    with Checkpointer(f"{run_dir}/checkpoints") as checkpointer:
        state, _ = resolve_resume(checkpointer, fresh_copy(fresh_state), data_iterator)
        train_step = tiny_train_step()
        seen_labels: list[int] = []

        def shard_fn(batch):
            seen_labels.extend(int(label) for label in batch["label"])
            return shard_batch(batch, mesh)

        state = train_loop(
            state,
            train_step,
            data_iterator,
            num_steps=num_steps,
            shard_fn=shard_fn,
            checkpointer=checkpointer,
            checkpoint_every=2,
            config={"num_steps": num_steps},
            progress=False,
        )
    return state, seen_labels


def state_leaves(state) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


if __name__ == "__main__":
    run_dir, num_steps, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    final_state, labels = run(run_dir, num_steps)
    leaves = {f"leaf_{i}": leaf for i, leaf in enumerate(state_leaves(final_state))}
    np.savez(out_path, labels=np.asarray(labels), **leaves)
