"""``qnet simulate``: the mean-field model against what can be worked out by hand, the stochastic one
against statistical bounds and its seed, the controller's decisions (re-routing on a cut, an
eavesdropper or a dead node; priorities), and the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qnet.cli.main import app
from qnet.errors import QNetError
from qnet.keys.manager import CEDE_MIN_UNITS
from qnet.scenarios.simreport import write_report
from qnet.scenarios.simulate import POOL_CAP_BITS, SimResult, simulate
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
    r = simulate(spec, 200, rates=RATES, stochastic=False)  # 20 Mbit made per link: below the pools' cap
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
    r = simulate(spec, 1000, rates={"A-B": 4000.0}, control_period_s=1.0, stochastic=False)
    d = r.demands[0]  # not admitted (5000 > 4000 bit/s on A-B), so served best effort
    assert d.refused and "exceeds what hop A-B has left: 4000 of 4000" in d.refused and d.route == ["A", "B"]
    # A sends with the units it owns and those B hands over (B sends nothing): the whole link's key,
    # less what B holds below the hand-over threshold (CEDE_MIN_UNITS units) at the end
    assert d.delivered_bits == pytest.approx(4000 * 1000, rel=0.01)
    assert d.blocking_probability == pytest.approx(0.2, abs=0.01)
    assert r.links[0].final_pool_bits < 2 * CEDE_MIN_UNITS * 256


def test_two_demands_share_a_short_hop_by_priority() -> None:
    spec = ring("""demands:
  - {name: low, between: [SB, SC], key_rate_bps: 45000, priority: 0}
  - {name: high, between: [SB, SC], key_rate_bps: 30000, priority: 5}
""")
    r = simulate(spec, 300, rates={**RATES, "B-C": 70_000.0}, stochastic=False)  # B-C: 70 kbit/s, both ways
    by = {d.name: d for d in r.demands}
    assert by["high"].route == ["B", "C"] and by["high"].blocking_probability == pytest.approx(0)
    assert by["low"].route == ["B", "A", "D", "C"]  # admitted the long way round: B-C has 40 kbit/s left
    assert by["low"].blocking_probability == pytest.approx(0)
    r = simulate(spec, 300, rates={**RATES, "B-C": 70_000.0, "C-D": 40_000.0}, stochastic=False)  # no way round
    by = {d.name: d for d in r.demands}
    assert by["high"].route == ["B", "C"] and by["high"].delivered_bits == pytest.approx(30_000 * 300)
    assert by["low"].refused and "exceeds what hop B-C has left: 40000" in by["low"].refused
    assert by["low"].delivered_bits == pytest.approx(40_000 * 300, rel=0.02)  # best effort: what high leaves


def test_a_cut_moves_the_demand_within_one_control_period() -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 100, action: cut, link: A-B, until: 200}]
""")
    r = simulate(spec, 300, rates=RATES, control_period_s=1.0, stochastic=False)
    first_route = ["A", "B", "C"]
    change = next(e for e in r.events if e.kind == "route-change")
    assert 100 <= change.time_s <= 101 and "A -> B -> C => A -> D -> C" in change.detail
    assert r.demands[0].route != first_route and r.demands[0].reroutes == 1
    assert r.demands[0].blocking_probability == pytest.approx(0, abs=1e-9)  # D-A and C-D had key stored
    made = {lk.name: lk.made_bits for lk in r.links}
    assert made["A-B"] == pytest.approx(100_000 * 200)  # nothing made while cut
    assert [e.kind for e in r.events].count("link-restored") == 1


def test_an_eavesdropper_trips_the_qber_alarm_and_traffic_leaves_the_link() -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 60, action: eavesdrop, link: A-B}]
""")
    r = simulate(spec, 300, rates=RATES, stochastic=False)
    alarm = next(e for e in r.events if e.kind == "qber-high")
    assert alarm.place == "A-B" and alarm.time_s == pytest.approx(60)
    assert r.demands[0].route == ["A", "D", "C"]
    assert {lk.name: lk.made_bits for lk in r.links}["A-B"] == pytest.approx(100_000 * 60)


def test_a_dead_node_is_routed_around_and_its_links_stop() -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 50, action: node_down, node: B}]
""")
    r = simulate(spec, 200, rates=RATES, stochastic=False)
    assert r.demands[0].route == ["A", "D", "C"] and r.demands[0].blocking_probability < 0.01
    made = {lk.name: lk.made_bits for lk in r.links}
    assert made["A-B"] == pytest.approx(100_000 * 50) and made["B-C"] == pytest.approx(100_000 * 50)


def test_a_node_back_up_brings_its_links_back() -> None:
    """Both links of a node that comes back are reported up again by both their ends (one end's
    stale "down" report used to keep one of them down for good), so a demand cut off meanwhile is
    routed through the node again."""
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 50, action: node_down, node: B, until: 100}, {at: 60, action: cut, link: C-D}]
""")
    r = simulate(spec, 200, rates=RATES, stochastic=False)
    ups = {e.place for e in r.events if e.kind == "link-up" and e.time_s == pytest.approx(100)}
    assert ups == {"A-B", "B-C"}
    assert r.demands[0].route == ["A", "B", "C"]
    assert r.demands[0].delivered_bits > 2000 * 150  # served again after 100 s (cut off from 60 to 100)


def test_runs_are_reproducible_and_the_report_is_written(tmp_path: Path) -> None:
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 2000}]
faults: [{at: 100, action: cut, link: B-C}]
""")
    a, b = simulate(spec, 400, rates=RATES, seed=3), simulate(spec, 400, rates=RATES, seed=3)
    assert a.as_dict() | {"wall_s": 0, "planning_s": 0} == b.as_dict() | {"wall_s": 0, "planning_s": 0}
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
    demand = data["demands"][0]  # 4687.5 units of 256 bits asked on average: Poisson, so within 5 sigma
    assert data["duration_s"] == 600 and demand["delivered_bits"] == demand["requested_bits"]
    assert abs(demand["requested_bits"] / 256 - 4687.5) < 5 * 4687.5**0.5
    r = runner.invoke(app, ["simulate", str(spec), "--duration", "10min", "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.md").exists()
    with pytest.raises(QNetError, match="not a duration"):  # main() prints it without a traceback
        runner.invoke(app, ["simulate", str(spec), "--duration", "soon"], catch_exceptions=False)


def test_sweep_parsing_and_a_local_dask_sweep() -> None:
    with pytest.raises(Exception, match="NAME one of demand_scale"):
        parse_sweep("speed=1,2")
    with pytest.raises(Exception, match="values > 0"):
        parse_sweep("demand_scale=0")
    spec = load_spec(Path(__file__).resolve().parents[1] / "integration" / "specs" / "ring6.yaml")
    points = run_sweep(spec, "demand_scale", [1.0, 2.0], 600, workers=2)
    assert [p["demand_scale"] for p in points] == [1.0, 2.0]
    units = [p["demands"][0]["requested_bits"] / 256 for p in points]  # Poisson counts of 256-bit keys
    assert abs(units[1] - 2 * units[0]) < 5 * (units[1] + 4 * units[0]) ** 0.5


def _without_timing(result: SimResult) -> dict[str, object]:
    return result.as_dict() | {"wall_s": 0, "planning_s": 0}


def test_the_seed_decides_the_run(tmp_path: Path) -> None:
    """Issue 12: the same seed gives the same report, file for file; another seed another one (key
    supply and requests are Poisson, drawn from each link's and each demand's own stream)."""
    spec = ring("""demands: [{between: [SA, SC], key_rate_bps: 30000}, {between: [SB, SC], key_rate_bps: 20000}]
faults: [{at: 100, action: cut, link: B-C, until: 150}]
""")
    runs = {seed: [simulate(spec, 300, rates=RATES, seed=seed) for _ in range(2)] for seed in (1, 999)}
    assert _without_timing(runs[1][0]) == _without_timing(runs[1][1])
    assert _without_timing(runs[1][0]) != _without_timing(runs[999][0])
    assert runs[1][0].links[0].made_bits != runs[999][0].links[0].made_bits
    files: dict[str, dict[str, bytes]] = {}
    for name, r in (("a", runs[1][0]), ("b", runs[1][1]), ("c", runs[999][0])):
        write_report(r, tmp_path / name)
        files[name] = {f.name: f.read_bytes() for f in sorted((tmp_path / name).glob("*.csv"))}
        text = (tmp_path / name / "report.md").read_text().splitlines()
        files[name]["report.md"] = "\n".join(line for line in text if "Wall time" not in line).encode()
    assert files["a"] == files["b"] and set(files["a"]) == {"pools.csv", "delivered.csv", "links.csv", "report.md"}
    assert all(files["a"][f] != files["c"][f] for f in ("pools.csv", "delivered.csv", "report.md"))
    flat = [simulate(spec, 300, rates=RATES, seed=seed, stochastic=False) for seed in (1, 999)]
    assert _without_timing(flat[0]) | {"seed": 0} == _without_timing(flat[1]) | {"seed": 0}


def test_cli_seed_1_and_999_differ_and_repeat(tmp_path: Path) -> None:
    """`qnet simulate --seed` (the issue's reproduction): seeds 1 and 999 used to print the same."""
    spec = tmp_path / "ring.yaml"
    spec.write_text(RING + "demands: [{between: [SA, SC], key_rate_bps: 2000}]\n")
    out = {}
    for seed in ("1", "999", "1"):
        r = CliRunner().invoke(app, ["simulate", str(spec), "--duration", "5min", "--json", "--seed", seed])
        assert r.exit_code == 0, r.output
        data = json.loads(r.output)
        assert data["seed"] == int(seed) and data["stochastic"] is True
        out.setdefault(seed, []).append({k: v for k, v in data.items() if k not in ("wall_s", "planning_s")})
    assert out["1"][0] == out["1"][1] and out["1"][0] != out["999"][0]


def test_poisson_supply_keeps_the_mean_rate() -> None:
    """Over seeds, each link makes its mean rate on average; each run lies within 5 sigma of it."""
    spec = ring("demands: [{between: [SA, SC], key_rate_bps: 10000}]")
    units = 100_000 * 100 / 256  # mean units per link in 100 s
    made = np.array([[lk.made_bits / 256 for lk in simulate(spec, 100, rates=RATES, seed=s).links]
                     for s in range(8)])
    assert np.all(np.abs(made - units) < 5 * np.sqrt(units))
    assert abs(made.mean() - units) < 5 * np.sqrt(units / made.size)
    assert made.std() > 0.2 * np.sqrt(units)  # it does fluctuate, by about sqrt(units)


def test_made_is_not_capped_and_every_bit_is_accounted_for() -> None:
    """Issue 13: a link that makes more than its pools hold reports all it made; made = stored +
    discarded and stored = used + left, per link; utilisation is used / made."""
    spec = parse_spec("""
name: two
nodes: [{name: A}, {name: B}]
links: [{endpoints: [A, B], length_km: 20}]
applications: [{sae_id: SA, node: A}, {sae_id: SB, node: B}]
demands: [{between: [SA, SB], key_rate_bps: 20000}]
""")
    rate, duration = 100_000.0, 600.0  # 60 Mbit made, more than twice the pools' POOL_CAP_BITS
    for stochastic in (False, True):
        lk = simulate(spec, duration, rates={"A-B": rate}, stochastic=stochastic).links[0]
        assert lk.made_bits == pytest.approx(rate * duration, rel=0 if not stochastic else 0.01)
        assert lk.made_bits > POOL_CAP_BITS
        assert lk.made_bits == pytest.approx(lk.stored_bits + lk.discarded_bits)
        assert lk.stored_bits == pytest.approx(lk.consumed_bits + lk.final_pool_bits)
        assert lk.discarded_bits > 0 and lk.final_pool_bits <= POOL_CAP_BITS
        assert lk.utilisation == pytest.approx(lk.consumed_bits / lk.made_bits, rel=0.02)
    assert lk.utilisation == pytest.approx(0.2, rel=0.02)  # 20 of the link's 100 kbit/s, one way


def test_the_summary_counts_planning_and_the_csv_holds_the_series(tmp_path: Path) -> None:
    """Without rates given, the link physics is timed as planning and the report says so; the CSV
    files hold the same numbers as the result's arrays."""
    spec = ring("demands: [{between: [SA, SC], key_rate_bps: 2000}]")
    r = simulate(spec, 120, samples=10)
    assert r.planning_s > 0 and r.wall_s > 0
    report = write_report(r, tmp_path).read_text()
    assert f"{r.planning_s:.1f} s planning the links" in report and f"{r.planning_s + r.wall_s:.1f} s" in report
    with (tmp_path / "pools.csv").open() as f:
        pools = list(csv.reader(f))
    assert pools[0] == ["time_s", "A-B", "B-C", "C-D", "D-A"] and len(pools) == 1 + len(r.times_s)
    assert np.allclose(np.array(pools[1:], dtype=float)[:, 1:].T, r.pools_bits)
    with (tmp_path / "delivered.csv").open() as f:
        delivered = list(csv.reader(f))
    assert delivered[0] == ["time_s", "SA->SC delivered_bits", "SA->SC rate_bps"]
    series = np.array(delivered[1:], dtype=float)
    assert np.allclose(series[:, 1], r.delivered_bits[0]) and np.allclose(series[:, 2], r.delivered_rate_bps()[0])
    assert series[1:, 2].mean() == pytest.approx(2000, rel=0.1)  # the delivered rate over time sits at the ask


def test_the_pools_plot_names_every_link_and_draws_node_faults() -> None:
    """Issue 13: all 18 links of a Kanto-sized network are in the legend, each with its own colour
    and line style, and a node-down fault is drawn as a span; a run with nothing blocked says so."""
    from qnet.scenarios.simreport import blocking_figure, pools_figure

    n = 18
    nodes = ", ".join(f"{{name: N{i}}}" for i in range(n))
    links = "\n".join(f"  - {{endpoints: [N{i}, N{(i + 1) % n}], length_km: 20}}" for i in range(n))
    spec = parse_spec(f"""name: big
nodes: [{nodes}]
links:
{links}
applications: [{{sae_id: S0, node: N0}}, {{sae_id: S5, node: N5}}]
demands: [{{between: [S0, S5], key_rate_bps: 1000}}]
faults: [{{at: 60, action: node_down, node: N2, until: 120}}, {{at: 90, action: cut, link: N3-N4}}]
""")
    r = simulate(spec, 150, rates={lk.label: 50_000.0 for lk in spec.links})  # the x axis in seconds
    fig = pools_figure(r)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [lab for lab in labels if ":" not in lab] == [lk.label for lk in spec.links]
    assert "node down: N2" in labels and "cut: N3-N4" in labels
    styles = {(str(line.get_color()), line.get_linestyle(), line.get_marker()) for line in ax.get_lines()
              if not line.get_label().startswith("_")}
    assert len(styles) == n
    spans = [p for p in ax.patches if p.get_label() == "node down: N2"]
    assert len(spans) == 1 and spans[0].get_x() == pytest.approx(60) and spans[0].get_width() == pytest.approx(60)
    assert all(d.blocking_probability == 0 for d in r.demands)
    blocking = blocking_figure(r)
    texts = [t.get_text() for t in blocking.axes[0].texts]
    assert any("no demand was blocked" in t for t in texts)
    import matplotlib.pyplot as plt  # after simreport chose the Agg backend

    plt.close(fig)
    plt.close(blocking)


def test_the_simulators_hand_over_is_the_key_managers_rule() -> None:
    """One brain: the fluid model's vectorised hand-over moves, on every link, exactly the units that
    ``qnet.keys.manager.cede_count`` (what the live key managers run) would."""
    from qnet.keys.manager import cede_count
    from qnet.scenarios.simulate import hand_over

    rng = np.random.default_rng(4)
    units = rng.integers(0, 20_000, size=(500, 2)).astype(float)
    units[::7, 0] = 0  # one end empty: a one-way demand
    moved = hand_over(units.reshape(-1) * 256).reshape(-1, 2) / 256
    for (a, b), (a2, b2) in zip(units, moved, strict=True):
        out = cede_count(int(a), int(b)) - cede_count(int(b), int(a))  # what a gives minus what it gets
        assert (a2, b2) == (a - out, b + out)
