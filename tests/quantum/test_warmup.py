"""Compiling the post-processing ahead of a machine's first live run
(:mod:`qnet.quantum.postprocess.warmup`): a cold numba cache is seen as cold without compiling,
the warm-up fills it, and then every post-processing function loads from it. Each check runs in a
fresh interpreter with its own empty cache directory (``NUMBA_CACHE_DIR``), as a first run would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qnet.quantum.postprocess.warmup import WarmUp, cached_functions

IS_WARM = "from qnet.quantum.postprocess.warmup import is_warm; print(is_warm())"


def _python(code: str, cache: Path) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          timeout=600).stdout.strip()


def test_the_warm_up_knows_every_post_processing_function() -> None:
    """Cascade's, the verification hash's and the Toeplitz hashing's cached functions, not the
    always-inlined helpers (which are never compiled on their own)."""
    names = {f.__name__ for f in cached_functions()}
    assert {"_cascade", "_poly", "_expand", "_join", "_host_leaves"} <= names
    assert "_split_level" not in names and "_join_level" not in names


def test_an_empty_cache_is_cold_and_asking_costs_no_compiling(tmp_path: Path) -> None:
    """is_warm reads the disk only: on an empty cache it says False and writes nothing."""
    assert _python(IS_WARM, tmp_path) == "False"
    assert list(tmp_path.rglob("*.nbi")) == []


@pytest.mark.slow
def test_the_warm_up_fills_the_cache_that_a_feed_then_loads(tmp_path: Path) -> None:
    """After ``python -m qnet.quantum.postprocess.warmup`` the cache is warm, and a photon-level
    block in a new interpreter compiles nothing (numba's own counters: every signature a cache hit)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "qnet.quantum.postprocess.warmup"], env=env, check=True, timeout=600)
    assert _python(IS_WARM, tmp_path) == "True"
    misses = _python("from qnet.quantum.postprocess.warmup import warm, cached_functions\n"
                     "warm()\nprint(sum(sum(f.stats.cache_misses.values()) for f in cached_functions()))", tmp_path)
    assert misses == "0"


def test_a_warm_cache_starts_no_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cache warm the feed's WarmUp is ready at once and starts no process."""
    from qnet.quantum.postprocess import warmup

    monkeypatch.setattr(warmup, "is_warm", lambda: True)
    w = WarmUp()
    assert w.ready() and w.proc is None
