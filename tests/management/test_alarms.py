"""Alarms and events: raised by one event kind, cleared by its pair, kept in a database, streamed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qnet.control.controller import Controller, LinkReport
from qnet.control.routing import Topology
from qnet.management.alarms import AlarmStore, EventBroker


def test_alarms_are_raised_once_and_cleared_by_their_pair(tmp_path: Path) -> None:
    store = AlarmStore(f"sqlite:///{tmp_path / 'controller.db'}")
    assert store.record(1.0, "link-cut", "A-B", "major", "cut by operator") is not None
    assert store.record(2.0, "link-cut", "A-B", "major", "again") is None  # still active: not raised twice
    store.record(3.0, "qber-high", "B-C", "major", "QBER 0.25")
    cleared = store.record(4.0, "link-restored", "A-B", "cleared", "back")
    assert cleared is not None and cleared.kind == "link-cut" and cleared.cleared_s == 4.0
    active = store.alarms(active_only=True)
    assert [(a.kind, a.place, a.severity) for a in active] == [("qber-high", "B-C", "critical")]
    assert len(store.alarms()) == 2 and [e["kind"] for e in store.events()] == [
        "link-cut", "link-cut", "qber-high", "link-restored"]
    again = AlarmStore(f"sqlite:///{tmp_path / 'controller.db'}")  # kept across a restart
    assert [a.kind for a in again.alarms(active_only=True)] == ["qber-high"]
    assert again.clear(active[0].id, 9.0) is not None and not again.alarms(active_only=True)


def test_controller_events_reach_the_store_and_the_stream() -> None:
    ctl = Controller(Topology(("A", "B"), (("A", "B", "A-B"),)), qber_threshold=0.1)
    store, broker = AlarmStore(), EventBroker()
    ctl.listeners.append(lambda e: store.record(e.time_s, e.kind, e.place, e.severity, e.detail))

    async def run() -> list[str]:
        got: list[str] = []
        stream = broker.subscribe()
        ctl.listeners.append(lambda e: broker.publish(e.as_dict()))
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        ctl.report("A", [LinkReport("A-B", 100, 1e3, 0.3)], 1.0)  # an eavesdropper: QBER 30 %
        got.append((await asyncio.wait_for(first, 1))["kind"])
        ctl.cut("A-B", 2.0)
        got.append((await asyncio.wait_for(stream.__anext__(), 1))["kind"])
        return got

    assert asyncio.run(run()) == ["qber-high", "link-cut"]
    assert {a.kind for a in store.alarms(active_only=True)} == {"qber-high", "link-cut"}
