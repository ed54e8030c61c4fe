"""``qnet simulate SPEC --duration 24h``: the network's life on the discrete-event kernel, with the
same controller and relay accounting as the live network; a markdown report with PNGs, or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qnet.cli._console import console, err_console
from qnet.cli._output import to_json
from qnet.errors import QNetError

__all__ = ["simulate"]


def simulate(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The network spec (YAML).", show_default=False),
    duration: str = typer.Option("24h", "--duration", help="Simulated time: 90s, 15min, 24h, 7d."),
    control_period: str = typer.Option("1s", "--control-period",
                                       help="The controller's period (and the model's step)."),
    out: Path = typer.Option(None, "--out", help="Write report.md, its PNGs and CSVs to this directory.",
                             show_default="simulate-NAME"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (no report files)."),
    seed: int = typer.Option(0, "--seed", min=0,
                             help="The seed of every random stream (each link's key supply and each demand's "
                                  "requests are Poisson about their means): the same seed gives the same report."),
    sweep: str = typer.Option(None, "--sweep", metavar="NAME=V1,V2,...",
                              help="Run one simulation per value on Dask: demand_scale, rate_scale or "
                                   "control_period_s."),
    scheduler: str = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                  help="With --sweep: a Dask scheduler (tcp://host:8786) instead of a local cluster."),
    key_managers: bool = typer.Option(False, "--key-managers",
                                      help="Run every node's live key manager (store, relay, sync, hand-over, ETSI "
                                           "014 service) in-process instead of the fluid model: the live network's "
                                           "own decisions, each relay attempt and request in the JSON; small "
                                           "networks over minutes to hours (the fluid model is for days)."),
) -> None:
    """Simulate SPEC's QKD network: link physics, demands, the spec's fault schedule, pool levels over
    time, re-routing by the same controller logic the live network (qnet up) runs.

    Examples:

      qnet simulate examples/tokyo-qkd-network.yaml --duration 24h --out tokyo-sim

      qnet simulate examples/kanto-qkd-network.yaml --duration 6h --json

      qnet simulate examples/kanto-qkd-network.yaml --duration 2h --sweep demand_scale=0.5,1,2,4

      qnet simulate examples/three-nodes.yaml --duration 10min --key-managers --json
    """
    from qnet.scenarios.validate import load_spec
    from qnet.units import parse_duration_s

    try:
        duration_s, period_s = parse_duration_s(duration), parse_duration_s(control_period)
    except ValueError as exc:
        raise QNetError(str(exc)) from None
    if not duration_s > 0 or not period_s > 0 or period_s > duration_s:
        raise QNetError("need --duration > 0 and 0 < --control-period <= --duration")
    spec = load_spec(spec_path)
    if sweep and key_managers:
        raise QNetError("--sweep runs the fluid model; leave out --key-managers")
    if sweep:
        _sweep(spec, sweep, duration_s, period_s, seed, scheduler, as_json)
        return
    if scheduler:
        raise QNetError("--scheduler goes with --sweep")
    result = _run(spec, duration_s, period_s, seed, quiet=as_json, key_managers=key_managers)
    if as_json:
        console.print_json(to_json(result.as_dict()))
        return
    from qnet.scenarios.simreport import CSV_FILES, FIGURES, write_report

    path = write_report(result, out or Path(f"simulate-{_slug(spec.name)}"))
    _print(result)
    console.print(f"report: {path}  (with {', '.join(FIGURES + CSV_FILES)})", highlight=False)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "network"


def _run(spec: Any, duration_s: float, period_s: float, seed: int, *, quiet: bool, key_managers: bool = False) -> Any:
    import time

    from qnet.scenarios.kmsim import simulate_key_managers
    from qnet.scenarios.simulate import link_qbers, link_rates
    from qnet.scenarios.simulate import simulate as fluid

    run = simulate_key_managers if key_managers else fluid

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task("link physics", total=1)
        started = time.perf_counter()
        rates, qbers = link_rates(spec), link_qbers(spec)
        planning_s = time.perf_counter() - started
        bar.update(task, description=f"simulating {duration_s / 3600:g} h", total=duration_s, completed=0)
        result = run(spec, duration_s, control_period_s=period_s, rates=rates, qbers=qbers, seed=seed,
                     progress=lambda t: bar.update(task, completed=t))
    result.planning_s = planning_s
    return result


def _print(result: Any) -> None:
    table = Table(title=f"{result.network}: {result.duration_s / 3600:g} h in "
                        f"{result.planning_s + result.wall_s:.1f} s ({result.planning_s:.1f} s planning the links, "
                        f"{result.wall_s:.1f} s simulating; seed {result.seed}; {result.body} body)",
                  title_justify="left")
    for col in ("demand", "asked bit/s", "delivered bit/s", "blocking", "reroutes", "route"):
        table.add_column(col, justify="right" if "bit" in col or col in ("blocking", "reroutes") else "left")
    for d in result.demands:
        route = " → ".join(d.route) if d.route else f"[red]refused: {escape(d.refused or '')}[/]"
        table.add_row(d.name, f"{d.key_rate_bps:,.0f}", f"{d.delivered_bits / result.duration_s:,.0f}",
                      f"{d.blocking_probability:.1%}", str(d.reroutes), route)
    console.print(table)
    console.print(f"route changes: {len(result.route_changes)}", highlight=False)


def _sweep(spec: Any, text: str, duration_s: float, period_s: float, seed: int, scheduler: str | None,
           as_json: bool) -> None:
    from qnet.scenarios.sweep import parse_sweep, run_sweep

    knob, values = parse_sweep(text)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"sweep {knob} on Dask ({scheduler or 'local cluster'})", total=len(values))
        points = run_sweep(spec, knob, values, duration_s, control_period_s=period_s, seed=seed, scheduler=scheduler,
                           progress=lambda n: bar.update(task, completed=n))
    if as_json:
        console.print_json(to_json({"sweep": knob, "points": points}))
        return
    table = Table(title=f"{spec.name}: sweep of {knob}, {duration_s / 3600:g} h each", title_justify="left")
    for col in (knob, "delivered Gbit", "blocking", "route changes"):
        table.add_column(col, justify="right")
    for p in points:
        asked = sum(d["requested_bits"] for d in p["demands"])
        blocked = 1 - p["delivered_bits"] / asked if asked else 0.0
        table.add_row(f"{p[knob]:g}", f"{p['delivered_bits'] / 1e9:.3f}", f"{blocked:.1%}", str(p["route_changes"]))
    console.print(table)
