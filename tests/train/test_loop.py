"""Training loop: intervals, hooks, metrics; resume in a new process is exact."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gensynth.data import ArraySource, make_loader
from gensynth.train import Checkpointer, MetricsWriter, shard_batch, train_loop

from . import train_testkit
from .train_testkit import example_images, fresh_copy, mesh_and_fresh_state, single_device_copy, tiny_train_step


def test_resume_in_a_new_process_matches_one_uninterrupted_run(tmp_path):
    num_steps = 6
    state_once, labels_once = train_testkit.run(str(tmp_path / "once"), num_steps)
    _, labels_first_half = train_testkit.run(str(tmp_path / "split"), num_steps // 2)

    out = tmp_path / "second_half.npz"
    # Same XLA_FLAGS (8 fake CPU devices) and the same compilation cache as this process.
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir}
    result = subprocess.run(
        [sys.executable, train_testkit.__file__, str(tmp_path / "split"), str(num_steps), str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    second_half = np.load(out)

    # Same data order: the first half plus the resumed second half is the one-go order.
    assert len(labels_once) == num_steps * train_testkit.BATCH_SIZE
    assert labels_first_half + second_half["labels"].tolist() == labels_once
    # Same train state (params, optimiser state, EMA, step, key), bit for bit.
    leaves_once = train_testkit.state_leaves(state_once)
    assert int(state_once.step) == num_steps
    for i, leaf in enumerate(leaves_once):
        np.testing.assert_array_equal(second_half[f"leaf_{i}"], leaf)
    with Checkpointer(tmp_path / "split" / "checkpoints") as checkpointer:
        assert checkpointer.all_steps() == [3, 4, 6]  # every 2 steps, each run's end; keep 3


def test_fused_loop_logs_checkpoints_and_calls_hooks_at_intervals(tmp_path):
    mesh, _, fresh_state = mesh_and_fresh_state()
    fuse_steps = 2
    state = fresh_copy(fresh_state)
    train_step = tiny_train_step(fuse_steps=fuse_steps)
    loader = make_loader(ArraySource(example_images(32), labels=np.arange(32)), batch_size=8, seed=0)
    hook_calls = []

    with Checkpointer(tmp_path / "checkpoints") as checkpointer, MetricsWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="multiple of fuse_steps"):
            train_loop(state, train_step, iter(loader), num_steps=5, shard_fn=None, fuse_steps=fuse_steps)
        state = train_loop(
            state,
            train_step,
            iter(loader),
            num_steps=10,
            shard_fn=lambda batch: shard_batch(batch, mesh, batch_axis=1),
            fuse_steps=fuse_steps,
            checkpointer=checkpointer,
            checkpoint_every=4,
            metrics_writer=writer,
            log_every=3,
            progress=False,
            hooks=[lambda step, state, metrics: hook_calls.append((step, int(state.step)))],
        )
        assert checkpointer.all_steps() == [4, 8, 10]

    assert int(state.step) == 10
    assert hook_calls == [(s, s) for s in (2, 4, 6, 8, 10)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 6, 10]  # passed 3, 6, 9; and the last step
    for record in records:
        assert record["loss"] > 0 and record["steps_per_s"] > 0 and record["grad_norm"] > 0


def test_loop_stops_when_finite_data_runs_out(tmp_path):
    state = single_device_copy(mesh_and_fresh_state()[2])
    train_step = tiny_train_step(sharded=False)
    loader = make_loader(ArraySource(example_images(16)), batch_size=8, seed=0, num_epochs=1)
    with pytest.warns(UserWarning, match="ran out at step 2"):
        state = train_loop(state, train_step, iter(loader), num_steps=5, shard_fn=dict, progress=False)
    assert int(state.step) == 2
