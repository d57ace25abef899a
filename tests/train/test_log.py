"""MetricsWriter: valid, flushed JSON lines, appended across writers."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.train import MetricsWriter


def test_writes_one_valid_json_object_per_line(tmp_path):
    writer = MetricsWriter(tmp_path / "run")
    writer.write(10, {"loss": jnp.float32(0.25), "steps_per_s": 3.5})
    # Flushed immediately: readable before close.
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": 10, "loss": 0.25, "steps_per_s": 3.5}]
    writer.write(20, {"loss": np.float64(math.nan), "steps_per_s": 4})
    writer.close()
    with MetricsWriter(tmp_path / "run") as resumed:  # a resumed run appends
        resumed.write(30, {"loss": 0.125})
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records == [
        {"step": 10, "loss": 0.25, "steps_per_s": 3.5},
        {"step": 20, "loss": None, "steps_per_s": 4.0},
        {"step": 30, "loss": 0.125},
    ]


def test_refuses_non_scalars_and_reserved_names(tmp_path):
    with MetricsWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="scalar"):
            writer.write(1, {"loss": np.zeros(3)})
        with pytest.raises(ValueError, match="step"):
            writer.write(1, {"step": 1.0})
