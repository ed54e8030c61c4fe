"""The words key managers use between themselves and towards the operator: the kinds of event a
key manager records (:meth:`qnet.keys.manager.KeyManager.event`, forwarded to the controller with
its reports) and the types of KM-to-KM message (the signed envelopes' ``type``).

They are :class:`~enum.StrEnum` members, so they travel as the same plain strings in JSON, logs and
stores as before, while code that names one names a member (a typo is an error, not a new kind).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["REPEAT_WINDOW_S", "KMEEvent", "KMMessage", "Repeats", "Summary"]

REPEAT_WINDOW_S = 10.0
"""Repeats of one kind of event at one place within this long are told once, then counted."""


class KMEEvent(StrEnum):
    """What a key manager tells its operator (and the controller, which files them as ``kme-KIND``)."""

    SYNC_MISMATCH = "sync-mismatch"
    """Units one end had and the other never got, discarded by synchronisation."""
    RELAY_REROUTE = "relay-reroute"
    """A relay failed at a node and was retried on another route."""
    RELAY_REFUSED = "relay-refused"
    """A relay this node was asked to forward or store was refused."""
    POOL_LOW = "pool-low"
    """A link's servable stock here fell below its low-water mark."""
    POOL_OK = "pool-ok"
    """A link's stock is back above the low-water mark."""
    PEER_UNREACHABLE = "peer-unreachable"
    """A neighbouring key manager does not answer."""
    PEER_REACHABLE = "peer-reachable"
    """It answers again."""
    LINK_LAGGING = "link-lagging"
    """A link's feed samples its blocks (behind real time, planned so, or compiling)."""
    LINK_REAL_TIME = "link-real-time"
    """The feed has kept real time photon by photon again."""
    LINK_CUT = "link-cut"
    """The controller cut a link of this node."""
    LINK_RESTORED = "link-restored"
    """The controller put it back in service."""
    KM_MESSAGE_REFUSED = "km-message-refused"
    """A KM-to-KM message was forged, tampered with, replayed or stale (an authentication failure)."""
    CONTROLLER_UNREACHABLE = "controller-unreachable"
    """The controller does not answer this node's reports."""


class KMMessage(StrEnum):
    """The types of KM-to-KM message (the ``type`` of a signed envelope's body)."""

    ASSIGN = "assign"
    """Units of a link given to a master SAE's request: the peer holds them for the slaves."""
    BATCH = "batch"
    """Several assign and cede messages in one envelope."""
    CEDE = "cede"
    """Units this end hands to the other, which needs them more."""
    SYNC = "sync"
    """An offer of the units the peer has not confirmed (or a probe)."""
    RELAY = "relay"
    """Keys relayed hop by hop towards a non-adjacent node, one-time-pad encrypted per hop."""
    ANCHOR = "anchor"
    """The sender's signed audit-log head, for the receiver to keep (:mod:`qnet.management.audit_anchor`)."""


@dataclass(frozen=True)
class Summary:
    """The repeats :class:`Repeats` held back over a window: ``count`` of ``key`` since ``since_s``."""

    key: Hashable
    count: int
    since_s: float


@dataclass
class Repeats:
    """Aggregation and rate limit of repeated events, so that a flood (300 junk KM messages, say)
    is one event and one count rather than 300 alarms: the first ``burst`` events of a key (its
    kind and place) in a window of ``window_s`` pass; the rest are counted; when the window ends
    with some held back, :meth:`due` gives one :class:`Summary` of them and a new window opens (a
    steady flood is one summary a window); a window that ends with none held back closes. The clock
    is passed in; at most ``max_keys`` keys are followed (the oldest is summed up early when more
    come, so that a flood of distinct places cannot grow it).

    Examples:
        >>> r = Repeats(window_s=10.0)
        >>> [r.admit("refused/Bob", t) for t in (0.0, 1.0, 2.0, 3.0)]
        [True, False, False, False]
        >>> r.due(5.0), r.due(10.0)
        ([], [Summary(key='refused/Bob', count=3, since_s=0.0)])
        >>> r.admit("refused/Bob", 12.0), r.due(20.0), r.admit("refused/Bob", 21.0)
        (False, [Summary(key='refused/Bob', count=1, since_s=10.0)], False)
        >>> r.due(40.0), r.admit("refused/Bob", 41.0)
        ([Summary(key='refused/Bob', count=1, since_s=20.0)], False)
        >>> r.due(60.0), r.due(80.0), r.admit("refused/Bob", 81.0)  # the flood has stopped
        ([Summary(key='refused/Bob', count=1, since_s=40.0)], [], True)
    """

    window_s: float = REPEAT_WINDOW_S
    burst: int = 1
    max_keys: int = 256
    _open: dict[Hashable, list[float]] = field(default_factory=dict)  # key -> [start, passed, held back]
    _early: list[Summary] = field(default_factory=list)

    def admit(self, key: Hashable, now_s: float, count: int = 1) -> bool:
        """Whether an event of ``key`` at ``now_s`` (standing for ``count`` occurrences) is told
        now; else it is counted."""
        window = self._open.get(key)
        if window is None or (now_s - window[0] >= self.window_s and not window[2]):
            window = self._open[key] = [now_s, 0, 0]  # a new window (an old one without repeats closes)
            self._bound()
        if window[1] < self.burst and now_s - window[0] < self.window_s:
            window[1] += 1
            return True
        window[2] += count  # within its window, or one that ended with repeats not yet summed up
        return False

    def _bound(self) -> None:
        if len(self._open) > self.max_keys:
            oldest = next(iter(self._open))
            start, _, held = self._open.pop(oldest)
            if held:
                self._early.append(Summary(oldest, int(held), start))

    def due(self, now_s: float) -> list[Summary]:
        """The summaries of the windows that have ended (each opening the next window)."""
        out, self._early = self._early, []
        for key, (start, _, held) in list(self._open.items()):
            if now_s - start < self.window_s:
                continue
            if held:
                out.append(Summary(key, int(held), start))
                self._open[key] = [now_s, self.burst, 0]  # the flood goes on: its next window counts
            else:
                del self._open[key]
        return out
