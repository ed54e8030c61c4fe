"""Plots for people who would rather look than read: key rate vs distance, and a network map.

matplotlib with the Agg backend (no display needed), written to PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qnet.physics.bounds import plob_bound, single_repeater_bound
from qnet.scenarios.planner import node_positions
from qnet.units import db_to_transmittance

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from qnet.physics.keyrate import KeyRatePoint
    from qnet.scenarios.planner import NetworkPlan
    from qnet.scenarios.spec import NetworkSpec

__all__ = ["plot_key_rates", "plot_network"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_key_rates(curves: Mapping[str, Sequence[KeyRatePoint]], path: str | Path) -> Path:
    """Secret bits per channel use against distance, one line per protocol, with the PLOB bound
    (and the one-relay bound when twin-field QKD is drawn), on a log scale. Writes a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for name, points in curves.items():
        d = np.array([p.distance_km for p in points])
        r = np.array([p.rate_per_pulse for p in points])
        ax.semilogy(d[r > 0], r[r > 0], lw=2, label=name)
    _draw_bounds(ax, curves)
    ax.set_xlabel("fibre length (km)")
    ax.set_ylabel("secret key rate (bits per pulse / symbol)")
    ax.set_title("Secret-key rate against distance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    positive = [p.rate_per_pulse for pts in curves.values() for p in pts if p.rate_per_pulse > 0]
    if positive:
        ax.set_ylim(bottom=max(min(positive) / 10, 1e-12), top=max(positive) * 10)
    return _save(fig, plt, path)


def _draw_bounds(ax: Axes, curves: Mapping[str, Sequence[KeyRatePoint]]) -> None:
    """PLOB for each distinct loss-per-km among the curves; the one-relay bound for tf-qkd."""
    drawn: set[tuple[float, ...]] = set()
    for name, points in curves.items():
        d = np.array([p.distance_km for p in points])
        loss = np.array([p.loss_db for p in points])
        eta = np.asarray(db_to_transmittance(loss))
        key = tuple(np.round(loss, 6))
        if key not in drawn:
            drawn.add(key)
            per_km = (loss[-1] - loss[0]) / (d[-1] - d[0]) if len(d) > 1 and d[-1] > d[0] else 0.0
            grey = str(min(0.6, 0.3 * (len(drawn) - 1)))  # black, then greys for other fibres
            ax.semilogy(d[d > 0], np.asarray(plob_bound(eta))[d > 0], "--", color=grey, lw=1,
                        label=f"PLOB bound ({per_km:.2f} dB/km)")
        if name == "tf-qkd":
            ax.semilogy(d[d > 0], np.asarray(single_repeater_bound(eta))[d > 0], "k:", lw=1,
                        label="one-relay bound (tf-qkd)")


def plot_network(spec: NetworkSpec, plan: NetworkPlan, path: str | Path) -> Path:
    """A map of the network: nodes at their longitude/latitude (a spring layout for nodes without
    one), links drawn with a width that grows with the log of their key rate and labelled with it;
    links that make no key are red and dashed. Writes a PNG."""
    plt = _pyplot()
    pos = _positions(spec)
    fig, ax = plt.subplots(figsize=(9, 7), dpi=120)
    rates = [lk.rate.rate_bps for lk in plan.links]
    top = max([r for r in rates if r > 0], default=1.0)
    parallel: dict[frozenset[str], int] = {}
    xs, ys = zip(*pos.values(), strict=True)
    extent = float(np.hypot(np.ptp(xs), np.ptp(ys))) or 1.0
    for index, lk in enumerate(plan.links):
        pair = frozenset(lk.endpoints)
        k = parallel.get(pair, 0)
        parallel[pair] = k + 1
        length = float(np.hypot(*np.subtract(pos[lk.endpoints[0]], pos[lk.endpoints[1]])))
        _draw_link(ax, pos, lk.endpoints, lk.rate.rate_bps, top, k, lk.name, index=index,
                   short=length < 0.2 * extent)
    for node in spec.nodes:
        x, y = pos[node.name]
        ax.plot(x, y, "o", ms=12, color=_NODE_COLOURS.get(node.kind.value, "grey"), zorder=3)
        ax.annotate(node.name, (x, y), textcoords="offset points", xytext=(8, 8), fontsize=10,
                    weight="bold")
    ax.set_title(f"{plan.name}: secret-key rate per link (line width ~ log rate)")
    if len(pos) == len([n for n in spec.nodes if n.location is not None]) and pos:
        mean_lat = float(np.mean([y for _, y in pos.values()]))
        ax.set_aspect(1.0 / max(np.cos(np.radians(mean_lat)), 0.1), adjustable="datalim")
    for kind, colour in _NODE_COLOURS.items():
        if any(n.kind.value == kind for n in spec.nodes):
            ax.plot([], [], "o", color=colour, label=kind.replace("_", " "))
    ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.margins(0.15)
    ax.grid(True, alpha=0.2)
    return _save(fig, plt, path)


_NODE_COLOURS = {"trusted_node": "tab:blue", "user_node": "tab:green", "satellite": "tab:purple",
                 "ground_station": "tab:orange"}


def _positions(spec: NetworkSpec) -> dict[str, tuple[float, float]]:
    import networkx as nx

    fixed = node_positions(spec.nodes)
    if len(fixed) == len(spec.nodes):
        return fixed
    graph = nx.Graph()
    graph.add_nodes_from(n.name for n in spec.nodes)
    graph.add_edges_from(tuple(lk.endpoints) for lk in spec.links)
    layout = nx.spring_layout(graph, pos=fixed or None, fixed=list(fixed) or None, seed=1)
    return {k: (float(v[0]), float(v[1])) for k, v in layout.items()}


def _draw_link(ax: Axes, pos: Mapping[str, tuple[float, float]], ends: tuple[str, str],
               rate_bps: float, top: float, k: int, name: str, *, index: int, short: bool) -> None:
    """One link as a quadratic Bezier curve; parallel links (k = 1, 2, ...) bow out alternately."""
    p0, p2 = np.array(pos[ends[0]]), np.array(pos[ends[1]])
    normal = np.array([-(p2 - p0)[1], (p2 - p0)[0]])
    bow = 0.25 * ((k + 1) // 2) * (1 if k % 2 else -1)
    p1 = (p0 + p2) / 2 + bow * normal
    t = np.linspace(0.0, 1.0, 50)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    if rate_bps > 0:
        width = 1.0 + 5.0 * max(0.0, 1.0 + np.log10(rate_bps / top) / 4)
        ax.plot(curve[:, 0], curve[:, 1], "-", lw=width, color="tab:cyan", alpha=0.8, zorder=1)
    else:
        ax.plot(curve[:, 0], curve[:, 1], "--", lw=1.5, color="tab:red", zorder=1)
    mid = curve[len(curve) // 2]
    unit = normal / (np.linalg.norm(normal) or 1.0)
    # labels of short links would sit on top of each other: push them off the line, alternately
    shift = 30.0 * (1 if index % 2 else -1) * unit if short else np.zeros(2)
    offset = (float(shift[0]), float(shift[1]))
    ax.annotate(f"{name}\n{_short_bps(rate_bps)}", (float(mid[0]), float(mid[1])), xytext=offset,
                textcoords="offset points", fontsize=7, ha="center", va="center",
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.85, "lw": 0})


def _short_bps(value: float) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}bit/s"
    return f"{value:.3g} bit/s" if value > 0 else "no key"


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    out = Path(path)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
