"""Compiling the post-processing once per machine: numba's on-disk cache, filled ahead of the feeds.

The photon-level post-processing (Cascade, verification, the Toeplitz hashing of privacy
amplification) runs numba functions compiled with ``cache=True``: the first run on a machine
compiles them (about 20 CPU-seconds on a 2-core machine) and writes numba's cache beside the
sources; later runs load it in a fraction of a second. A live network's first run would spend its
first half minute compiling instead of making key, so the key feeds ask :func:`is_warm` first and,
while the cache is cold, run ``python -m qnet.quantum.postprocess.warmup`` beside them (one at a
time per machine: the runs hold an exclusive lock, and a later one finds the cache warm) and make
their blocks by block-level sampling of the same statistics until it has finished.

:func:`warm` compiles by running one short photon-level block through
:class:`~qnet.quantum.link.SimulatedLink`: the same calls, and so the same signatures, as a live feed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["WarmUp", "cached_functions", "is_warm", "warm"]

_WARM_PULSES = 2 * 10**7
_LOCK = "qnet-warmup.lock"


def cached_functions() -> list[Any]:
    """The numba dispatchers of the post-processing that cache on disk (those always inlined into
    others are compiled as part of them, never on their own)."""
    from qnet.quantum.postprocess import cascade, clmul, verification  # noqa: PLC0415 - numba

    found = []
    for module in (cascade, clmul, verification):
        for value in vars(module).values():
            if getattr(value, "_cache", None) is not None and hasattr(value, "py_func") \
                    and getattr(value, "targetoptions", {}).get("inline") != "always":
                found.append(value)
    return found


def _index(dispatcher: Any) -> Path | None:
    """Where numba keeps ``dispatcher``'s cache index (None if numba's layout is not the one known here)."""
    with contextlib.suppress(AttributeError):
        return Path(dispatcher._cache._cache_file._index_path)
    return None


def is_warm() -> bool:
    """Whether numba's cache holds every post-processing function for these sources and this numba
    (its index read from the disk, as numba reads it: a stale one, after an edit or an upgrade,
    reads as empty; nothing is compiled)."""
    try:
        functions = cached_functions()
        return bool(functions) and all(bool(f._cache._cache_file._load_index()) for f in functions)
    except Exception:
        return False


def warm() -> None:
    """Compile (or load) every post-processing function by running one short photon-level block."""
    from qnet.physics.bb84 import BB84DecoyParams  # noqa: PLC0415
    from qnet.quantum.link import FeedMode, SimulatedLink  # noqa: PLC0415

    link = SimulatedLink("warm-up", BB84DecoyParams(), length_km=10.0, pulses_per_block=_WARM_PULSES, seed=1)
    link.mode = FeedMode.PHOTON
    link.alice.take(link.block_seconds)


class WarmUp:
    """A feed's view of the warm-up: :meth:`ready` starts it the first time it is asked, if the
    cache is cold, and says whether it has finished."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.asked = False

    def ready(self) -> bool:
        """Whether the photon-level post-processing can run without compiling first."""
        if not self.asked:
            self.asked = True
            if not is_warm():
                self.proc = subprocess.Popen([sys.executable, "-m", "qnet.quantum.postprocess.warmup"],
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self.proc is None or self.proc.poll() is not None

    def stop(self) -> None:
        """End a warm-up still running (numba writes each cache entry whole or not at all)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def _main() -> None:
    if sys.platform.startswith("linux"):  # end with the feeder that started it, even on kill -9
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, 15, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGTERM
    os.nice(5)
    index = next((p for p in map(_index, cached_functions()) if p is not None), None)
    lock_path = Path(tempfile.gettempdir() if index is None else index.parent) / _LOCK
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # no lock where none can be made: at worst two compile
            lock = stack.enter_context(open(lock_path, "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)  # one warm-up at a time: the next finds the cache warm
        if not is_warm():
            warm()


if __name__ == "__main__":
    _main()
