"""The seam between a QKD link and key management: :class:`KeySource`.

Key managers consume keys from something that satisfies :class:`KeySource`: a simulated link of
``qnet.quantum``, a test double, or one day a vendor's QKD device. It is a ``typing.Protocol``
(structural), so those implementations never import this layer, as httpx's transports plug in under
its client (STYLE.md).

Each end of a link has its own source; both ends yield the same ``(key_ID, key bytes)`` pairs in the
same order (a simulated link's two ends are two views of one simulation, as a QKD device pair
delivers one key to its two key managers: ``qnet.servers.feeder``). Time is passed in (``now_s``),
so the same key manager runs under simulated or wall time.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = ["KeyMaterial", "KeySource", "SampleReason"]


class SampleReason(StrEnum):
    """Why a simulated link's feed samples its blocks from their statistics instead of simulating
    them photon by photon (its feeder writes it beside the mode, under ``why/LINK`` in the store)."""

    PLANNED = "planned"
    """The deployment found too few CPU cores for this link photon by photon."""
    BEHIND = "behind"
    """The feed fell behind real time (a busy machine)."""
    COMPILING = "compiling"
    """The machine's first run: the photon-level post-processing is still being compiled."""

    def explain(self, lag_s: float | None = None) -> str:
        """What an operator is told."""
        if self is SampleReason.COMPILING:
            return "the photon-level post-processing is being compiled (this machine's first run)"
        if self is SampleReason.BEHIND or (lag_s is not None and lag_s > 1.0):
            return f"the key feed is {lag_s or 0:.0f} s behind real time (too few CPU cores)"
        return "the machine has too few CPU cores to simulate it photon by photon (planned at deployment)"


class KeyMaterial(Protocol):
    """Anything with a key_ID and key bytes (what a source hands out)."""

    @property
    def key_ID(self) -> str:
        """The key's identifier, a UUID string."""
        ...

    @property
    def key(self) -> bytes:
        """The key bytes."""
        ...


@runtime_checkable
class KeySource(Protocol):
    """One end of a QKD link, as the key manager sees it."""

    @property
    def link_id(self) -> str:
        """The link this source belongs to (both ends share it)."""
        ...

    def take(self, now_s: float) -> Sequence[KeyMaterial]:
        """Every key this end has made by time ``now_s`` (seconds) and not yet handed out, in order."""
        ...
