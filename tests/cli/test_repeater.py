"""``qnet repeater``: a chain's report and JSON, its plot, a sweep on Dask, a network of routers, and
clear errors for bad options. The links are ``ideal`` with a given per-attempt probability, attempt
time and heralded fidelity, so the tests depend on the simulator, not on the heralding physics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qnet.cli.main import app, main

IDEAL = ["--scheme", "ideal", "--success-probability", "0.2", "--attempt-time", "100us", "--fidelity", "0.98"]
SHORT = [*IDEAL, "--duration", "0.05s", "--nodes", "3", "--coherence", "1s"]
PNG = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["repeater", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_chain_json_reports_pairs_and_a_tracked_fidelity() -> None:
    """--json: pairs delivered, a fidelity between the classical 1/4 and 1 (below the heralded 0.98 after
    a swap and storage), and the repeaterless bound and link figures next to them."""
    code, out = invoke("chain", *SHORT, "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["pairs"] > 0 and r["rate_hz"] == pytest.approx(r["pairs"] / 0.05)
    assert 0.25 < r["fidelity_mean"] <= 1.0 and r["fidelity_mean"] < 0.98
    assert r["hops"] == 2 and r["distance_km"] == 40 and r["first_pair_s"] > 0
    assert r["swaps"] >= r["pairs"] and r["repeaterless_bound_hz"] > 0
    assert r["link"]["success_probability"] == 0.2 and r["link"]["attempt_s"] == pytest.approx(1e-4)
    assert r["parameters"]["coherence_s"] == 1.0 and r["parameters"]["cutoff_s"] is None  # inf is null


def test_chain_table_names_every_number() -> None:
    """Without --json: one table with the pairs, rate, fidelity ± CI, latency, occupancy and the bound."""
    code, out = invoke("chain", *SHORT)
    assert code == 0
    for word in ("pairs", "fidelity", "±", "first pair", "mean age", "memory occupancy", "swaps", "cut-offs",
                 "repeaterless bound", "wall time"):
        assert word in out, word


def test_the_same_seed_gives_the_same_run() -> None:
    """Two runs with one seed deliver the same pairs; another seed, other pairs."""
    runs = [json.loads(invoke("chain", *SHORT, "--json", "--seed", seed)[1]) for seed in ("3", "3", "4")]
    assert runs[0]["pairs"] == runs[1]["pairs"] and runs[0]["fidelity_mean"] == runs[1]["fidelity_mean"]
    assert (runs[0]["pairs"], runs[0]["fidelity_mean"]) != (runs[2]["pairs"], runs[2]["fidelity_mean"])


def test_chain_plot_is_a_png(tmp_path: Path) -> None:
    """--plot writes the deliveries-over-time figure as a PNG."""
    png = tmp_path / "chain.png"
    code, _ = invoke("chain", *SHORT, "--plot", str(png), "--json")
    assert code == 0
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 20_000


def test_sweep_of_two_values_runs_on_dask_in_process(tmp_path: Path) -> None:
    """--sweep nodes=3,5 on the in-process Dask scheduler: one point per value, in order, the longer chain
    with the lower fidelity; --plot draws rate and fidelity against the swept value."""
    png = tmp_path / "sweep.png"
    code, out = invoke("chain", *SHORT, "--sweep", "nodes=3,5", "--scheduler", "inline", "--json",
                       "--plot", str(png))
    assert code == 0, out
    r = json.loads(out)
    assert r["sweep"] == "nodes" and [p["nodes"] for p in r["points"]] == [3, 5]
    assert [p["hops"] for p in r["points"]] == [2, 4]
    assert all(p["pairs"] > 0 for p in r["points"])
    assert r["points"][1]["fidelity_mean"] < r["points"][0]["fidelity_mean"]
    assert png.read_bytes()[:8] == PNG


def test_network_of_a_4x4_grid_with_5_requests(tmp_path: Path) -> None:
    """A 4 x 4 grid with 5 random requests: every request admitted or refused with a reason, pairs
    delivered, wall time and peak memory reported; the histogram plot is a PNG."""
    png = tmp_path / "network.png"
    code, out = invoke("network", "--topology", "grid:4x4", "--requests", "5", *IDEAL, "--duration", "0.05s",
                       "--json", "--plot", str(png))
    assert code == 0, out
    r = json.loads(out)
    assert r["routers"] == 16 and r["links"] == 24 and r["requests"] == 5
    assert r["admitted"] + r["refused_count"] == 5 == len(r["flows"]) + len(r["refused"])
    assert all(x["reason"] for x in r["refused"])
    assert r["pairs"] == sum(f["pairs"] for f in r["flows"]) > 0
    assert 0.25 < r["fidelity_mean"] <= 1 and r["wall_s"] > 0 and r["peak_rss_bytes"] > 0
    assert png.read_bytes()[:8] == PNG
    code, out = invoke("network", "--topology", "grid:4x4", "--requests", "5", *IDEAL, "--duration", "0.05s")
    assert code == 0 and "per request" in out and "peak memory" in out


@pytest.mark.parametrize(("args", "message"), [
    (["chain", "--nodes", "1"], "--nodes"),
    (["chain", "--formalism", "nope"], "'nope' is not one of"),
    (["chain", "--duration", "-1"], "a duration must be finite and > 0, got '-1'"),
    (["chain", "--duration", "soon"], "not a duration: 'soon'"),
    (["chain", "--cutoff", "0"], "--cutoff"),
    (["chain", "--scheme", "ideal"], "needs --success-probability and --attempt-time"),
    (["chain", "--swap-success", "1.5"], "must be in (0, 1]"),
    (["chain", "--plot", "out.txt"], "ending in .png"),
    (["chain", "--sweep", "speed=1,2"], "NAME one of nodes"),
    (["chain", "--sweep", "nodes=2.5"], "whole numbers"),
    (["chain", "--scheduler", "inline"], "only with --sweep"),
    (["network", "--topology", "hex:3"], "grid:ROWSxCOLS, random:N or chain:N"),
])
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """A bad option exits 2 with a message naming it, and no traceback."""
    code = main(["repeater", *args, *([] if "ideal" in args else IDEAL)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert message in err and "Traceback" not in out + err


@pytest.mark.parametrize(("args", "message"), [
    (["chain", "--memories", "1"], "give >= 2 memories, got 1"),
    (["chain", "--sweep", "nodes=1,3"], "--sweep nodes=1: a chain needs >= 2 routers"),
    (["chain", "--formalism", "stabilizer", "--purify", "1", "--purify-protocol", "bbpssw"], "dejmps only"),
])
def test_settings_that_cannot_run_get_one_error_line(capsys: pytest.CaptureFixture[str], args: list[str],
                                                     message: str) -> None:
    """Settings each valid alone but not together: exit 1 and one ``error:`` line, no traceback."""
    code = main(["repeater", *args, *IDEAL])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


def test_help_teaches_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """The group and each command say what they simulate, show examples and explain the report."""
    assert main(["repeater", "--help"]) == 0
    out = capsys.readouterr().out
    assert "qnet repeater chain --nodes 9" in out and "repeaterless" in out
    assert main(["repeater", "chain", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and "first pair" in out and "mean age" in out and "--sweep" in out


def test_a_plot_that_cannot_be_written_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A directory that exists but takes no files (/proc): a clear error, not an internal one."""
    from qnet.cli.main import main

    assert main(["repeater", "chain", *SHORT, "--plot", "/proc/qnet-plot.png"]) == 1
    err = capsys.readouterr().err
    assert "cannot write the plot" in err and "internal error" not in err
