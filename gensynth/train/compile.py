"""Ahead-of-time compilation of a jitted function, with what the compiler reports.

Benchmarks compile the train step (or a sampler) once from shaped inputs, time
that separately from running it, and read the program's FLOPs and memory from
XLA instead of estimating them.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class CompileStats:
    """What XLA reports about one compiled program (per device for sharded programs)."""

    lower_s: float  # seconds to trace and lower to StableHLO
    compile_s: float  # seconds XLA took to compile the lowered program
    flops: float | None  # XLA's FLOP count of one call; None where the backend gives none
    argument_bytes: int | None  # device memory for the inputs
    output_bytes: int | None  # device memory for the outputs
    alias_bytes: int | None  # bytes of outputs that reuse (donated) input buffers
    temp_bytes: int | None  # scratch memory the program allocates while running
    peak_bytes: int | None  # XLA's peak device memory estimate, where reported


def _int_or_none(stats: Any, name: str) -> int | None:
    value = getattr(stats, name, None)
    return None if value is None else int(value)


def compile_aot(jitted_fn: Any, *args: Any) -> tuple[jax.stages.Compiled, CompileStats]:
    """Compiles ``jitted_fn`` for ``args`` ahead of time (``.lower(*args).compile()``).

    Args:
        jitted_fn: a ``jax.jit``-wrapped function, e.g. from ``make_train_step``.
        *args: example arguments, concrete arrays or ``jax.ShapeDtypeStruct`` (with
            ``sharding`` set where the function has explicit in-shardings).

    Returns:
        ``(compiled, stats)``: the compiled executable, called like ``jitted_fn`` on
        arguments of the same shapes, dtypes and shardings (it keeps the donation),
        and a ``CompileStats``.

    Raises:
        TypeError: if ``jitted_fn`` is not jitted (has no ``.lower``).

    Example:
        >>> f = jax.jit(lambda x: x @ x)
        >>> compiled, stats = compile_aot(f, jax.ShapeDtypeStruct((8, 8), jax.numpy.float32))
        >>> stats.flops >= 2 * 8**3
        True
    """
    if not hasattr(jitted_fn, "lower"):
        raise TypeError(f"jitted_fn: expected a jax.jit-wrapped function, got {jitted_fn!r}")
    start = time.perf_counter()
    lowered = jitted_fn.lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()

    cost = compiled.cost_analysis()
    flops = cost.get("flops") if cost else None
    memory = compiled.memory_analysis()
    stats = CompileStats(
        lower_s=lowered_at - start,
        compile_s=compiled_at - lowered_at,
        flops=None if flops is None else float(flops),
        argument_bytes=_int_or_none(memory, "argument_size_in_bytes"),
        output_bytes=_int_or_none(memory, "output_size_in_bytes"),
        alias_bytes=_int_or_none(memory, "alias_size_in_bytes"),
        temp_bytes=_int_or_none(memory, "temp_size_in_bytes"),
        peak_bytes=_int_or_none(memory, "peak_memory_in_bytes"),
    )
    return compiled, stats
