"""Alarm amplification (issue 18.2), end to end in-process: junk KM messages to a KME's app, its
report to the controller's app sent again as after a timeout, and a node flooding the controller
with events. Before: each junk message was an event, each re-sent report filed them all again, every
authentication failure raised a new critical alarm (2,000 in 3 minutes from 300 messages), and
the controller slowed to 43 s a request. Now: events reach the controller once, repeats are
counted, one alarm stands for them, and what the controller files stays bounded however long the
flood (the bound is asserted, not a time)."""

from __future__ import annotations

import asyncio

from qnet.control.controller import Controller
from qnet.control.routing import Topology
from qnet.management.alarms import AlarmStore
from qnet.servers.controller import create_app
from tests.helpers import asgi_request
from tests.servers.test_kme_inprocess import Pair, pair

__all__ = ["pair"]  # the fixture, used here by name


class Control:
    def __init__(self, link_id: str) -> None:
        self.ctl = Controller(Topology(("Alice", "Bob"), (("Alice", "Bob", link_id),)))
        self.alarms = AlarmStore()
        self.app = create_app(self.ctl, alarms=self.alarms)
        self.runner = asyncio.Runner()

    def post(self, node: str, body: dict[str, object]) -> int:
        return asgi_request(self.runner, self.app, node, "POST", "/control/v1/reports", json=body).status_code

    def auth_failures(self) -> tuple[int, int]:
        """(events filed, alarms raised) of kind auth-failure."""
        return (sum(e.kind == "auth-failure" for e in self.ctl.events),
                sum(a.kind == "auth-failure" for a in self.alarms.alarms()))


def test_junk_km_messages_become_one_alarm_and_a_resent_report_files_nothing_twice(pair: Pair) -> None:
    for i in range(1500):
        r = pair.call("Alice", "Bob", "POST", "/km/v1/messages", content=b'{"junk": %d}' % i)
        assert r.status_code == 401 and "refused" in r.json()["message"], r.text
    alice = pair.nodes["Alice"]
    refused = [e for e in alice.manager.events if e.kind == "km-message-refused"]
    assert 1 <= len(refused) <= 2, [e.detail for e in refused]  # the flood took well under a window
    control = Control(alice.config.links[0].link_id)
    report = alice.control.report(alice.clock())
    for _ in range(3):  # the answer was lost twice: the same report is sent again whole
        assert control.post("Alice", report) == 200
    assert control.auth_failures() == (len(refused), 1)
    control.runner.close()


def test_a_node_flooding_the_controller_with_events_gets_a_bounded_share(pair: Pair) -> None:
    control = Control("Alice-Bob")
    seq = 0
    for _ in range(50):  # 50,000 refusals reported, each numbered
        events = [{"time_s": 1.0, "kind": "km-message-refused", "detail": f"junk {seq + i}", "seq": seq + i + 1}
                  for i in range(1000)]
        seq += 1000
        assert control.post("Alice", {"links": [], "events": events, "boot": "b1"}) == 200
    filed, alarms = control.auth_failures()
    assert filed <= 5 and alarms == 1  # the burst a window lets through, then counted
    start = control.ctl._heard["Alice"]
    control.ctl.tick(start + 11.0)  # the window ends: one summary of the rest
    summary = [e for e in control.ctl.events if e.kind == "auth-failure"][-1]
    assert summary.detail.startswith(f"{50_000 - filed} more km-message-refused from Alice")
    assert control.post("Alice", {"links": [], "events": events, "boot": "b1"}) == 200  # again: nothing new
    assert control.post("Alice", {"links": [], "events": events[:1], "boot": "b2"}) == 200  # restarted: new
    control.ctl.tick(start + 22.0)
    summary = [e for e in control.ctl.events if e.kind == "auth-failure"][-1]
    assert summary.detail.startswith("1 more km-message-refused from Alice")
    assert control.auth_failures() == (filed + 2, 1)
    control.runner.close()
