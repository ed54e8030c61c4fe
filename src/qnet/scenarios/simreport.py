"""The report of a ``qnet simulate`` run: a markdown page, the PNGs it shows, and CSV files.

``report.md`` (summary, demands, links, faults, route changes, alarms) with six figures:

- ``pools.png``: each link's stored key over time, every link in the legend with its own colour and
  line style, and the fault schedule drawn over it (cuts, eavesdroppers, nodes down, as shaded spans);
- ``delivered.png``: key delivered per demand against what it asked;
- ``rates.png``: each demand's delivered rate over time, against the rate it asks for;
- ``blocking.png``: blocking probability per demand (or a note saying that nothing was blocked);
- ``utilisation.png``: per link, the share of its key that demands used;
- ``routes.png``: route changes, alarms and faults over time.

The time series go to ``pools.csv`` (each link's pools, bits) and ``delivered.csv`` (each demand's
key delivered so far, bits, and its rate since the sample before, bit/s), and the per-link totals to
``links.csv``. matplotlib with the Agg backend.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qnet.scenarios.simulate import FaultRecord, SimResult
from qnet.scenarios.spec import FaultAction

__all__ = ["CSV_FILES", "FIGURES", "blocking_figure", "fault_spans", "line_styles", "pools_figure", "write_csv",
           "write_report"]

FIGURES = ("pools.png", "delivered.png", "rates.png", "blocking.png", "utilisation.png", "routes.png")
CSV_FILES = ("pools.csv", "delivered.csv", "links.csv")

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")  # matplotlib's tab10
_DASHES = ("-", "--", ":", "-.")
_MARKERS = ("", "o", "s", "^", "x", "d")
_SPANS = {FaultAction.CUT: ("cut", "crimson"), FaultAction.EAVESDROP: ("eavesdropper on", "darkorange"),
          FaultAction.NODE_DOWN: ("node down", "purple")}
"""Faults drawn as spans (from the fault to its opposite): their label and colour."""
_ENDS = {FaultAction.CUT: FaultAction.RESTORE, FaultAction.EAVESDROP: FaultAction.EAVESDROP_END,
         FaultAction.NODE_DOWN: FaultAction.NODE_UP}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_styles(n: int) -> list[tuple[str, str, str]]:
    """``n`` distinct (colour, line style, marker) triples: ten colours, then the same ten dashed,
    dotted and dash-dotted, then with markers (240 before any repeats).

    Examples:
        >>> len(set(line_styles(40))), line_styles(11)[10]
        (40, ('#1f77b4', '--', ''))
    """
    combos = itertools.product(_MARKERS, _DASHES, _COLOURS)
    return [(colour, dash, marker) for (marker, dash, colour), _ in zip(itertools.cycle(combos), range(n),
                                                                        strict=False)]


def _scale(result: SimResult) -> tuple[float, str]:
    if result.duration_s >= 3 * 3600:
        return 3600.0, "time (h)"
    if result.duration_s >= 180:
        return 60.0, "time (min)"
    return 1.0, "time (s)"


def fault_spans(result: SimResult) -> Iterator[tuple[FaultRecord, float]]:
    """Each cut, eavesdropper and node down of the run with the time it ended (the run's end if it
    did not)."""
    for i, fault in enumerate(result.faults):
        end_action = _ENDS.get(fault.action)
        if end_action is None:
            continue
        end = next((f.time_s for f in result.faults[i + 1:] if f.action is end_action and f.target == fault.target),
                   result.duration_s)
        yield fault, end


def pools_figure(result: SimResult) -> Any:
    """The pools plot: one line per link (all in the legend, each its own style) and the faults."""
    plt = _pyplot()
    unit, label = _scale(result)
    t = result.times_s / unit
    n = len(result.links)
    columns = max(1, math.ceil(n / 26))
    fig, ax = plt.subplots(figsize=(9 + 2.2 * columns, 4.8))
    for i, (colour, dash, marker) in enumerate(line_styles(n)):
        ax.plot(t, result.pools_bits[i] / 1e6, lw=1.2, color=colour, ls=dash, marker=marker or None,
                markevery=max(len(t) // 12, 1), ms=3, label=result.links[i].name)
    for fault, end in fault_spans(result):
        what, colour = _SPANS[fault.action]
        ax.axvspan(fault.time_s / unit, end / unit, color=colour, alpha=0.12, lw=0, label=f"{what}: {fault.target}")
        ax.axvline(fault.time_s / unit, color=colour, lw=0.8, ls="--")
    for e in result.events:
        if e.kind == "qber-high":
            ax.axvline(e.time_s / unit, color="darkorange", lw=0.8, ls=":")
    ax.set(xlabel=label, ylabel="stored key (Mbit)", title=f"{result.network}: key pools",
           xlim=(0, result.duration_s / unit))
    ax.grid(alpha=0.3)
    if n or result.faults:
        ax.legend(fontsize=7, ncol=columns, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def _per_row(names: list[str], title: str, draw: Any, **axes: Any) -> Any:
    """A horizontal bar chart with one row per name; ``draw(ax, y)`` draws the bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.42 * max(len(names), 1) + 1.8))
    y = np.arange(len(names))
    draw(ax, y)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, **axes)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _delivered(result: SimResult) -> Any:
    def draw(ax: Any, y: np.ndarray) -> None:
        ax.barh(y, [d.requested_bits / 1e9 for d in result.demands], color="#d9d9d9", label="asked")
        ax.barh(y, [d.delivered_bits / 1e9 for d in result.demands], color="#2b8cbe", label="delivered")
        if result.demands:
            ax.legend(fontsize=8)
    return _per_row([d.name for d in result.demands], f"{result.network}: key delivered per demand", draw,
                    xlabel="key (Gbit)")


def blocking_figure(result: SimResult) -> Any:
    """Blocking probability per demand; when nothing was blocked the plot says so."""
    p = [d.blocking_probability for d in result.demands]

    def draw(ax: Any, y: np.ndarray) -> None:
        ax.barh(y, p, color=["#de2d26" if v > 0.01 else "#31a354" for v in p])
        for row, v in zip(y, p, strict=True):
            ax.text(min(v, 0.86) + 0.01, row, f"{v:.3%}" if v < 0.01 else f"{v:.1%}", va="center", fontsize=7)
        if not any(v >= _VISIBLE for v in p):
            ax.text(0.5, 0.5, _no_blocking(result), transform=ax.transAxes, ha="center", va="center", fontsize=11,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "#31a354"})
    return _per_row([d.name for d in result.demands], f"{result.network}: blocking per demand", draw, xlim=(0, 1),
                    xlabel="blocking probability (share of asked key not supplied)")


_VISIBLE = 0.001
"""Blocking below this share does not show as a bar: the plot says so instead."""


def _no_blocking(result: SimResult) -> str:
    """What the blocking plot and the report say when no demand's blocking shows."""
    if not result.demands:
        return "no demands in this spec"
    worst = max(result.demands, key=lambda d: d.blocking_probability)
    if worst.blocking_probability <= 0:
        return "no demand was blocked: every bit asked was supplied"
    return (f"no demand lost {_VISIBLE:.1%} of the key it asked\n(the most: {worst.name}, "
            f"{worst.blocking_probability:.3%})")


def _sentence(text: str) -> str:
    text = text.replace("\n", " ")
    return text[:1].upper() + text[1:] + "."


def _utilisation(result: SimResult) -> Any:
    def draw(ax: Any, y: np.ndarray) -> None:
        u = [lk.utilisation for lk in result.links]
        ax.barh(y, u, color=["#de2d26" if v > 0.9 else "#2b8cbe" for v in u])
        for row, v in zip(y, u, strict=True):
            ax.text(min(v, 0.86) + 0.01, row, f"{v:.1%}", va="center", fontsize=7)
    return _per_row([lk.name for lk in result.links], f"{result.network}: link utilisation", draw, xlim=(0, 1),
                    xlabel="share of its key that demands used")


def _rates(result: SimResult) -> Any:
    plt = _pyplot()
    unit, label = _scale(result)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    rates = result.delivered_rate_bps()
    t = result.times_s / unit
    for j, (d, (colour, dash, _)) in enumerate(zip(result.demands, line_styles(len(result.demands)), strict=True)):
        ax.step(t[1:], rates[j, 1:] / 1e3, where="pre", color=colour, ls=dash, lw=1.2, label=d.name)
        ax.axhline(d.key_rate_bps / 1e3, color=colour, lw=0.7, ls=(0, (1, 3)))
    ax.set(xlabel=label, ylabel="delivered (kbit/s)", title=f"{result.network}: delivered rate per demand "
           "(dotted: asked)", xlim=(0, result.duration_s / unit))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if result.demands:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def _routes(result: SimResult) -> Any:
    plt = _pyplot()
    unit, label = _scale(result)
    rows = [(k, [e.time_s for e in result.events if e.kind == k])
            for k in ("route-change", "link-cut", "link-restored", "qber-high", "pool-low", "session-no-route")]
    rows += [(f"fault: {a.value}", [f.time_s for f in result.faults if f.action is a])
             for a in (FaultAction.NODE_DOWN, FaultAction.NODE_UP, FaultAction.EAVESDROP)]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for row, (_, times) in enumerate(rows):
        ax.scatter([x / unit for x in times], [row] * len(times), marker="|", s=200)
    ax.set_yticks(range(len(rows)), [f"{k} ({len(ts)})" for k, ts in rows], fontsize=8)
    ax.set(xlim=(0, result.duration_s / unit), xlabel=label, title=f"{result.network}: route changes, alarms, faults")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _timing(result: SimResult) -> str:
    model = (f"seed {result.seed} (Poisson key supply and requests)" if result.stochastic
             else "mean-field model (no randomness)")
    total = result.planning_s + result.wall_s
    return (f"Control period {result.control_period_s:g} s; {model}. Wall time {total:.1f} s: "
            f"{result.planning_s:.1f} s planning the links, {result.wall_s:.1f} s simulating.")


def _markdown(result: SimResult) -> str:
    asked = sum(d.requested_bits for d in result.demands)
    total = sum(d.delivered_bits for d in result.demands)
    made, stored, dropped = (sum(getattr(lk, k) for lk in result.links)
                             for k in ("made_bits", "stored_bits", "discarded_bits"))
    lines = [f"# {result.network}: {result.duration_s / 3600:g} h simulated", "", _timing(result), "",
             f"- key made by the links: **{made / 1e9:.3f} Gbit**; stored in their pools: {stored / 1e9:.3f} Gbit; "
             f"discarded (a pool was full): {dropped / 1e9:.3f} Gbit",
             f"- key delivered to SAEs: **{total / 1e9:.3f} Gbit** of {asked / 1e9:.3f} Gbit asked "
             f"({(1 - total / asked) if asked else 0:.1%} blocked)",
             f"- route changes: **{len(result.route_changes)}**",
             f"- alarms: {sum(e.severity in ('major', 'minor') for e in result.events)}", "",
             "![key pools](pools.png)", "", "## Demands", "",
             "| demand | SAEs | asked (bit/s) | delivered (bit/s) | blocking | reroutes | route |",
             "|---|---|---:|---:|---:|---:|---|"]
    for d in result.demands:
        route = " → ".join(d.route) if d.route else f"refused: {d.refused}"
        lines.append(f"| {d.name} | {d.saes[0]} → {d.saes[1]} | {d.key_rate_bps:,.0f} | "
                     f"{d.delivered_bits / result.duration_s:,.0f} | {d.blocking_probability:.1%} | "
                     f"{d.reroutes} | {route} |")
    blocked = any(d.blocking_probability >= _VISIBLE for d in result.demands)
    lines += ["", "![delivered](delivered.png)", "", "![delivered rate](rates.png)", "",
              "![blocking](blocking.png)" if blocked else _sentence(_no_blocking(result)),
              "", "## Links", "",
              "Made = stored + discarded; stored = used + left. Utilisation: used / made (the ends hand unused "
              "units to each other, so one direction may use the whole link).", "",
              "| link | ends | key rate (bit/s) | made (Mbit) | stored (Mbit) | used (Mbit) | discarded (Mbit) | "
              "left (Mbit) | utilisation |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for lk in result.links:
        lines.append(f"| {lk.name} | {lk.ends[0]}–{lk.ends[1]} | {lk.rate_bps:,.0f} | {lk.made_bits / 1e6:,.1f} | "
                     f"{lk.stored_bits / 1e6:,.1f} | {lk.consumed_bits / 1e6:,.1f} | {lk.discarded_bits / 1e6:,.1f} | "
                     f"{lk.final_pool_bits / 1e6:,.1f} | {lk.utilisation:.1%} |")
    lines += ["", "![utilisation](utilisation.png)", "", "## Faults", ""]
    lines += (["| time (s) | fault | where |", "|---:|---|---|"]
              + [f"| {f.time_s:,.0f} | {f.action.value} | {f.target} |" for f in result.faults]
              if result.faults else ["None scheduled."])
    lines += ["", "## Route changes and alarms", "", "![route changes](routes.png)", "",
              "| time (s) | event | where | detail |", "|---:|---|---|---|"]
    shown = [e for e in result.events if e.kind not in ("session-open",)][:200]
    lines += [f"| {e.time_s:,.0f} | {e.kind} | {e.place} | {e.detail} |" for e in shown]
    lines += ["", "Time series: `pools.csv`, `delivered.csv`; per-link totals: `links.csv`."]
    return "\n".join(lines) + "\n"


def write_csv(result: SimResult, out_dir: Path) -> list[Path]:
    """Write ``pools.csv``, ``delivered.csv`` and ``links.csv`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rates = result.delivered_rate_bps()
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {
        "pools.csv": (["time_s", *(lk.name for lk in result.links)],
                      [[t, *result.pools_bits[:, k]] for k, t in enumerate(result.times_s)]),
        "delivered.csv": (["time_s", *itertools.chain.from_iterable(
            (f"{d.name} delivered_bits", f"{d.name} rate_bps") for d in result.demands)],
            [[t, *itertools.chain.from_iterable(zip(result.delivered_bits[:, k], rates[:, k], strict=True))]
             for k, t in enumerate(result.times_s)]),
        "links.csv": (["link", "end_a", "end_b", "rate_bps", "made_bits", "stored_bits", "consumed_bits",
                       "discarded_bits", "final_pool_bits", "utilisation"],
                      [[lk.name, *lk.ends, lk.rate_bps, lk.made_bits, lk.stored_bits, lk.consumed_bits,
                        lk.discarded_bits, lk.final_pool_bits, lk.utilisation] for lk in result.links]),
    }
    paths = []
    for name, (header, rows) in tables.items():
        path = out_dir / name
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows([[_cell(v) for v in row] for row in rows])
        paths.append(path)
    return paths


def _cell(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, float | np.floating) else value


def write_report(result: SimResult, out_dir: Path) -> Path:
    """Write ``report.md``, its PNGs (:data:`FIGURES`) and the CSV files into ``out_dir`` (made if
    missing); returns the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    figures = (pools_figure, _delivered, _rates, blocking_figure, _utilisation, _routes)
    for name, make in zip(FIGURES, figures, strict=True):
        fig = make(result)
        fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
    write_csv(result, out_dir)
    path = out_dir / "report.md"
    path.write_text(_markdown(result))
    return path
