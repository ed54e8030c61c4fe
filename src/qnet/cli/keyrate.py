"""``qnet keyrate``: secret-key rate against distance, or of every link of a network spec."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console
from qnet.cli._output import check_plot_path, to_json
from qnet.cli._parse import parse_distances, parse_params

if TYPE_CHECKING:
    from qnet.physics.keyrate import KeyRatePoint
    from qnet.scenarios.planner import NetworkPlan

__all__ = ["keyrate"]


def keyrate(
    protocol: list[str] = typer.Option(
        ["bb84-decoy"], "--protocol", "-p",
        help="Protocol: bb84-decoy, cv-qkd, mdi-qkd, tf-qkd. Repeat to compare several.",
    ),
    distance_km: str = typer.Option(
        "0:200:5", "--distance-km", "-d",
        help="Fibre lengths in km: START:STOP:STEP (STOP included), a list 10,50,100, or one number.",
    ),
    param: list[str] = typer.Option(
        [], "--param", metavar="NAME=VALUE",
        help="Override a device parameter, e.g. --param detector_efficiency=0.1 (repeatable).",
    ),
    spec: Path | None = typer.Option(
        None, "--spec", help="A network spec: give the rate of every link and check its demands.",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG: rate vs distance with the PLOB bound (a map with --spec).",
        show_default=False,
    ),
    list_params: bool = typer.Option(
        False, "--list-params", help="List each protocol's parameters, defaults and ranges, and exit.",
    ),
) -> None:
    """Secret-key rate of QKD protocols against fibre distance, from published physics.

    Rates are secret bits per pulse (per symbol for cv-qkd) and per second at the parameter
    [bold]rep_rate_hz[/]; [bold]mu[/] is optimised unless given. The PLOB bound -log2(1-eta) is
    the limit for any point-to-point protocol; tf-qkd is held to the one-relay bound instead.

    Examples:

      qnet keyrate --protocol bb84-decoy --distance-km 0:200:5 --json

      qnet keyrate -p bb84-decoy -p cv-qkd -p tf-qkd -d 0:400:10 --plot rates.png

      qnet keyrate --param decoy=vacuum+weak --param block_size=1e10 -d 25,50

      qnet keyrate --spec examples/tokyo-qkd-network.yaml --plot tokyo.png

      qnet keyrate --list-params -p cv-qkd
    """
    if list_params:
        _print_parameters(protocol)
        return
    if plot is not None:
        check_plot_path(plot)
    if spec is not None:
        if param or protocol != ["bb84-decoy"]:
            raise typer.BadParameter("with --spec, each link's protocol and params come from the spec file; "
                                     "edit them there", param_hint="--param/--protocol")
        _keyrate_spec(spec, as_json=as_json, plot=plot)
        return
    distances = parse_distances(distance_km)
    curves = _sweep(protocol, distances, parse_params(param))
    if as_json:
        typer.echo(to_json([p.as_dict() for points in curves.values() for p in points]))
    else:
        for name, points in curves.items():
            console.print(_curve_table(name, points))
    if plot is not None:
        from qnet.scenarios.plots import plot_key_rates

        err_console.print(f"wrote {escape(str(plot_key_rates(curves, plot)))}")


def _protocol_params(protocols: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Each protocol's parameters, with the overrides that belong to it."""
    from qnet.errors import ParameterError, Problem, did_you_mean
    from qnet.physics.keyrate import get_protocol

    models = [get_protocol(name) for name in protocols]
    known = sorted({n for m in models for n in m.parameter_names})
    unknown = [Problem(k, "unknown parameter" + did_you_mean(k, known)) for k in overrides if k not in known]
    if unknown:
        raise ParameterError(unknown)
    return {m.name: m.params({k: v for k, v in overrides.items() if k in m.parameter_names})
            for m in models}


def _sweep(protocols: list[str], distances: list[float], overrides: dict[str, Any]) -> dict[str, list[KeyRatePoint]]:
    from rich.progress import Progress

    from qnet.physics.keyrate import key_rate

    params = _protocol_params(protocols, overrides)
    curves: dict[str, list[KeyRatePoint]] = {name: [] for name in params}
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("computing key rates", total=len(params) * len(distances))
        for name, p in params.items():
            for d in distances:
                curves[name].append(key_rate(name, d, p))
                progress.advance(task)
    return curves


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _curve_table(name: str, points: list[KeyRatePoint]) -> Any:
    from rich.table import Table

    from qnet.physics.keyrate import get_protocol

    model = get_protocol(name)
    table = Table(title=f"{name}: {model.summary}", title_justify="left")
    for col in ("distance_km", "loss_db", f"rate_per_{model.per}", "rate_bps", "mu", "QBER", "bound"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(_fmt(p.distance_km, "g"), _fmt(p.loss_db, ".2f"), _fmt(p.rate_per_pulse),
                      _fmt(p.rate_bps), _fmt(p.mu, ".3f"), _fmt(p.qber, ".4f"), _fmt(p.bound))
    return table


def _keyrate_spec(spec_path: Path, *, as_json: bool, plot: Path | None) -> None:
    from rich.progress import Progress

    from qnet.scenarios.planner import plan_network
    from qnet.scenarios.validate import load_spec

    spec = load_spec(spec_path)
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("planning links", total=len(spec.links))
        plan = plan_network(spec, progress=lambda _name: progress.advance(task))
    if as_json:
        typer.echo(to_json(plan.as_dict()))
    else:
        _print_plan(plan)
    if plot is not None:
        from qnet.scenarios.plots import plot_network

        err_console.print(f"wrote {escape(str(plot_network(spec, plan, plot)))}")


def _print_plan(plan: NetworkPlan) -> None:
    from rich.table import Table
    from rich.text import Text

    links = Table(title=Text(f"{plan.name}: secret-key rate per link"), title_justify="left")
    for col in ("link", "endpoints", "protocol", "km", "dB", "key rate", "QBER"):
        links.add_column(col, no_wrap=True,
                         justify="left" if col in {"link", "endpoints", "protocol"} else "right")
    for lk in plan.links:
        r = lk.rate
        links.add_row(Text(lk.name), Text("-".join(lk.endpoints)), r.protocol, f"{r.distance_km:.1f}",
                      f"{r.loss_db:.1f}", _bps(r.rate_bps) if r.rate_bps > 0 else "[red]no key[/]",
                      _fmt(r.qber, ".2%"))
    console.print(links)
    if not plan.demands:
        return
    demands = Table(title="demands (each alone: max-flow over the link key rates)", title_justify="left")
    for col in ("demand", "nodes", "wanted", "capacity", "status"):
        demands.add_column(col)
    for d in plan.demands:
        status = "[green]fits[/]" if d.feasible else "[red]short[/]"
        demands.add_row(Text(d.name), Text(" -> ".join(d.nodes)), _bps(d.key_rate_bps), _bps(d.capacity_bps),
                        status)
    console.print(demands)


def _bps(value: float) -> str:
    """A bit rate with an SI prefix: 81.7 kbit/s."""
    if value == float("inf"):
        return "unlimited"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}bit/s"
    return f"{value:.3g} bit/s"


def _print_parameters(protocols: list[str]) -> None:
    from dataclasses import fields

    from rich.table import Table

    from qnet.physics.keyrate import get_protocol

    for name in protocols:
        model = get_protocol(name)
        table = Table(title=f"{name}: {model.summary}", title_justify="left")
        for col in ("parameter", "default", "allowed", "meaning"):
            table.add_column(col)
        defaults, meanings = model.params(), _attribute_docs(model.params_type.__doc__ or "")
        for f in fields(model.params_type):
            value = getattr(defaults, f.name)
            shown = "unset" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
            table.add_row(f.name, shown, model.params_type.LIMITS[f.name].describe(), meanings.get(f.name, ""))
        console.print(table)


def _attribute_docs(doc: str) -> dict[str, str]:
    """``{name: text}`` from the ``Attributes:`` section of a Google-style docstring."""
    out: dict[str, str] = {}
    lines = doc.split("Attributes:", 1)[1].splitlines()[1:] if "Attributes:" in doc else []
    current = ""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            break
        head, sep, rest = stripped.partition(": ")
        if sep and head.isidentifier() and line.startswith(" " * 8) and not line.startswith(" " * 12):
            current = head
            out[current] = rest
        elif current:
            out[current] += " " + stripped
    return {k: v.replace("``None``", "unset").replace("``", "") for k, v in out.items()}
