"""The generic training loop: feed batches, step, log, checkpoint, resume.

It knows nothing about the model or the loss: it moves host batches from a grain
iterator to the devices, calls a compiled train step, and at intervals writes
metrics and checkpoints (train state + data-iterator position + config). The
host only waits for the device at log points, so steps are dispatched ahead.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from gensynth.train.checkpoint import Checkpointer
from gensynth.train.log import MetricsWriter
from gensynth.train.state import TrainState

TrainStepFn = Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
HookFn = Callable[[int, TrainState, dict[str, jax.Array]], None]


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return after // every > before // every


def _next_host_batch(data_iterator: Iterator, fuse_steps: int) -> dict[str, np.ndarray]:
    """The next batch, or ``fuse_steps`` batches stacked on a new leading axis ``[k, ...]``."""
    if fuse_steps == 1:
        return next(data_iterator)
    batches = [next(data_iterator) for _ in range(fuse_steps)]
    return {name: np.stack([batch[name] for batch in batches]) for name in batches[0]}


def train_loop(
    state: TrainState,
    train_step: TrainStepFn,
    data_iterator: Iterator[dict[str, np.ndarray]],
    *,
    num_steps: int,
    shard_fn: Callable[[dict[str, np.ndarray]], Mapping[str, jax.Array]],
    fuse_steps: int = 1,
    checkpointer: Checkpointer | None = None,
    checkpoint_every: int = 1000,
    config: Mapping[str, Any] | None = None,
    metrics_writer: MetricsWriter | None = None,
    log_every: int = 100,
    progress: bool = True,
    hooks: Sequence[HookFn] = (),
) -> TrainState:
    """Trains from ``state.step`` up to ``num_steps`` optimiser steps.

    Args:
        state: the train state to start from (fresh, or restored by ``resolve_resume``;
            training continues at ``state.step``). It is donated to the step.
        train_step: compiled ``train_step(state, batch) -> (state, metrics)`` from
            ``make_train_step`` (with the same ``fuse_steps``).
        data_iterator: grain iterator (``iter(loader)``) yielding dicts of host arrays
            ``[B, ...]``; its position is checkpointed with the state.
        num_steps: total optimiser steps of the run (not steps of this call).
        shard_fn: moves a host batch to the devices, e.g.
            ``functools.partial(shard_batch, mesh=mesh, batch_axis=1 if fused else 0)``.
        fuse_steps: optimiser steps per ``train_step`` call (k); k batches are stacked
            into ``[k, B, ...]`` for each call.
        checkpointer: where to save; None saves nothing.
        checkpoint_every: save whenever the step passes a multiple of this, and at
            the end of the run.
        config: JSON-serialisable run configuration stored in each checkpoint.
        metrics_writer: receives ``train_step``'s metrics plus ``steps_per_s`` at log
            points; None writes none.
        log_every: fetch and log metrics whenever the step passes a multiple of this,
            and at the last step (the first interval's ``steps_per_s`` includes compiling).
        progress: show a tqdm bar (process 0 only) with steps/s and every metric
            whose name ends in ``loss``.
        hooks: ``hook(step, state, metrics)`` called after every ``train_step`` call
            with the new step, state and (device) metrics, e.g. to draw samples at
            intervals; the state is donated to the next step, so use it right away.

    Returns:
        The final train state (at ``num_steps``, or earlier if the data ran out).

    Raises:
        ValueError: for non-positive intervals or ``fuse_steps``, or if
            ``num_steps - state.step`` is not a multiple of ``fuse_steps``.
    """
    for name, value in (("fuse_steps", fuse_steps), ("checkpoint_every", checkpoint_every), ("log_every", log_every)):
        if value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value}")
    step = int(state.step)
    if num_steps > step and (num_steps - step) % fuse_steps:
        raise ValueError(
            f"num_steps: expected the {num_steps - step} remaining steps (from step {step}) to be a "
            f"multiple of fuse_steps={fuse_steps}, got num_steps={num_steps}"
        )
    bar = tqdm(
        total=num_steps,
        initial=min(step, num_steps),
        unit="step",
        dynamic_ncols=True,
        disable=not progress or jax.process_index() != 0,
    )
    log_step, log_time = step, time.perf_counter()
    while step < num_steps:
        try:
            host_batch = _next_host_batch(data_iterator, fuse_steps)
        except StopIteration:
            warnings.warn(f"data_iterator ran out at step {step} of {num_steps}; stopping early", stacklevel=2)
            break
        state, metrics = train_step(state, shard_fn(host_batch))
        previous, step = step, step + fuse_steps
        bar.update(fuse_steps)
        if _crossed(previous, step, log_every) or step == num_steps:
            values = jax.device_get(metrics)
            now = time.perf_counter()
            values["steps_per_s"] = (step - log_step) / (now - log_time)
            log_step, log_time = step, now
            shown = {name: f"{value:.4g}" for name, value in values.items() if name.endswith("loss")}
            bar.set_postfix(**shown, steps_per_s=f"{values['steps_per_s']:.3g}")
            if metrics_writer is not None:
                metrics_writer.write(step, values)
        for hook in hooks:
            hook(step, state, metrics)
        if checkpointer is not None and _crossed(previous, step, checkpoint_every):
            checkpointer.save(step, state, data_iterator, config)
    bar.close()
    if checkpointer is not None and step not in checkpointer.all_steps():
        checkpointer.save(step, state, data_iterator, config)
    return state
