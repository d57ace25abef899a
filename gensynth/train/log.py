"""Training metrics to disk: JSON lines always, TensorBoard when tensorboardX is installed."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"


class MetricsWriter:
    """Appends one JSON object per logged step to ``<run_dir>/metrics.jsonl``.

    Each line is ``{"step": int, "<name>": float, ...}`` and is flushed as it is
    written, so a crashed run keeps every logged line and a resumed run appends to
    the same file. Only JAX process 0 writes. When ``tensorboardX`` is importable the
    same scalars also go to a TensorBoard event file in ``run_dir``.

    Args:
        run_dir: the run's directory (created if missing).

    Example:
        >>> import tempfile
        >>> with MetricsWriter(tempfile.mkdtemp()) as writer:
        ...     writer.write(10, {"loss": 0.5, "steps_per_s": 3.2})
        ...     print(open(writer.path).read().strip())
        {"step": 10, "loss": 0.5, "steps_per_s": 3.2}
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = os.path.join(run_dir, METRICS_FILE)
        self._active = jax.process_index() == 0
        self._file = None
        self._tensorboard = None
        if not self._active:
            return
        os.makedirs(run_dir, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            import tensorboardX
        except ImportError:
            return
        self._tensorboard = tensorboardX.SummaryWriter(os.fspath(run_dir))

    def write(self, step: int, metrics: Mapping[str, float | np.ndarray | jax.Array]) -> None:
        """Writes the scalars ``metrics`` for ``step`` (device arrays are fetched).

        Args:
            step: the optimiser step the metrics belong to, >= 0.
            metrics: scalar values by name; non-finite values are written as null
                (JSON has no NaN).

        Raises:
            ValueError: if a value is not a scalar, or a name is ``"step"``.
        """
        if "step" in metrics:
            raise ValueError("metrics: the name 'step' is reserved for the step number")
        values = {}
        for name, value in jax.device_get(dict(metrics)).items():
            if np.ndim(value) != 0:
                raise ValueError(f"metrics[{name!r}]: expected a scalar, got shape {np.shape(value)}")
            values[name] = float(value)
        if not self._active:
            return
        line = {"step": int(step), **{k: (v if math.isfinite(v) else None) for k, v in values.items()}}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, int(step))
            self._tensorboard.flush()

    def close(self) -> None:
        """Closes the JSONL file and the TensorBoard writer."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
