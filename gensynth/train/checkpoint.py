"""Orbax checkpoints of a training run: train state, data-iterator position, config.

Each checkpoint step is a directory with three named items:

- ``state``: the ``TrainState`` pytree (params, optimiser state, EMA, step, key),
  written by Orbax's standard handler and restored onto a template state, so each
  array comes back with the template's sharding;
- ``data_iter``: the grain iterator's position, via grain's own Orbax handler
  (``grain.checkpoint.CheckpointSave``: the iterator's ``get_state()`` JSON, one file
  per JAX process), captured synchronously when ``save`` is called;
- ``config``: the run configuration as JSON.

Saves are asynchronous (the host copy is taken before ``save`` returns, so the
next train step may donate the state's buffers); ``restore``, ``wait`` and
``close`` wait for saves in flight. The resume order lives in ``resolve_resume``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from gensynth.train.state import TrainState

_STATE, _DATA_ITER, _CONFIG = "state", "data_iter", "config"


class Checkpointer:
    """Saves and restores training checkpoints in one directory (an Orbax manager).

    Args:
        directory: checkpoint directory (created if missing); one sub-directory
            per saved step.
        max_to_keep: newest checkpoints kept; older ones are deleted. None keeps all.

    Raises:
        ValueError: if ``max_to_keep`` is not None or a positive int.

    Example:
        >>> import tempfile, optax
        >>> from flax import nnx
        >>> from gensynth.train.state import create_train_state
        >>> _, state = create_train_state(
        ...     jax.random.key(0), lambda: nnx.Linear(2, 2, rngs=nnx.Rngs(0)), optax.sgd(0.1))
        >>> with Checkpointer(tempfile.mkdtemp()) as checkpointer:
        ...     checkpointer.save(0, state, config={"lr": 0.1})
        ...     restored, config = checkpointer.restore(state)
        >>> config, checkpointer.all_steps()
        ({'lr': 0.1}, [0])
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep: expected a positive int or None, got {max_to_keep}")
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True),
            item_handlers={
                _STATE: ocp.StandardCheckpointHandler(),
                _DATA_ITER: grain.checkpoint.CheckpointHandler(),
                _CONFIG: ocp.JsonCheckpointHandler(),
            },
        )

    def save(
        self,
        step: int,
        state: TrainState,
        data_iterator: Iterator | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Starts saving checkpoint ``step``; returns once the data is copied to host.

        Args:
            step: the checkpoint's step number (normally ``int(state.step)``).
            state: the train state to save (any pytree of arrays restores the same way).
            data_iterator: grain iterator (``iter(loader)``) whose current position is
                saved; the position is read now, before ``save`` returns.
            config: JSON-serialisable run configuration.

        Raises:
            ValueError: if checkpoint ``step`` already exists in the directory.
        """
        if step in self._manager.all_steps():
            raise ValueError(f"step: checkpoint {step} already exists in {self.directory}")
        items = {_STATE: ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items[_DATA_ITER] = grain.checkpoint.CheckpointSave(data_iterator)
        if config is not None:
            items[_CONFIG] = ocp.args.JsonSave(dict(config))
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def latest_step(self) -> int | None:
        """The newest saved step (including a save still in flight), or None if none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All saved steps, oldest first."""
        return sorted(self._manager.all_steps())

    def restore(
        self,
        state_template: TrainState,
        data_iterator: Iterator | None = None,
        step: int | None = None,
    ) -> tuple[TrainState, dict[str, Any] | None]:
        """Restores a checkpoint onto the template's structure, dtypes and shardings.

        Args:
            state_template: a train state of the same structure, concrete or abstract
                (``jax.ShapeDtypeStruct`` leaves with ``sharding`` set); each restored
                array takes its template leaf's sharding.
            data_iterator: grain iterator whose position is set, in place, to the
                saved one; None leaves any saved position unread.
            step: which checkpoint; None takes the latest.

        Returns:
            ``(state, config)``; ``config`` is the saved dict, or None if none was saved.

        Raises:
            FileNotFoundError: if there is no checkpoint (or no checkpoint ``step``).
            ValueError: if ``data_iterator`` is given but the checkpoint holds no
                data-iterator position.
        """
        self._manager.wait_until_finished()
        if step is None:
            step = self._manager.latest_step()
        if step is None or step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"step: no checkpoint {'at all' if step is None else step} in {self.directory}"
            )
        saved_items = set(self._manager.item_metadata(step).keys())
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        items = {_STATE: ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            if _DATA_ITER not in saved_items:
                raise ValueError(
                    f"data_iterator: checkpoint {step} in {self.directory} holds no data-iterator position"
                )
            items[_DATA_ITER] = grain.checkpoint.CheckpointRestore(data_iterator)
        if _CONFIG in saved_items:
            items[_CONFIG] = ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored[_STATE], restored[_CONFIG] if _CONFIG in items else None

    def wait(self) -> None:
        """Blocks until every save in flight has been committed to disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for saves in flight and releases the manager's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def resolve_resume(
    checkpointer: Checkpointer,
    fresh_state: TrainState,
    data_iterator: Iterator | None = None,
) -> tuple[TrainState, dict[str, Any] | None]:
    """The one place that decides where a run starts: its latest checkpoint, else fresh.

    Args:
        checkpointer: the run's checkpointer.
        fresh_state: the state to start from when there is no checkpoint; also the
            restore template (structure, dtypes, shardings).
        data_iterator: grain iterator, set in place to the saved position on resume
            (left at its start for a fresh run).

    Returns:
        ``(state, config)``: the latest checkpoint's state and saved config, or
        ``(fresh_state, None)`` when the directory holds no checkpoint.
    """
    if checkpointer.latest_step() is None:
        return fresh_state, None
    return checkpointer.restore(fresh_state, data_iterator)
