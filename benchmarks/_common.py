"""Helpers shared by the benchmarks: machine facts, versions, timing, peak memory, a peer
process spoken to in JSON lines, and the JSON + markdown results.

Standard library only: the same file is imported by the JAX driver and by the PyTorch peer
worker, which run in different virtual environments.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

MIB = 2**20

# Dense peak FLOP/s per device kind and compute dtype, for MFU. float32 is the TF32
# tensor-core rate (XLA and cuDNN use TF32 for float32 convolutions by default).
# Devices not listed (CPUs included) get no MFU.
PEAK_FLOPS = {
    "H200": {"float32": 494.7e12, "bfloat16": 989.4e12},
    "H100": {"float32": 494.7e12, "bfloat16": 989.4e12},
    "A100": {"float32": 156e12, "bfloat16": 312e12},
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """Dense peak FLOP/s of a device kind (e.g. ``"NVIDIA H200"``) for ``dtype``, or None.

    >>> peak_flops("NVIDIA H200", "bfloat16")
    989400000000000.0
    >>> peak_flops("cpu", "float32") is None
    True
    """
    for name, by_dtype in PEAK_FLOPS.items():
        if name in device_kind.upper():
            return by_dtype.get(dtype)
    return None


# ---------------------------------------------------------------- machine and versions


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_bytes() -> int | None:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask)."""
    return len(os.sched_getaffinity(0))


def machine() -> dict[str, Any]:
    """Host facts: OS, CPU model, logical and usable cores, memory, load average."""
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cores(),
        "memory_bytes": _mem_total_bytes(),
        "load_average": list(os.getloadavg()),
    }


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of ``names`` (None if absent) plus the Python version."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(path: str | os.PathLike) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git work tree at ``path`` (read only; Nones without git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(path), *args],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": None if status is None else bool(status),
    }


# ---------------------------------------------------------------- timing and memory


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), wall seconds)``; ``fn`` must block until its work is done."""
    began = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - began


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of repeated timings (seconds), and the timings themselves.

    >>> summarize([3.0, 1.0, 2.0])["median"]
    2.0
    """
    if not seconds:
        raise ValueError("seconds: expected at least one timing")
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "all": list(seconds),
    }


def _status_kib(field: str) -> int | None:
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_delta(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """``(fn(), bytes)``: how far the process's peak resident set rose above its resident set
    before the call. Resets the peak (``/proc/self/clear_refs``) first; None where Linux's
    ``/proc`` is missing or the reset is refused (the old peak would hide the new one)."""
    before = _status_kib("VmRSS")
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        before = None
    out = fn()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return out, None
    return out, max(0, peak - before) * 1024


# ---------------------------------------------------------------- peer process

ENV_PEER_PYTHON = "GENSYNTH_PEER_PYTHON"


def find_peer_python(explicit: str | None) -> tuple[str | None, str]:
    """The peers' Python and where it came from, or ``(None, why not)``: ``explicit``
    (``--peer-python``), else ``$GENSYNTH_PEER_PYTHON``, else this Python if it has torch."""
    if explicit:
        return explicit, "--peer-python"
    if os.environ.get(ENV_PEER_PYTHON):
        return os.environ[ENV_PEER_PYTHON], f"${ENV_PEER_PYTHON}"
    if importlib.util.find_spec("torch") is not None:
        return sys.executable, "this Python (has torch)"
    return None, (
        f"no torch in this Python and neither --peer-python nor ${ENV_PEER_PYTHON} set; "
        "see benchmarks/README.md for the peers' venv"
    )


class PeerProcess:
    """A worker in another Python (e.g. the PyTorch peers' venv), spoken to in JSON lines.

    The worker runs ``serve`` (below); each ``request`` writes one JSON object to its stdin and
    reads one back from its stdout. Its stderr goes to ours.

    Args:
      argv: the worker's command line, e.g. ``[python, "worker.py"]``.
      env: its environment (None: ours).
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None):
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends ``message``; returns the reply. Raises RuntimeError if the worker failed."""
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self._proc.wait(timeout=60)
            raise RuntimeError(f"peer worker exited with code {code}; see its stderr")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"peer worker: {reply['error']}")
        return reply

    def close(self) -> None:
        """Asks the worker to stop and waits for it."""
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        self._proc.wait(timeout=60)


def serve(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """The worker side of :class:`PeerProcess`: answers JSON lines until ``{"cmd": "exit"}``.

    ``handlers[cmd](message) -> reply``; an exception becomes ``{"error": ...}``. Anything the
    handlers print goes to stderr, so stdout carries replies only.
    """
    replies = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        message = json.loads(line)
        cmd = message.get("cmd")
        if cmd == "exit":
            return
        try:
            if cmd not in handlers:
                raise ValueError(
                    f"unknown cmd {cmd!r}; expected one of {sorted(handlers)}"
                )
            reply = handlers[cmd](message)
        except Exception as e:  # noqa: BLE001 - reported to the driver, which decides
            reply = {"error": f"{type(e).__name__}: {e}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def serve_peer(make_peer: Callable[[dict[str, Any]], Any], commands: Sequence[str]) -> None:
    """:func:`serve` for a peer object: ``setup`` builds it with ``make_peer(message)`` and replies
    with its ``describe()``; every other command calls its method of the same name."""
    state: dict[str, Any] = {}

    def setup(message: dict[str, Any]) -> dict[str, Any]:
        state["peer"] = make_peer(message)
        return state["peer"].describe()

    def method(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda message: getattr(state["peer"], name)(message)

    serve({"setup": setup, **{name: method(name) for name in commands}})


# ---------------------------------------------------------------- results


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats get 4 significant digits, None prints as "-".

    >>> print(markdown_table(["a", "b"], [[1, 0.123456], [None, "x"]]))
    | a | b |
    |---|---|
    | 1 | 0.1235 |
    | - | x |
    """

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    out_dir: str | os.PathLike, stem: str, record: dict, markdown: str
) -> list:
    """Writes ``OUT/STEM.json`` (``record``) and ``OUT/STEM.md``; returns both paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    paths[1].write_text(markdown.rstrip() + "\n")
    return paths
