"""Alarms and events (ITU-T Y.3804 fault management): what the controller saw, kept in its store and
streamed to whoever listens (the dashboard, an operator's script).

Every event of the controller (:class:`qnet.control.controller.ControlEvent`) and every event a key
manager reports (peer unreachable, KM-to-KM message refused: an authentication failure) is
recorded. Some kinds raise an **alarm**, which stays active until its clearing kind arrives for the
same place; an alarm has a time, a place (link, node or session), a severity and, once cleared,
a cleared-at time. One kind at one place raises one alarm while it is active (an authentication
failure too: the events that follow are kept, but the operator clears one alarm, not 2,000):

=====================  =========================  ==========
raised by              cleared by                 severity
=====================  =========================  ==========
``link-down``          ``link-up``                major
``link-cut``           ``link-restored``          major
``qber-high``          ``qber-high-cleared``      critical
``pool-low``           ``pool-low-cleared``       minor
``node-unreachable``   ``node-reachable``         major
``auth-failure``       (by the operator)          critical
=====================  =========================  ==========

The store is SQLAlchemy Core on SQLite (the controller's ``controller.db``) or any URL, so an
operator can query alarm history after the fact; :class:`EventBroker` fans new events out to
asyncio subscribers (server-sent events).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from qnet.control.events import EventKind, Severity

__all__ = ["RAISES", "Alarm", "AlarmStore", "EventBroker"]

RAISES: dict[EventKind, tuple[EventKind | None, Severity]] = {
    EventKind.LINK_DOWN: (EventKind.LINK_UP, Severity.MAJOR),
    EventKind.LINK_CUT: (EventKind.LINK_RESTORED, Severity.MAJOR),
    EventKind.QBER_HIGH: (EventKind.QBER_HIGH_CLEARED, Severity.CRITICAL),
    EventKind.POOL_LOW: (EventKind.POOL_LOW_CLEARED, Severity.MINOR),
    EventKind.NODE_UNREACHABLE: (EventKind.NODE_REACHABLE, Severity.MAJOR),
    EventKind.AUTH_FAILURE: (None, Severity.CRITICAL),
}
"""Alarm kind -> (the event kind that clears it, severity)."""
_CLEARS = {clear: kind for kind, (clear, _) in RAISES.items() if clear}

metadata = sa.MetaData()
events_table = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time_s", sa.Float, nullable=False, index=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("place", sa.String(256), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)
alarms_table = sa.Table(
    "alarms", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("place", sa.String(256), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("raised_s", sa.Float, nullable=False),
    sa.Column("cleared_s", sa.Float, nullable=True, index=True),
    sa.Column("detail", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Alarm:
    """One alarm: raised at ``raised_s``; ``cleared_s`` is None while it is active."""

    id: int
    kind: str
    place: str
    severity: str
    raised_s: float
    cleared_s: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"id": self.id, "kind": self.kind, "place": self.place, "severity": self.severity,
                "raised_s": self.raised_s, "cleared_s": self.cleared_s, "detail": self.detail,
                "active": self.cleared_s is None}


class AlarmStore:
    """Events and alarms in a database (``sqlite:///controller.db`` by default)."""

    def __init__(self, url: str = "sqlite://") -> None:
        self.engine = sa.create_engine(url)
        metadata.create_all(self.engine)

    def record(self, time_s: float, kind: EventKind, place: str, severity: Severity, detail: str) -> Alarm | None:
        """Keep an event; raise or clear the alarm it stands for. Returns the alarm raised or cleared."""
        with self.engine.begin() as conn:
            conn.execute(events_table.insert().values(time_s=time_s, kind=kind, place=place, severity=severity,
                                                      detail=detail))
            if kind in RAISES:
                return self._raise(conn, time_s, kind, place, detail)
            if kind in _CLEARS:
                return self._clear(conn, time_s, _CLEARS[kind], place)
        return None

    def _raise(self, conn: sa.Connection, time_s: float, kind: EventKind, place: str, detail: str) -> Alarm | None:
        active = conn.execute(sa.select(alarms_table.c.id).where(
            alarms_table.c.kind == kind, alarms_table.c.place == place, alarms_table.c.cleared_s.is_(None))).first()
        if active is not None:
            return None  # already raised: the event is kept, the alarm stays the one
        result = conn.execute(alarms_table.insert().values(kind=kind, place=place, severity=RAISES[kind][1],
                                                           raised_s=time_s, detail=detail))
        row_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
        return Alarm(row_id, kind, place, RAISES[kind][1], time_s, None, detail)

    def _clear(self, conn: sa.Connection, time_s: float, kind: EventKind, place: str) -> Alarm | None:
        row = conn.execute(sa.select(alarms_table).where(
            alarms_table.c.kind == kind, alarms_table.c.place == place, alarms_table.c.cleared_s.is_(None))).first()
        if row is None:
            return None
        conn.execute(alarms_table.update().where(alarms_table.c.id == row.id).values(cleared_s=time_s))
        return Alarm(row.id, row.kind, row.place, row.severity, row.raised_s, time_s, row.detail)

    def clear(self, alarm_id: int, time_s: float) -> Alarm | None:
        """The operator clears an alarm by hand (e.g. an authentication failure looked into)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(alarms_table).where(alarms_table.c.id == alarm_id)).first()
            if row is None:
                return None
            if row.cleared_s is None:
                conn.execute(alarms_table.update().where(alarms_table.c.id == alarm_id).values(cleared_s=time_s))
            return Alarm(row.id, row.kind, row.place, row.severity, row.raised_s, row.cleared_s or time_s, row.detail)

    def alarms(self, *, active_only: bool = False, limit: int = 500) -> list[Alarm]:
        """Alarms, newest first."""
        query = sa.select(alarms_table).order_by(alarms_table.c.id.desc()).limit(limit)
        if active_only:
            query = query.where(alarms_table.c.cleared_s.is_(None))
        with self.engine.connect() as conn:
            return [Alarm(r.id, r.kind, r.place, r.severity, r.raised_s, r.cleared_s, r.detail)
                    for r in conn.execute(query)]

    def events(self, since_s: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events at or after ``since_s``, oldest first (at most ``limit``, the newest of them)."""
        query = (sa.select(events_table).where(events_table.c.time_s >= since_s)
                 .order_by(events_table.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        return [{"id": r.id, "time_s": r.time_s, "kind": r.kind, "place": r.place, "severity": r.severity,
                 "detail": r.detail} for r in reversed(rows)]


class EventBroker:
    """Fans events out to subscribers on one event loop (each gets every event published after it
    subscribed; a subscriber too slow to keep 1000 in hand loses the oldest)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every subscriber (call on the loop's thread)."""
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Every event from now on, as it comes."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)
