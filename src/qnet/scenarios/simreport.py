"""The report of a ``qnet simulate`` run: a markdown page and the PNGs it shows.

``report.md`` (summary, demands, links, route changes, alarms) with four figures: ``pools.png``
(each link's stored key over time), ``delivered.png`` (key delivered per demand against what it
asked), ``blocking.png`` (blocking probability per demand) and ``routes.png`` (route changes and
alarms over time). matplotlib with the Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qnet.scenarios.simulate import SimResult

__all__ = ["write_report"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hours(result: SimResult) -> tuple[np.ndarray, str]:
    if result.duration_s >= 3 * 3600:
        return result.times_s / 3600, "time (h)"
    if result.duration_s >= 180:
        return result.times_s / 60, "time (min)"
    return result.times_s, "time (s)"


def _pools(result: SimResult, path: Path) -> None:
    plt = _pyplot()
    t, label = _hours(result)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    order: list[int] = np.argsort(-result.pools_bits.max(axis=1)).tolist() if result.pools_bits.size else []
    for n, i in enumerate(order):
        ax.plot(t, result.pools_bits[i] / 1e6, lw=1.2, label=result.links[i].name if n < 12 else None)
    for e in result.events:
        if e.kind in ("link-cut", "qber-high"):
            ax.axvline(_scale(e.time_s, result), color="crimson", lw=0.8, ls="--")
    ax.set(xlabel=label, ylabel="stored key (Mbit)", title=f"{result.network}: key pools")
    ax.grid(alpha=0.3)
    if len(order):
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scale(seconds: float, result: SimResult) -> float:
    return seconds / (3600 if result.duration_s >= 3 * 3600 else 60 if result.duration_s >= 180 else 1)


def _per_demand(result: SimResult, path: Path, draw: Any, **axes: Any) -> None:
    """A horizontal bar chart with one row per demand; ``draw(ax, y)`` draws the bars."""
    plt = _pyplot()
    names = [d.name for d in result.demands]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.8))
    y = np.arange(len(names))
    draw(ax, y)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set(**axes)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _delivered(result: SimResult, path: Path) -> None:
    def draw(ax: Any, y: np.ndarray) -> None:
        ax.barh(y, [d.requested_bits / 1e9 for d in result.demands], color="#d9d9d9", label="asked")
        ax.barh(y, [d.delivered_bits / 1e9 for d in result.demands], color="#2b8cbe", label="delivered")
        ax.legend(fontsize=8)
    _per_demand(result, path, draw, xlabel="key (Gbit)", title=f"{result.network}: key delivered per demand")


def _blocking(result: SimResult, path: Path) -> None:
    def draw(ax: Any, y: np.ndarray) -> None:
        p = [d.blocking_probability for d in result.demands]
        ax.barh(y, p, color=["#de2d26" if v > 0.01 else "#31a354" for v in p])
    _per_demand(result, path, draw, xlim=(0, 1), xlabel="blocking probability (share of asked key not supplied)",
                title=f"{result.network}: blocking per demand")


def _routes(result: SimResult, path: Path) -> None:
    plt = _pyplot()
    kinds = ["route-change", "link-cut", "link-restored", "qber-high", "pool-low", "session-no-route"]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for row, kind in enumerate(kinds):
        times = [_scale(e.time_s, result) for e in result.events if e.kind == kind]
        ax.scatter(times, [row] * len(times), marker="|", s=200, label=f"{kind} ({len(times)})")
    ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax.set(xlim=(0, _scale(result.duration_s, result)), xlabel=_hours(result)[1],
           title=f"{result.network}: route changes and alarms")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(result: SimResult) -> str:
    total_asked = sum(d.requested_bits for d in result.demands)
    total = sum(d.delivered_bits for d in result.demands)
    lines = [f"# {result.network}: {result.duration_s / 3600:g} h simulated", "",
             f"Control period {result.control_period_s:g} s; simulated in {result.wall_s:.1f} s of wall time.", "",
             f"- key delivered: **{total / 1e9:.3f} Gbit** of {total_asked / 1e9:.3f} Gbit asked "
             f"({(1 - total / total_asked) if total_asked else 0:.1%} blocked)",
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
    lines += ["", "![delivered](delivered.png)", "", "![blocking](blocking.png)", "", "## Links", "",
              "| link | ends | key rate (bit/s) | made (Mbit) | used (Mbit) | left (Mbit) |",
              "|---|---|---:|---:|---:|---:|"]
    for lk in result.links:
        lines.append(f"| {lk.name} | {lk.ends[0]}–{lk.ends[1]} | {lk.rate_bps:,.0f} | {lk.generated_bits / 1e6:,.1f} | "
                     f"{lk.consumed_bits / 1e6:,.1f} | {lk.final_pool_bits / 1e6:,.1f} |")
    lines += ["", "## Route changes and alarms", "", "![route changes](routes.png)", "",
              "| time (s) | event | where | detail |", "|---:|---|---|---|"]
    shown = [e for e in result.events if e.kind not in ("session-open",)][:200]
    lines += [f"| {e.time_s:,.0f} | {e.kind} | {e.place} | {e.detail} |" for e in shown]
    return "\n".join(lines) + "\n"


def write_report(result: SimResult, out_dir: Path) -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir`` (made if missing); returns the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _pools(result, out_dir / "pools.png")
    _delivered(result, out_dir / "delivered.png")
    _blocking(result, out_dir / "blocking.png")
    _routes(result, out_dir / "routes.png")
    path = out_dir / "report.md"
    path.write_text(_markdown(result))
    return path
