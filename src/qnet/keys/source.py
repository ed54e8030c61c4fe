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
from typing import Protocol, runtime_checkable

__all__ = ["KeyMaterial", "KeySource"]


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
