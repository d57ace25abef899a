"""Joining a multi-process (multi-host) run: one JAX process per host, one global mesh.

After ``initialize_distributed`` every process sees all devices of the run in
``jax.devices()``, so ``make_mesh()`` spans the pod; each process reads its own
shard of the data (``make_loader`` splits records by ``jax.process_index()``) with a
per-process batch of ``B / jax.process_count()``, and ``shard_batch`` assembles the
global batch. Every process runs the same program on the same global arrays.
"""

from __future__ import annotations

import os

import jax

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"  # host:port of process 0's coordinator
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


def _int_from_env(value: int | None, env_name: str) -> int | None:
    if value is not None or env_name not in os.environ:
        return value
    text = os.environ[env_name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{env_name}: expected an integer, got {text!r}") from None


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Connects this process to the others of a multi-process run (``jax.distributed``).

    Call it once per process, before any other JAX call. Arguments left as None
    are read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``; whatever is still unknown is left to
    ``jax.distributed.initialize``'s detection of SLURM, Open MPI, Kubernetes and
    Cloud TPU environments (on a TPU pod, call it with no arguments and no
    variables set). A run of one process needs no call; with ``num_processes=1``
    this returns without starting a coordinator.

    Args:
        coordinator_address: ``"host:port"`` of process 0, reachable from every
            process (process 0 listens on that port).
        num_processes: number of processes in the run, >= 1.
        process_id: this process's index in ``[0, num_processes)``; 0 runs the
            coordinator.

    Raises:
        ValueError: if an environment variable is not an integer, ``num_processes``
            is below 1, or ``process_id`` is outside ``[0, num_processes)``.

    Example:
        >>> initialize_distributed(num_processes=1)  # a single-process run: nothing to join
        >>> jax.process_count()
        1
    """
    coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV) or None
    num_processes = _int_from_env(num_processes, NUM_PROCESSES_ENV)
    process_id = _int_from_env(process_id, PROCESS_ID_ENV)
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes: expected an int >= 1, got {num_processes}")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise ValueError(f"process_id: expected an int in [0, num_processes={num_processes}), got {process_id}")
    if num_processes == 1:
        return
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
