"""The discrete-event kernel: SimPy's environment with integer-picosecond time, named random streams,
and optional real-time pacing.

SimPy (MIT) is the well-kept discrete-event library of the Python world: generator processes,
timeouts, events, and a real-time environment; qnet adds only what its models need on top:

- **time in integer picoseconds** (``qnet.units``): exact for photon timing, and 24 h is 8.64e16 ps,
  far inside int64, so a day of network life and a nanosecond detector window share one clock;
- **named random streams**: each model instance asks for ``kernel.rng("link/Koganei-Otemachi")`` and
  gets its own numpy Generator from the run's seed and that name, so adding a model never shifts
  another's random numbers (reproducible from one seed);
- **pacing**: ``Kernel(realtime=10)`` runs 10 simulated seconds per wall-clock second
  (``simpy.rt.RealtimeEnvironment``), for driving live servers from a simulated model.

Examples:
    >>> k = Kernel(seed=1)
    >>> ticks = []
    >>> def clock(k):
    ...     while True:
    ...         ticks.append(k.now_s)
    ...         yield k.timeout_s(0.5)
    >>> _ = k.process(clock(k))
    >>> k.run_until_s(2.0)
    >>> ticks
    [0.0, 0.5, 1.0, 1.5]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy
import simpy.rt

from qnet.units import ps_to_seconds, seconds_to_ps

__all__ = ["Kernel"]

Process = Generator[simpy.Event, Any, Any]


class Kernel:
    """One simulation run.

    Args:
        seed: the seed of every random stream of the run.
        realtime: simulated seconds per wall-clock second; None runs as fast as possible.
    """

    def __init__(self, seed: int = 0, *, realtime: float | None = None) -> None:
        if realtime is None:
            self.env: simpy.Environment = simpy.Environment()
        else:
            if not realtime > 0:
                raise ValueError(f"realtime must be > 0 simulated seconds per second, got {realtime!r}")
            self.env = simpy.rt.RealtimeEnvironment(factor=1.0 / (realtime * 1e12), strict=False)
        self.seed = seed
        self._streams: dict[str, np.random.Generator] = {}

    @property
    def now_ps(self) -> int:
        """Simulated time (picoseconds)."""
        return int(self.env.now)

    @property
    def now_s(self) -> float:
        """Simulated time (seconds)."""
        return ps_to_seconds(int(self.env.now))

    def timeout_s(self, seconds: float) -> simpy.Timeout:
        """An event ``seconds`` from now (rounded to the picosecond)."""
        return self.env.timeout(seconds_to_ps(seconds))

    def process(self, generator: Process) -> simpy.Process:
        """Start a generator process (it yields events, e.g. :meth:`timeout_s`)."""
        return self.env.process(generator)

    def at_s(self, seconds: float, action: Callable[[], None]) -> simpy.Process:
        """Run ``action`` at simulated time ``seconds`` (now if that has passed), after every other
        event due at that same instant (a periodic step ending then sees the world before it)."""
        def wait() -> Process:
            yield self.env.timeout(max(seconds_to_ps(seconds) - self.now_ps, 0))
            yield self.env.timeout(0)
            action()
        return self.env.process(wait())

    def run_until_s(self, seconds: float) -> None:
        """Run every event before simulated time ``seconds``."""
        self.env.run(until=seconds_to_ps(seconds))

    def rng(self, name: str) -> np.random.Generator:
        """The random stream called ``name``: the same numbers for the same seed and name, whatever
        other streams the run uses."""
        stream = self._streams.get(name)
        if stream is None:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
            stream = self._streams[name] = np.random.default_rng(np.random.SeedSequence([self.seed, key]))
        return stream
