"""The controller's brain: merged link states, alarms, cuts, sessions with admission and priority, and
re-routing (pure logic, clock passed in)."""

from __future__ import annotations

import pytest

from qnet.control.controller import ControlError, Controller, LinkReport, state_from_dict
from qnet.control.routing import RoutePolicy, Topology

# A square A-B-C-D-A with a diagonal-free layout: two disjoint routes from A to C.
SQUARE = Topology(("A", "B", "C", "D"), (("A", "B", "ab"), ("B", "C", "bc"), ("C", "D", "cd"), ("D", "A", "da")))
SAES = {"SA": "A", "SC": "C", "SB": "B", "SX": "D"}


def controller(**kw: object) -> Controller:
    args: dict[str, object] = {"saes": SAES, "capacity_bps": {lid: 1000.0 for _, _, lid in SQUARE.links}}
    args.update(kw)
    return Controller(SQUARE, **args)  # type: ignore[arg-type]


def report_all(ctl: Controller, now: float, stock: int = 500, qber: float = 0.02) -> None:
    for a, b, lid in SQUARE.links:
        for node in (a, b):
            ctl.report(node, [LinkReport(lid, stock, 1000.0, qber)], now)


def test_states_merge_both_ends_and_silence_means_down() -> None:
    ctl = controller()
    ctl.report("A", [LinkReport("ab", 700, 2000.0, 0.01)], 0.0)
    ctl.report("B", [LinkReport("ab", 650, 1900.0, 0.03)], 0.5)
    st = ctl.states(1.0)["ab"]
    assert (st.up, st.stored_units, st.key_rate_bps, st.qber) == (True, 650, 1900.0, 0.03)
    assert ctl.states(1.0)["bc"].up  # never reported: assumed up
    assert not ctl.states(10.0)["ab"].up  # silent for more than three periods


def test_a_qber_alarm_trips_and_clears_and_routes_avoid_it() -> None:
    ctl = controller(qber_threshold=0.05)
    report_all(ctl, 0.0)
    ctl.report("A", [LinkReport("ab", 500, 1000.0, 0.25)], 0.1)  # an eavesdropper on A-B
    assert ctl.states(0.2)["ab"].alarm
    assert [e.kind for e in ctl.events][-1] == "qber-high"
    assert ctl.route("A", "B", 0.2) == ["A", "D", "C", "B"]  # around the alarmed link
    ctl.report("A", [LinkReport("ab", 500, 1000.0, 0.02)], 0.3)
    assert not ctl.states(0.4)["ab"].alarm and ctl.events[-1].kind == "qber-high-cleared"


def test_pool_low_alarm() -> None:
    ctl = controller(low_water_units=100)
    report_all(ctl, 0.0, stock=50)
    assert not any(st.alarm for st in ctl.states(0.1).values())  # a first report: nothing is falling yet
    report_all(ctl, 1.0, stock=500)
    report_all(ctl, 2.0, stock=80)  # falling below the mark
    assert all(st.alarm for st in ctl.states(2.1).values())
    assert sum(e.kind == "pool-low" for e in ctl.events) == 4
    report_all(ctl, 3.0, stock=150)  # above the mark, below twice the mark: still low (hysteresis)
    assert all(st.alarm for st in ctl.states(3.1).values())
    report_all(ctl, 4.0, stock=200)
    assert not any(st.alarm for st in ctl.states(4.1).values())


def test_cut_link_reroutes_sessions_at_once_and_restore_brings_it_back() -> None:
    ctl = controller()
    report_all(ctl, 0.0)
    s = ctl.open_session("SA", "SC", 0.0, key_rate_bps=100)
    first = list(s.route)
    assert len(first) == 3
    hop = next(lid for a, b, lid in SQUARE.links if {a, b} == set(first[:2]))
    ctl.cut(hop, 1.0)
    assert s.route != first and len(s.route) == 3 and s.reroutes == 1
    assert not ctl.states(1.0)[hop].up
    assert [e.kind for e in ctl.events][-2:] == ["link-cut", "route-change"]
    ctl.restore(hop, 2.0)
    assert ctl.states(2.0)[hop].up
    with pytest.raises(ControlError) as err:
        ctl.cut("nope", 2.0)
    assert err.value.status == 404


def test_sessions_refuse_unknown_saes_access_and_over_capacity() -> None:
    ctl = controller(access={"SX": ["SB"]})
    with pytest.raises(ControlError, match="unknown SAE") as err:
        ctl.open_session("SA", "SZ", 0.0)
    assert err.value.status == 401
    with pytest.raises(ControlError, match="access control"):
        ctl.open_session("SA", "SX", 0.0)
    ctl.open_session("SA", "SB", 0.0, key_rate_bps=400)  # each direction of a link gets half its rate
    ctl.open_session("SB", "SA", 0.0, key_rate_bps=500)  # the other direction is free
    detour = ctl.open_session("SA", "SB", 0.0, key_rate_bps=150)  # the direct link is full: the long way round
    assert detour.route == ["A", "D", "C", "B"]
    with pytest.raises(ControlError, match="exceeds what hop A-B has left: 100 of 500") as err:
        ctl.open_session("SA", "SB", 0.0, key_rate_bps=351)
    assert err.value.status == 503
    with pytest.raises(ControlError, match="already open"):
        s = ctl.open_session("SA", "SB", 0.0, key_rate_bps=100, key_stream_id="k1")
        ctl.open_session("SA", "SB", 0.0, key_stream_id=s.key_stream_id)


def test_a_higher_priority_session_preempts_lower_ones() -> None:
    ctl = controller()
    low = ctl.open_session("SA", "SB", 0.0, key_rate_bps=350, priority=0)
    high = ctl.open_session("SA", "SB", 1.0, key_rate_bps=300, priority=5)
    assert high.key_stream_id in ctl.sessions and low.key_stream_id not in ctl.sessions
    assert any(e.kind == "session-preempted" for e in ctl.events)
    ctl.close_session(high.key_stream_id, 2.0)
    with pytest.raises(ControlError):
        ctl.close_session(high.key_stream_id, 2.0)


def test_policy_limits_are_named() -> None:
    ctl = Controller(SQUARE, RoutePolicy(max_hops=1), saes=SAES)
    with pytest.raises(ControlError, match="policy allows at most 1") as err:
        ctl.open_session("SA", "SC", 0.0)
    assert err.value.status == 503


def test_malformed_reports_are_refused() -> None:
    ctl = controller()
    with pytest.raises(ControlError, match="malformed"):
        LinkReport.from_dict({"link_id": "ab", "stored_units": "lots", "key_rate_bps": 1})
    with pytest.raises(ControlError, match="out of range"):
        LinkReport.from_dict({"link_id": "ab", "stored_units": 1, "key_rate_bps": 1, "qber": 3})
    with pytest.raises(ControlError, match="not a link of node"):
        ctl.report("A", [LinkReport("bc", 1, 1.0)], 0.0)
    with pytest.raises(ControlError, match="unknown node"):
        ctl.report("Q", [], 0.0)


def test_directive_round_trips_to_link_states() -> None:
    ctl = controller()
    report_all(ctl, 0.0)
    ctl.cut("bc", 0.5)
    links = ctl.directive(0.6)["links"]
    states = {lid: state_from_dict(raw) for lid, raw in links.items()}
    assert states == ctl.states(0.6)


def test_silent_nodes_links_down_and_refused_messages_are_events() -> None:
    ctl = controller()
    seen: list[str] = []
    ctl.listeners.append(lambda e: seen.append(f"{e.kind}@{e.place}"))
    report_all(ctl, 0.0)
    ctl.report("A", [LinkReport("ab", 500, 1000.0, 0.02, up=False)], 0.5)  # A says its peer B is gone
    assert "link-down@ab" in seen
    ctl.report("B", [], 0.6, events=[(0.55, "km-message-refused", "bad signature from 'A'")])
    assert "auth-failure@B" in seen
    for node in "ABC":
        ctl.report(node, [], 5.0)
    ctl.tick(7.0)  # D has not reported since 0.0; the others did at 5.0
    assert "node-unreachable@D" in seen and "node-unreachable@A" not in seen
    ctl.report("D", [], 9.5)
    assert seen[-1] == "node-reachable@D" or "node-reachable@D" in seen


def test_draining_a_node_moves_sessions_off_it_and_eavesdroppers_are_announced() -> None:
    ctl = controller()
    report_all(ctl, 0.0)
    s = ctl.open_session("SA", "SC", 0.0, key_rate_bps=10)
    relay = s.route[1]
    ctl.drain(relay, True, 1.0)
    assert relay not in s.route and s.reroutes == 1 and ctl.directive(1.0)["drained"] == [relay]
    assert relay not in ctl.route("A", "C", 1.0)
    ctl.eavesdrop("ab", True, 2.0)
    assert ctl.directive(2.0)["links"]["ab"]["eavesdropper"] and ctl.events[-1].kind == "eavesdropper-on"
    with pytest.raises(ControlError, match="no node"):
        ctl.drain("Q", True, 3.0)
