"""What the controller records: :class:`ControlEvent` with its :class:`EventKind` and
:class:`Severity` (ITU-T Y.3804 fault management; the alarms built on them are in
:mod:`qnet.management.alarms`).

The kinds are :class:`~enum.StrEnum` members: the same strings as ever in JSON, the event stream and
the alarm store, but a kind no code defines cannot be filed. A key manager's events
(:class:`qnet.keys.events.KMEEvent`) are filed under ``kme-KIND`` (:meth:`EventKind.from_kme`), so
that a key manager's ``link-cut`` is never taken for the controller's own; a refused KM-to-KM
message is the controller's ``auth-failure``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, cast

from qnet.keys.events import REPEAT_WINDOW_S, KMEEvent, Repeats

__all__ = ["ControlEvent", "EventKind", "KMEEventIntake", "ReportedEvent", "Severity"]


class Severity(StrEnum):
    """How much an event matters (``cleared``: an alarm has ended)."""

    INFO = "info"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"
    CLEARED = "cleared"


class EventKind(StrEnum):
    """Every kind of event the controller records."""

    LINK_UP = "link-up"
    LINK_DOWN = "link-down"
    LINK_CUT = "link-cut"
    LINK_RESTORED = "link-restored"
    QBER_HIGH = "qber-high"
    QBER_HIGH_CLEARED = "qber-high-cleared"
    POOL_LOW = "pool-low"
    POOL_LOW_CLEARED = "pool-low-cleared"
    NODE_UNREACHABLE = "node-unreachable"
    NODE_REACHABLE = "node-reachable"
    NODE_DRAINED = "node-drained"
    NODE_UNDRAINED = "node-undrained"
    EAVESDROPPER_ON = "eavesdropper-on"
    EAVESDROPPER_OFF = "eavesdropper-off"
    SESSION_OPEN = "session-open"
    SESSION_CLOSE = "session-close"
    SESSION_PREEMPTED = "session-preempted"
    SESSION_NO_ROUTE = "session-no-route"
    ROUTE_CHANGE = "route-change"
    AUTH_FAILURE = "auth-failure"
    """A key manager refused a KM-to-KM message (forged, tampered, replayed, stale)."""
    KME_SYNC_MISMATCH = "kme-sync-mismatch"
    KME_RELAY_REROUTE = "kme-relay-reroute"
    KME_RELAY_REFUSED = "kme-relay-refused"
    KME_POOL_LOW = "kme-pool-low"
    KME_POOL_OK = "kme-pool-ok"
    KME_PEER_UNREACHABLE = "kme-peer-unreachable"
    KME_PEER_REACHABLE = "kme-peer-reachable"
    KME_LINK_LAGGING = "kme-link-lagging"
    KME_LINK_REAL_TIME = "kme-link-real-time"
    KME_LINK_CUT = "kme-link-cut"
    KME_LINK_RESTORED = "kme-link-restored"
    KME_CONTROLLER_UNREACHABLE = "kme-controller-unreachable"

    @classmethod
    def from_kme(cls, kind: KMEEvent) -> EventKind:
        """The kind the controller files a key manager's event under."""
        return cls.AUTH_FAILURE if kind is KMEEvent.KM_MESSAGE_REFUSED else cls(f"kme-{kind.value}")

    def cleared(self) -> EventKind:
        """The kind that ends an alarm of this kind (``qber-high`` -> ``qber-high-cleared``)."""
        return EventKind(f"{self.value}-cleared")


@dataclass(frozen=True)
class ControlEvent:
    """Something the controller saw or did: an alarm (and when it cleared), a cut, a route change."""

    time_s: float
    kind: EventKind
    place: str
    severity: Severity
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"time_s": self.time_s, "kind": self.kind.value, "place": self.place,
                "severity": self.severity.value, "detail": self.detail}


class ReportedEvent(NamedTuple):
    """An event as a key manager reports it: ``seq`` numbers its events (None: not numbered, as
    in tests), ``occurrences`` is how many it stands for (its report's ``count``)."""

    time_s: float
    kind: str
    detail: str
    seq: int | None = None
    occurrences: int = 1


class KMEEventIntake:
    """The events key managers report, each taken once and floods held back.

    A report the controller took but whose answer was lost is sent again whole: the events' ``seq``
    (counted afresh from each start of a key manager: ``boot``) make each count once. Repeats of
    one kind from one node within :data:`~qnet.keys.events.REPEAT_WINDOW_S` are counted and told in
    one event a window (:meth:`due`), so that a node (or anyone holding a KME certificate) cannot
    flood the alarm store and the event streams.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, burst: int = 5) -> None:
        self._seen: dict[str, tuple[str | None, int]] = {}  # node -> (boot, last seq taken)
        self._repeats = Repeats(window_s=window_s, burst=burst)

    def take(self, node: str, events: Iterable[Sequence[Any]], now_s: float,
             boot: str | None = None) -> list[ReportedEvent]:
        """The events of a report to file now (not seen before, not held back as repeats)."""
        seen_boot, last = self._seen.get(node, (boot, 0))
        last = last if seen_boot == boot else 0
        out = []
        for raw in events:
            event = ReportedEvent(*raw)
            if event.seq is not None:
                if event.seq <= last:
                    continue
                last = event.seq
            if self._repeats.admit((node, event.kind), now_s, max(int(event.occurrences), 1)):
                out.append(event)
        self._seen[node] = (boot, last)
        return out

    def due(self, now_s: float) -> list[tuple[str, ReportedEvent]]:
        """(node, summary event) for each node and kind whose repeats' window has ended."""
        out = []
        for summary in self._repeats.due(now_s):
            node, kind = cast(tuple[str, str], summary.key)
            detail = (f"{summary.count} more {kind} from {node} in the last {now_s - summary.since_s:.0f} s; "
                      "repeats are counted, not each told")
            out.append((node, ReportedEvent(now_s, kind, detail, None, summary.count)))
        return out
