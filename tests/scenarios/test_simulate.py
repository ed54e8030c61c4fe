"""``qnet simulate``: the fluid model against what can be worked out by hand, the controller's
decisions (re-routing on a cut, an eavesdropper or a dead node; priorities), and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qnet.cli.main import app
from qnet.errors import QNetError
from qnet.scenarios.simreport import write_report
from qnet.scenarios.simulate import POOL_CAP_BITS, simulate
from qnet.scenarios.sweep import parse_sweep, run_sweep
from qnet.scenarios.validate import load_spec, parse_spec

RING = """
name: ring
nodes: [{name: A}, {name: B}, {name: C}, {name: D}]
links:
  - {endpoints: [A, B], length_km: 20}
  - {endpoints: [B, C], length_km: 20}
  - {endpoints: [C, D], length_km: 20}
  - {endpoints: [D, A], length_km: 20}
applications: [{sae_id: SA, node: A}, {sae_id: SC, node: C}, {sae_id: SB, node: B}]
"""
RATES = {"A-B": 100_000.0, "B-C": 100_000.0, "C-D": 100_000.0, "D-A": 100_000.0}


def ring(extra: str) -> object:
    return parse_spec(RING + extra)


def test_a_demand_below_the_rates_gets_everything_and_every_hop_pays_for_it() -> None:
    spec = ring("demands: [{between: [SA, SC], key_rate_bps: 40000}]")
    r = simulate(spec, 200, rates=RATES)  # 20 Mbit made per link: below the pools' cap
    d = r.demands[0]
    assert d.delivered_bits == pytest.approx(40_000 * 200) and d.blocking_probability == pytest.approx(0)
    assert d.reroutes == 0  # the pools fill from empty: filling is not running low
    hops = {frozenset(h) for h in zip(d.route, d.route[1:], strict=False)}
    for lk in r.links:  # two hops pay for every bit; pool = made - used; made = rate x time
        on_route = frozenset(lk.ends) in hops
        assert lk.consumed_bits == pytest.approx(40_000 * 200 if on_route else 0)
        assert lk.final_pool_bits == pytest.approx(100_000 * 200 - lk.consumed_bits)


def test_a_demand_above_the_rate_gets_the_rate_and_the_rest_is_blocked() -> None:
    spec = parse_spec("""
name: two
nodes: [{name: A}, {name: B}]
links: [{endpoints: [A, B], length_km: 20}]
applications: [{sae_id: SA, node: A}, {sae_id: SB, node: B}]
demands: [{between: [SA, SB], key_rate_bps: 5000}]
""")
    r = simulate(spec, 1000, rates={"A-B": 4000.0}, control_period_s=1.0)
    d = r.demands[0]  # not admitted (5000 > 2000 bit/s from A to B), so served best effort
    assert d.refused and "exceeds what hop A-B has left: 2000 of 2000" in d.refused and d.route == ["A", "B"]
    # A sends with the units it owns: half of what the link makes; B's half waits for keys B sends
    assert d.delivered_bits == pytest.approx(2000 * 1000) and d.blocking_probability == pytest.approx(0.6)
    assert r.links[0].final_pool_bits == pytest.approx(2000 * 1000) and POOL_CAP_BITS / 2 > 2000 * 1000


def test_two_demands_share_a_short_hop_by_priority() -> None:
    spec = ring("""demands:
  - {name: low, between: [SB, SC], key_rate_bps: 30000, priority: 0}
  - {name: high, between: [SB, SC], key_rate_bps: 30000, priority: 5}
""")
    r = simulate(spec, 300, rates={**RATES, "B-C": 70_000.0})  # B -> C: 35 kbit/s
    by = {d.name: d for d in r.demands}
    assert by["high"].route == ["B", "C"] and by["high"].blocking_probability == pytest.approx(0)
    assert by["low"].route == ["B", "A", "D", "C"]  # admitted the long way round: B-C has 5 kbit/s left
    assert by["low"].blocking_probability == pytest.approx(0)
    r = simulate(spec, 300, rates={**RATES, "B-C": 70_000.0, "C-D": 40_000.0})  # no way round for 30k
    by = {d.name: d for d in r.demands}
    assert by["high"].route == ["B", "C"] and by["high"].delivered_bits == pytest.approx(30_000 * 300)
    assert by["low"].refused and "exceeds what hop B-C has left: 5000" in by["low"].refused
    assert by["low"].delivered_bits == pytest.approx(5_000 * 300, rel=0.01)  # best effort: what high leaves


def test_a_cut_moves_the_demand_within_one_control_period() -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 100, action: cut, link: A-B, until: 200}]
""")
    r = simulate(spec, 300, rates=RATES, control_period_s=1.0)
    first_route = ["A", "B", "C"]
    change = next(e for e in r.events if e.kind == "route-change")
    assert 100 <= change.time_s <= 101 and "A -> B -> C => A -> D -> C" in change.detail
    assert r.demands[0].route != first_route and r.demands[0].reroutes == 1
    assert r.demands[0].blocking_probability == pytest.approx(0, abs=1e-9)  # D-A and C-D had key stored
    made = {lk.name: lk.generated_bits for lk in r.links}
    assert made["A-B"] == pytest.approx(100_000 * 200)  # nothing made while cut
    assert [e.kind for e in r.events].count("link-restored") == 1


def test_an_eavesdropper_trips_the_qber_alarm_and_traffic_leaves_the_link() -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 60, action: eavesdrop, link: A-B}]
""")
    r = simulate(spec, 300, rates=RATES)
    alarm = next(e for e in r.events if e.kind == "qber-high")
    assert alarm.place == "A-B" and alarm.time_s == pytest.approx(60)
    assert r.demands[0].route == ["A", "D", "C"]
    assert {lk.name: lk.generated_bits for lk in r.links}["A-B"] == pytest.approx(100_000 * 60)


def test_a_dead_node_is_routed_around_and_its_links_stop() -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 50, action: node_down, node: B}]
""")
    r = simulate(spec, 200, rates=RATES)
    assert r.demands[0].route == ["A", "D", "C"] and r.demands[0].blocking_probability < 0.01
    made = {lk.name: lk.generated_bits for lk in r.links}
    assert made["A-B"] == pytest.approx(100_000 * 50) and made["B-C"] == pytest.approx(100_000 * 50)


def test_runs_are_reproducible_and_the_report_is_written(tmp_path: Path) -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 100, action: cut, link: B-C}]
""")
    a, b = simulate(spec, 400, rates=RATES, seed=3), simulate(spec, 400, rates=RATES, seed=3)
    assert a.as_dict() | {"wall_s": 0} == b.as_dict() | {"wall_s": 0}
    report = write_report(a, tmp_path / "out")
    text = report.read_text()
    assert "| demand |" in text and "route-change" in text and "link-cut" in text
    for png in ("pools.png", "delivered.png", "blocking.png", "routes.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"
    assert a.pools_bits.shape == (4, len(a.times_s)) and a.delivered_bits[0, -1] > 0


def test_bad_faults_are_named_in_the_spec() -> None:
    from qnet.errors import SpecError

    with pytest.raises(SpecError) as err:
        parse_spec(RING + """faults:
  - {at: 10, action: cut, link: A-X}
  - {at: 1h, action: node_down, node: Q}
  - {at: 20, action: restore, link: A-B, until: 5}
  - {at: soon, action: cut, link: A-B}
""")
    text = str(err.value)
    for bit in ("faults[0].link: unknown link 'A-X'", "faults[1].node: unknown node 'Q'",
                "faults[2].until: must come after 'at'", "faults[3].at"):
        assert bit in text


def test_cli_json_and_report(tmp_path: Path) -> None:
    spec = tmp_path / "ring.yaml"
    spec.write_text(RING + "demands: [{between: [SA, SC], key_rate_bps: 2000}]\n")
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", str(spec), "--duration", "10min", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["duration_s"] == 600 and data["demands"][0]["delivered_bits"] == pytest.approx(2000 * 600)
    r = runner.invoke(app, ["simulate", str(spec), "--duration", "10min", "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.md").exists()
    with pytest.raises(QNetError, match="not a duration"):  # main() prints it without a traceback
        runner.invoke(app, ["simulate", str(spec), "--duration", "soon"], catch_exceptions=False)


def test_sweep_parsing_and_a_local_dask_sweep() -> None:
    with pytest.raises(Exception, match="NAME one of demand_scale"):
        parse_sweep("speed=1,2")
    with pytest.raises(Exception, match="values > 0"):
        parse_sweep("demand_scale=0")
    spec = load_spec(Path(__file__).resolve().parents[1] / "servers" / "specs" / "ring6.yaml")
    points = run_sweep(spec, "demand_scale", [1.0, 2.0], 600, workers=2)
    assert [p["demand_scale"] for p in points] == [1.0, 2.0]
    asked = [p["demands"][0]["requested_bits"] for p in points]
    assert asked[1] == pytest.approx(2 * asked[0])
