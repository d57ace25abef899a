"""Run folders are never reused; atomic writes leave no partial file behind."""

import os

import pytest

from gensynth import runs


def test_new_run_dir_is_always_new(tmp_path):
    first = runs.new_run_dir(tmp_path, "demo")
    second = runs.new_run_dir(tmp_path, "demo")
    assert first != second and first.is_dir() and second.is_dir()


def test_atomic_write_replaces_and_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "metrics.json"
    runs.atomic_write_json(path, {"a": 1})
    assert path.read_text().strip() == '{\n  "a": 1\n}'
    with pytest.raises(RuntimeError), runs.atomic_path(path) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash while writing")
    assert '"a": 1' in path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
