"""Shared helpers for the benchmark scripts: one core, warm-up, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


def one_core() -> str:
    """Pin this process to one CPU (the goals are per core); returns a description."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        return "pinned to 1 core"
    return "not pinned (no sched_setaffinity)"


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """(median wall seconds over ``repeat`` runs, last result)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def machine() -> str:
    """A one-line description of this machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def emit(result: dict[str, Any]) -> None:
    """Print the result as JSON (one line, for scripts) after the human-readable lines."""
    print(json.dumps(result))
