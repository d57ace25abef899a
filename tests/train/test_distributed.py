"""Multi-host: two JAX processes on localhost train together like one process; argument checks."""

import os
import pathlib
import re
import socket
import subprocess
import sys

import grain
import jax
import numpy as np
import pytest

from gensynth.data import make_loader
from gensynth.train import initialize_distributed, make_mesh

from . import multihost_worker as worker

NUM_PROCESSES, DEVICES_PER_PROCESS = 2, 2
PARAM_ATOL = 2e-6  # as in test_scaling (measured: 6e-8, gloo sums across processes in another order)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_env(port: int, process_id: int) -> dict[str, str]:
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    return {
        **os.environ,
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={DEVICES_PER_PROCESS}".strip(),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(NUM_PROCESSES),
        "JAX_PROCESS_ID": str(process_id),
    }


def _start_workers(tmp_path) -> list[tuple[subprocess.Popen, pathlib.Path]]:
    """Starts the worker processes together; each will write ``process_<i>.npz``."""
    port = _free_port()
    workers = []
    for i in range(NUM_PROCESSES):
        out = tmp_path / f"process_{i}.npz"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.train.multihost_worker", str(out)],
            cwd=REPO_ROOT,
            env=_worker_env(port, i),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        workers.append((proc, out))
    return workers


def _wait_for_workers(workers, timeout_s: float = 60.0) -> list[dict[str, np.ndarray]]:
    """Waits for every worker (killing all of them after ``timeout_s``); returns what each wrote."""
    logs = []
    try:
        for proc, _ in workers:
            logs.append(proc.communicate(timeout=timeout_s)[0])
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for i, ((proc, _), log) in enumerate(zip(workers, logs, strict=True)):
        assert proc.returncode == 0, f"process {i} exited with {proc.returncode}:\n{log[-3000:]}"
    return [dict(np.load(out)) for _, out in workers]


def _one_process_global_batches():
    """The global batches of the two-process run, read in this one process: each step the
    batch of shard 0 followed by the batch of shard 1 (make_loader's per-process split)."""
    shards = [
        iter(
            make_loader(
                worker.source(),
                batch_size=worker.GLOBAL_BATCH // NUM_PROCESSES,
                seed=0,
                shard_options=grain.sharding.ShardOptions(i, NUM_PROCESSES, drop_remainder=True),
            )
        )
        for i in range(NUM_PROCESSES)
    ]
    while True:
        parts = [next(shard) for shard in shards]
        yield {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


@pytest.mark.skipif(sys.platform == "win32", reason="jax's CPU collectives (gloo) run on Linux and macOS only")
def test_two_processes_train_together_like_one_process(tmp_path):
    workers = _start_workers(tmp_path)
    # Meanwhile, one process trains on the same global batches, on a mesh of the same shape.
    state, labels = worker.train(make_mesh(4, fsdp=worker.FSDP), _one_process_global_batches())
    results = _wait_for_workers(workers)

    # Really two processes of 2 devices each, with FSDP-sharded kernels on the global mesh.
    assert [int(r["process_index"]) for r in results] == [0, 1]
    assert {int(r["process_count"]) for r in results} == {NUM_PROCESSES}
    assert {int(r["device_count"]) for r in results} == {NUM_PROCESSES * DEVICES_PER_PROCESS}
    assert {int(r["num_sharded"]) for r in results} == {2}

    # Each process read its own half of every global batch.
    half = worker.GLOBAL_BATCH // NUM_PROCESSES
    labels = np.asarray(labels).reshape(worker.NUM_STEPS, NUM_PROCESSES, half)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["labels"], labels[:, i].ravel())
    assert set(results[0]["labels"]).isdisjoint(results[1]["labels"])

    # The processes agree bit for bit, and with one process training on the same global batches.
    params = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
    for i, leaf in enumerate(params):
        np.testing.assert_array_equal(results[0][f"param_{i}"], results[1][f"param_{i}"])
        np.testing.assert_allclose(results[0][f"param_{i}"], leaf, atol=PARAM_ATOL, rtol=0)
    assert int(state.step) == worker.NUM_STEPS


def test_initialize_distributed_checks_its_arguments_and_environment(monkeypatch):
    with pytest.raises(ValueError, match="num_processes"):
        initialize_distributed("127.0.0.1:1234", 0, 0)
    with pytest.raises(ValueError, match="process_id"):
        initialize_distributed("127.0.0.1:1234", 2, 2)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES"):
        initialize_distributed()
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "-1")
    with pytest.raises(ValueError, match="process_id"):
        initialize_distributed()
    monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    initialize_distributed()  # one process: nothing to join, no coordinator started
    assert jax.process_count() == 1
