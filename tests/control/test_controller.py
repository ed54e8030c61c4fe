"""The controller's brain: merged link states, alarms, cuts, sessions with admission and priority, and
re-routing (pure logic, clock passed in)."""

from __future__ import annotations

import pytest

from qnet.control.controller import Controller, LinkReport, state_from_dict
from qnet.control.events import EventKind
from qnet.control.routing import RoutePolicy, Topology, key_level_cost
from qnet.errors import QNetError
from qnet.keys.events import KMEEvent
from qnet.management.alarms import RAISES
from qnet.servers.errors import CONTROL_STATUS, status_of

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
    with pytest.raises(QNetError) as err:
        ctl.cut("nope", 2.0)
    assert status_of(err.value, CONTROL_STATUS) == 404


def test_sessions_refuse_unknown_saes_access_and_over_capacity() -> None:
    ctl = controller(access={"SX": ["SB"]})
    with pytest.raises(QNetError, match="unknown SAE") as err:
        ctl.open_session("SA", "SZ", 0.0)
    assert status_of(err.value, CONTROL_STATUS) == 401
    with pytest.raises(QNetError, match="access control"):
        ctl.open_session("SA", "SX", 0.0)
    ctl.open_session("SA", "SB", 0.0, key_rate_bps=400)  # both directions share a link's rate (the ends
    ctl.open_session("SB", "SA", 0.0, key_rate_bps=500)  # hand each other the units they do not use)
    detour = ctl.open_session("SA", "SB", 0.0, key_rate_bps=150)  # the direct link is full: the long way round
    assert detour.route == ["A", "D", "C", "B"]
    with pytest.raises(QNetError, match="exceeds what hop A-B has left: 100 of 1000") as err:
        ctl.open_session("SA", "SB", 0.0, key_rate_bps=851)  # the detour has 850 left
    assert status_of(err.value, CONTROL_STATUS) == 503
    with pytest.raises(QNetError, match="already open"):
        s = ctl.open_session("SA", "SB", 0.0, key_rate_bps=100, key_stream_id="k1")
        ctl.open_session("SA", "SB", 0.0, key_stream_id=s.key_stream_id)


def test_a_higher_priority_session_preempts_lower_ones() -> None:
    ctl = controller()
    low = ctl.open_session("SA", "SB", 0.0, key_rate_bps=350, priority=0)
    high = ctl.open_session("SA", "SB", 1.0, key_rate_bps=700, priority=5)
    assert high.key_stream_id in ctl.sessions and low.key_stream_id not in ctl.sessions
    assert any(e.kind == "session-preempted" for e in ctl.events)
    ctl.close_session(high.key_stream_id, 2.0)
    with pytest.raises(QNetError):
        ctl.close_session(high.key_stream_id, 2.0)


def test_policy_limits_are_named() -> None:
    ctl = Controller(SQUARE, RoutePolicy(max_hops=1), saes=SAES)
    with pytest.raises(QNetError, match="policy allows at most 1") as err:
        ctl.open_session("SA", "SC", 0.0)
    assert status_of(err.value, CONTROL_STATUS) == 503


def test_malformed_reports_are_refused() -> None:
    ctl = controller()
    with pytest.raises(QNetError, match="malformed"):
        LinkReport.from_dict({"link_id": "ab", "stored_units": "lots", "key_rate_bps": 1})
    with pytest.raises(QNetError, match="out of range"):
        LinkReport.from_dict({"link_id": "ab", "stored_units": 1, "key_rate_bps": 1, "qber": 3})
    with pytest.raises(QNetError, match="not a link of node"):
        ctl.report("A", [LinkReport("bc", 1, 1.0)], 0.0)
    with pytest.raises(QNetError, match="unknown node"):
        ctl.report("Q", [], 0.0)


def test_directive_round_trips_to_link_states() -> None:
    ctl = controller()
    report_all(ctl, 0.0)
    ctl.cut("bc", 0.5)
    links = ctl.directive(0.6)["links"]
    states = {lid: state_from_dict(raw) for lid, raw in links.items()}
    assert states == ctl.states(0.6)


def test_a_key_managers_events_are_filed_under_the_controllers_kinds() -> None:
    """Every kind a key manager records has its controller kind (``kme-KIND``; a refused KM message
    is ``auth-failure``); every alarm's clearing kind is a kind; an unknown kind reported is a 400
    naming it, and nothing of that report is taken."""
    for kind in KMEEvent:
        filed = EventKind.from_kme(kind)
        assert filed == (EventKind.AUTH_FAILURE if kind is KMEEvent.KM_MESSAGE_REFUSED else f"kme-{kind}")
    assert all(clear is None or clear in set(EventKind) for clear, _ in RAISES.values())
    assert EventKind.QBER_HIGH.cleared() is EventKind.QBER_HIGH_CLEARED
    ctl = controller()
    before = len(ctl.events)
    with pytest.raises(QNetError, match=r"unknown event kind\(s\) 'link-exploded'; a key manager reports one of"):
        ctl.report("A", [LinkReport("ab", 500, 1000.0, 0.02)], 0.5, events=[(0.4, "link-exploded", "boom")])
    assert len(ctl.events) == before and "A" not in ctl.links["ab"].reports


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
    with pytest.raises(QNetError, match="no node"):
        ctl.drain("Q", True, 3.0)


def test_admission_never_routes_through_a_drained_node() -> None:
    """The square from issue 12: drain B, fill A-D-C; the next session is refused, not admitted
    on A-B-C through the drained node (the alternatives used to ignore drained nodes)."""
    ctl = controller(cost=key_level_cost)
    report_all(ctl, 0.0)
    for a, b, lid in SQUARE.links[:2]:  # less key on A-B-C: A-D-C is the cheapest route, A-B-C the next
        for node in (a, b):
            ctl.report(node, [LinkReport(lid, 100, 1000.0, 0.02)], 0.0)
    ctl.drain("B", True, 0.0)
    first = ctl.open_session("SA", "SC", 0.0, key_rate_bps=800)  # A-D and D-C have 1000 bit/s each
    assert first.route == ["A", "D", "C"]
    with pytest.raises(QNetError, match="exceeds what hop A-D has left: 200 of 1000") as err:
        ctl.open_session("SA", "SC", 0.0, key_rate_bps=800)
    assert status_of(err.value, CONTROL_STATUS) == 503
    assert all("B" not in s.route[1:-1] for s in ctl.sessions.values())
    ctl.drain("B", False, 1.0)
    assert ctl.open_session("SA", "SC", 1.0, key_rate_bps=800).route == ["A", "B", "C"]


def test_a_session_leaves_a_link_that_falls_below_the_policys_minimum_rate() -> None:
    """Re-routing uses the router's definition of a usable link, so a link whose measured rate falls
    below the policy's minimum moves the sessions over it at once (it used to check only up/alarm)."""
    ctl = controller(policy=RoutePolicy(min_key_rate_bps=50.0))
    report_all(ctl, 0.0)
    s = ctl.open_session("SA", "SB", 0.0, key_rate_bps=10)
    assert s.route == ["A", "B"]
    ctl.report("A", [LinkReport("ab", 500, 10.0, 0.02)], 1.0)  # below the policy's 50 bit/s
    ctl.reroute(1.0)
    assert s.route == ["A", "D", "C", "B"]


def test_admission_uses_planned_rates_until_the_links_are_measured() -> None:
    """Before the ends have reported for ``measure_s`` admission counts on the planned rate; after,
    on the measured one (the smaller end's); the refusal and the admission say which."""
    ctl = controller(measure_s=60.0)  # planned: 1000 bit/s per link, shared by its two directions
    for t in (0.0, 1.0):
        report_all(ctl, t)  # the live links make only 200 bit/s ...
    for a, b, lid in SQUARE.links:
        for node in (a, b):
            ctl.report(node, [LinkReport(lid, 500, 200.0, 0.02)], 1.5)
    early = ctl.open_session("SA", "SB", 2.0, key_rate_bps=300)  # ... but they are not measured yet
    assert early.admitted_against == "planned" and "admitted against planned rates" in ctl.events[-1].detail
    ctl.close_session(early.key_stream_id, 3.0)
    for t in range(0, 70, 2):  # reporting 200 bit/s every 2 s for a minute
        for a, b, lid in SQUARE.links:
            for node in (a, b):
                ctl.report(node, [LinkReport(lid, 500, 200.0 if node != "B" else 180.0, 0.02)], float(t))
    assert ctl.admission_rate_bps("ab", 68.0) == (180.0, "measured")
    with pytest.raises(QNetError, match=r"exceeds what hop A-B has left: 180 of 180 bit/s \(measured rate\)"):
        ctl.open_session("SA", "SB", 68.0, key_rate_bps=300)
    ok = ctl.open_session("SA", "SB", 68.0, key_rate_bps=170)
    assert ok.admitted_against == "measured" and ok.as_dict()["admitted_against"] == "measured"


def test_a_link_silent_then_back_is_planned_again_until_measured() -> None:
    """A gap in the reports restarts the measurement; a link never planned is unlimited until measured."""
    ctl = Controller(SQUARE, saes=SAES, measure_s=10.0, silence_s=3.0)
    assert ctl.admission_rate_bps("ab", 0.0) == (float("inf"), "planned")
    for t in range(0, 12):
        for node in "AB":
            ctl.report(node, [LinkReport("ab", 5, 300.0, 0.0)], float(t))
    assert ctl.admission_rate_bps("ab", 11.0) == (300.0, "measured")
    for node in "AB":
        ctl.report(node, [LinkReport("ab", 5, 300.0, 0.0)], 20.0)  # after 9 s of silence
    assert ctl.admission_rate_bps("ab", 20.0)[1] == "planned"


def test_feed_lag_and_mode_are_merged_exported_and_optional() -> None:
    """``lag_s`` and ``feed_mode`` ride the reports (the larger lag; ``sampled`` if either end
    samples), reach the directive and the controller's metrics, and an older KME may leave them out."""
    from qnet.management.metrics import ControllerMetrics

    ctl = controller()
    old = LinkReport.from_dict({"link_id": "ab", "stored_units": 5, "key_rate_bps": 100.0})
    assert (old.lag_s, old.feed_mode) == (None, None)
    ctl.report("A", [LinkReport.from_dict({"link_id": "ab", "stored_units": 5, "key_rate_bps": 100.0,
                                           "lag_s": 1.5, "feed_mode": "photon"})], 0.0)
    ctl.report("B", [LinkReport.from_dict({"link_id": "ab", "stored_units": 5, "key_rate_bps": 100.0,
                                           "lag_s": 7.25, "feed_mode": "sampled"})], 0.0)
    ctl.report("C", [LinkReport.from_dict({"link_id": "bc", "stored_units": 5, "key_rate_bps": 100.0,
                                           "lag_s": None, "feed_mode": None})], 0.0)
    states = ctl.states(0.5)
    assert (states["ab"].lag_s, states["ab"].feed_mode) == (7.25, "sampled")
    assert (states["bc"].lag_s, states["bc"].feed_mode) == (None, None)
    links = ctl.directive(0.5)["links"]
    assert links["ab"]["lag_s"] == 7.25 and links["ab"]["feed_mode"] == "sampled" and links["bc"]["lag_s"] is None
    assert {lid: state_from_dict(raw) for lid, raw in links.items()} == states
    assert state_from_dict({"up": True}).lag_s is None  # an older controller's directive
    text = ControllerMetrics(ctl, clock=lambda: 0.5).exposition()[0].decode()
    assert 'qnet_link_lag_seconds{link="ab"} 7.25' in text and 'qnet_link_lag_seconds{link="bc"}' not in text
    for bad, why in (({"lag_s": -1}, "lag_s must be a finite number"), ({"lag_s": "late"}, "malformed"),
                     ({"feed_mode": "quantum"}, "feed_mode must be one of photon, sampled")):
        with pytest.raises(QNetError, match=why) as err:
            LinkReport.from_dict({"link_id": "ab", "stored_units": 5, "key_rate_bps": 1.0, **bad})
        assert status_of(err.value, CONTROL_STATUS) == 400


def test_a_cut_parallel_link_adds_no_capacity() -> None:
    """Admission counts only the usable links of a hop: with one of two parallel links cut, the hop
    has half the rate (it used to count the planned rate of the cut one too)."""
    topo = Topology(("A", "B"), (("A", "B", "one"), ("A", "B", "two")))
    ctl = Controller(topo, saes={"SA": "A", "SB": "B"}, capacity_bps={"one": 1000.0, "two": 1000.0})
    ctl.cut("two", 0.0)
    with pytest.raises(QNetError, match=r"has left: 1000 of 1000 bit/s \(planned rate\)"):
        ctl.open_session("SA", "SB", 0.0, key_rate_bps=1200)
    ctl.restore("two", 1.0)
    assert ctl.open_session("SA", "SB", 1.0, key_rate_bps=1200).route == ["A", "B"]


def test_the_revision_counts_what_key_managers_must_hear_of() -> None:
    """Key managers wait on the revision between reports: a cut, a session or an alarm moves it;
    a routine report, or a key manager's own event passed on, does not."""
    ctl = controller(qber_threshold=0.05)
    report_all(ctl, 0.0)
    start = ctl.revision
    report_all(ctl, 1.0)
    ctl.report("A", [LinkReport("ab", 500, 1000.0, 0.02)], 1.5, events=[(1.4, "pool-ok", "link ab")])
    assert ctl.revision == start
    ctl.cut("ab", 2.0)
    assert ctl.revision > start
    after_cut = ctl.revision
    ctl.open_session("SA", "SC", 2.5)
    assert ctl.revision > after_cut
    after_open = ctl.revision
    ctl.report("C", [LinkReport("cd", 500, 1000.0, 0.25)], 3.0)  # QBER alarm
    assert ctl.revision > after_open


def test_a_link_not_yet_up_while_the_network_starts_is_no_alarm() -> None:
    """While a network starts, each KME reports its links down until it has reached the peer: no
    link-down alarm then (they cleared 1-2 s later, and an alarm that cries wolf at every start
    teaches operators to ignore alarms). A link that never comes up is alarmed after the grace; one
    that was up and goes down, at once."""
    ctl = controller()
    seen: list[str] = []
    ctl.listeners.append(lambda e: seen.append(f"{e.kind}@{e.place}"))
    for a, b, lid in SQUARE.links:
        for node in (a, b):
            ctl.report(node, [LinkReport(lid, 0, 0.0, None, up=lid != "bc")], 0.0)
    ctl.report("A", [LinkReport("ab", 0, 0.0, None, up=False)], 1.0)  # ab was up: down now
    assert "link-down@ab" in seen and "link-down@bc" not in seen
    for t in (10.0, 20.0):
        ctl.report("B", [LinkReport("bc", 0, 0.0, None, up=False)], t)
    assert "link-down@bc" not in seen
    ctl.report("B", [LinkReport("bc", 0, 0.0, None, up=False)], ctl.start_grace_s + 1.0)
    assert "link-down@bc" in seen


def test_key_streams_connect_once_and_a_stream_its_kme_no_longer_lists_is_closed() -> None:
    """ETSI 004 streams: the second end connects once (again is a conflict: KSID in use); a KME's
    report that no longer lists a stream it connected to frees the stream's capacity, after a grace
    of three periods; operator sessions (no ETSI 004 QoS) are never touched."""
    ctl = controller()
    stream = ctl.open_session("SB", "SA", 0.0, key_rate_bps=600, opener="SA", qos={"key_chunk_size": 32})
    plain = ctl.open_session("SA", "SB", 0.0, key_rate_bps=100)
    assert stream.connected == {"SA"}
    ctl.connect_session(stream.key_stream_id, "SB", 0.5)
    with pytest.raises(QNetError, match=r"connected to Key_stream_ID .* already"):
        ctl.connect_session(stream.key_stream_id, "SB", 0.6)
    with pytest.raises(QNetError, match="neither end"):
        ctl.connect_session(stream.key_stream_id, "SC", 0.6)
    listing = [{"Key_stream_ID": stream.key_stream_id, "SAE_ID": "SA", "bits": 2048}]
    ctl.take_usage("A", [{"SAE_ID": "SA", "peer_SAE_ID": "SB", "api": "etsi004", "keys": 8, "bits": 2048},
                         {"SAE_ID": "SB", "peer_SAE_ID": "SA", "api": "etsi004", "keys": 1, "bits": 1}], listing, 1.0)
    assert ctl.usage["A"] == [{"SAE_ID": "SA", "peer_SAE_ID": "SB", "api": "etsi004", "keys": 8, "bits": 2048}]
    assert stream.delivered_bits == {"SA": 2048}
    ctl.take_usage("A", [], [], 2.0)  # within the grace: kept (the report may predate the stream)
    assert stream.key_stream_id in ctl.sessions
    ctl.take_usage("A", [], [], 10.0)
    assert stream.key_stream_id not in ctl.sessions and plain.key_stream_id in ctl.sessions
    assert ctl.open_session("SA", "SB", 10.0, key_rate_bps=800).route == ["A", "B"]  # the capacity is back
