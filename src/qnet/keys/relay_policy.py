"""The key relay's policy (ITU-T Y.3803 key relay): which waiting requests travel together in one
message, how long a node or link that failed a relay is routed around, how many routes a relay
tries, and how a batch that the first hop cannot serve whole is split.

Pure logic with the clock passed in: the KME server (``qnet.servers.node``) drives it over HTTPS
and asyncio; a simulation can drive the same objects without either. The messages themselves (what
each hop spends and stores) are :mod:`qnet.keys.relay`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["HOLD_DOWN_S", "RELAY_BATCH_UNITS", "RELAY_IN_FLIGHT", "RELAY_TRIES", "HoldDown", "failed_element",
           "next_batch", "split", "units_for"]

HOLD_DOWN_S = 5.0
"""How long a node or link that failed a relay is routed around."""
RELAY_TRIES = 3
"""Routes a relay tries before it fails (each after the last one's failure was held down)."""
RELAY_IN_FLIGHT = 1
"""Relays in flight per target node from one KME; requests arriving meanwhile queue for the next."""
RELAY_BATCH_UNITS = 1024
"""At most this many units per hop in one coalesced relay (1024 keys of 256 bits, the ETSI 014
``max_key_per_request``): bounds each hop's transaction and message, so the wait of the requests
queued behind it. A single request larger than this still goes, alone."""

T = TypeVar("T")


def units_for(number: int, size_bits: int, unit_bits: int) -> int:
    """Units ``number`` keys of ``size_bits`` spend (a key takes whole units).

    Examples:
        >>> units_for(2, 300, 256)
        4
    """
    return math.ceil(size_bits / unit_bits) * number


def next_batch(queue: deque[T], cost: Callable[[T], int], *, alive: Callable[[T], bool] = lambda _: True,
               limit: int = RELAY_BATCH_UNITS) -> list[T]:
    """Take the head of ``queue`` and those behind it while their ``cost`` (units) stays within
    ``limit``; at least one request, so a larger one goes alone. Requests no longer ``alive`` (their
    client left) are dropped on the way. Empty when the queue is.

    Examples:
        >>> q = deque([600, 400, 1024, 1])
        >>> [next_batch(q, int), next_batch(q, int), next_batch(q, int), next_batch(q, int)]
        [[600, 400], [1024], [1], []]
    """
    batch: list[T] = []
    units = 0
    while queue:
        head = queue[0]
        if batch and units + cost(head) > limit:
            break
        queue.popleft()
        if alive(head):
            batch.append(head)
            units += cost(head)
    return batch


def split(batch: list[T]) -> tuple[list[T], list[T]]:
    """A batch the first hop's pool cannot serve whole, in two halves (each tried on its own, so the
    requests that fit alone are still served).

    Raises:
        ValueError: for a batch of one request (it fails alone).
    """
    if len(batch) < 2:
        raise ValueError(f"a batch of {len(batch)} request(s) cannot be split")
    half = len(batch) // 2
    return batch[:half], batch[half:]


class HoldDown:
    """Nodes and links that failed a relay recently: routed around for ``period_s``.

    Args:
        period_s: how long a failure is held down (seconds).
    """

    def __init__(self, period_s: float = HOLD_DOWN_S) -> None:
        if not period_s >= 0:
            raise ValueError(f"period_s must be >= 0, got {period_s!r}")
        self.period_s = period_s
        self._until: dict[str, float] = {}

    def hold(self, name: str, now_s: float) -> None:
        """``name`` (a node or a link_id) failed at ``now_s``."""
        self._until[name] = now_s + self.period_s

    def held(self, now_s: float) -> list[str]:
        """What is held down at ``now_s``, in the order it failed (expired entries are forgotten)."""
        self._until = {name: until for name, until in self._until.items() if until > now_s}
        return list(self._until)


def failed_element(next_node: str, body: object) -> str:
    """Which node or link a failed hop's answer names (``failed``, at the top or in its details), else
    ``next_node`` itself: what the sender holds down.

    Examples:
        >>> failed_element("B", {"details": [{"failed": "C"}]}), failed_element("B", None)
        ('C', 'B')
    """
    if not isinstance(body, Mapping):
        return next_node
    details: Iterable[Any] = body.get("details") or []
    named = [body.get("failed")] + [d.get("failed") for d in details if isinstance(d, Mapping)]
    return str(next((f for f in named if f), None) or next_node)
