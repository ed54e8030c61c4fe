"""Plots of quantum-repeater runs (``qnet repeater ... --plot``): a chain's deliveries over time, a sweep's
rate and fidelity against the swept setting with the repeaterless bound, and a network's spread of pairs
and fidelities over its requests.

matplotlib with the Agg backend (no display needed), as :mod:`qnet.scenarios.plots`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from qnet.quantum.entanglement.report import FlowReport, Report

from qnet.errors import QNetError

__all__ = ["plot_chain", "plot_chain_sweep", "plot_network"]

MAX_DOTS = 20_000
"""Pairs drawn one by one at most (an even subsample beyond): the PNG stays small and quick to draw."""

_RATE, _FIDELITY, _BOUND = "tab:blue", "tab:purple", "0.35"


def plot_chain(flow: FlowReport, duration_s: float, path: str | Path, *, title: str,
               raw_fidelity: float | None = None) -> Path:
    """Two panels over simulated time: the cumulative number of delivered pairs (with the mean rate and the
    repeaterless bound's pace), and each pair's fidelity at delivery with the mean and its 95 % interval
    (and ``raw_fidelity``, the heralded pairs' fidelity, for reference)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7.5), dpi=120, sharex=True)
    times = np.array([d.time_s for d in flow.deliveries])
    fidelities = np.array([d.fidelity for d in flow.deliveries])
    scale, unit = _time_unit(duration_s)
    _cumulative(top, flow, times, duration_s, scale)
    top.set_title(f"{flow.source} → {flow.destination}: {flow.hops} links, {flow.distance_km:g} km, "
                  f"{flow.pairs:,} pairs in {duration_s * scale:g} {unit}", fontsize=11, loc="left")
    _fidelity_dots(bottom, flow, times, fidelities, scale, raw_fidelity)
    bottom.set_xlabel(f"simulated time ({unit})")
    bottom.set_xlim(0, duration_s * scale)
    fig.suptitle(_wrap(title), fontsize=9, color="0.3", x=0.01, ha="left")
    return _save(fig, plt, path)


def _cumulative(ax: Axes, flow: FlowReport, times: np.ndarray, duration_s: float, scale: float) -> None:
    counts = np.arange(1, len(times) + 1)
    ax.step(np.r_[0.0, times, duration_s] * scale, np.r_[0, counts, len(times)], where="post", color=_RATE, lw=2,
            label="delivered pairs")
    if flow.pairs:
        ax.plot([0, duration_s * scale], [0, flow.rate_hz * duration_s], ":", color="black", lw=1,
                label=f"mean rate {_hz(flow.rate_hz)}")
    top = max(1.0, len(times)) * 1.15
    bound = flow.repeaterless_bound_hz
    if math.isfinite(bound) and bound > 0:
        label = f"repeaterless (PLOB) bound {_hz(bound)}: {flow.rate_hz / bound:.3g}× reached"
        if bound * duration_s <= 3 * top:  # on the scale: draw its pace
            top = max(top, bound * duration_s * 1.05)
            ax.plot([0, duration_s * scale], [0, bound * duration_s], "--", color=_BOUND, lw=1.5, label=label)
        else:  # far above: a line of the legend only
            ax.plot([], [], "--", color=_BOUND, lw=1.5, label=label + " (off the scale)")
    ax.set_ylim(0, top)
    ax.set_ylabel("end-to-end pairs (cumulative)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)


def _fidelity_dots(ax: Axes, flow: FlowReport, times: np.ndarray, fidelities: np.ndarray, scale: float,
                   raw_fidelity: float | None) -> None:
    step = max(1, math.ceil(len(times) / MAX_DOTS))
    shown = "" if step == 1 else f" (every {step}th)"
    ax.plot(times[::step] * scale, fidelities[::step], ".", ms=4 if len(times) < 2000 else 2, color=_FIDELITY,
            alpha=0.45, rasterized=True, label=f"each pair{shown}")
    marks = list(fidelities)
    if flow.pairs:
        ci = flow.fidelity_ci95 if math.isfinite(flow.fidelity_ci95) else 0.0
        ax.axhline(flow.fidelity_mean, color="black", lw=1.5,
                   label=f"mean {flow.fidelity_mean:.4f} ± {ci:.2g} (95 % CI)")
        if ci > 0:
            ax.axhspan(flow.fidelity_mean - ci, flow.fidelity_mean + ci, color="black", alpha=0.15, lw=0)
    if raw_fidelity is not None:
        ax.axhline(raw_fidelity, color="tab:green", lw=1, ls="-.", label=f"heralded link pair {raw_fidelity:.4g}")
        marks.append(raw_fidelity)
    low, high = (min(marks), max(marks)) if marks else (0.5, 1.0)
    pad = max(high - low, 0.01) * 0.25
    if low - pad <= 0.5:  # the threshold is in view: mark it
        ax.axhline(0.5, color="tab:red", lw=1, ls="--", label="0.5: no entanglement below")
    ax.set_ylim(max(0.0, low - pad), min(1.0 + pad / 5, high + pad))
    ax.set_ylabel("fidelity at delivery")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)


def plot_chain_sweep(points: Sequence[Mapping[str, Any]], knob: str, path: str | Path, *, title: str) -> Path:
    """Rate (with the repeaterless bound at the same mode rate) and fidelity (with its 95 % interval) against
    the swept setting: one point per chain."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8.5, 7), dpi=120, sharex=True)
    x = np.array([float(p[knob]) for p in points])
    rate = np.array([float(p["rate_hz"]) for p in points])
    bound = np.array([_finite(p["repeaterless_bound_hz"]) for p in points])
    top.semilogy(x[rate > 0], rate[rate > 0], "o-", color=_RATE, lw=2, label="repeater chain (simulated)")
    if (rate == 0).any():
        top.plot(x[rate == 0], np.full((rate == 0).sum(), _floor(rate, bound)), "v", color="tab:red",
                 label="no pair delivered")
    ok = np.isfinite(bound) & (bound > 0)
    top.semilogy(x[ok], bound[ok], "--", color=_BOUND, lw=1.5, label="repeaterless (PLOB) bound, same mode rate")
    if ok.all() and (rate > bound).any():
        top.fill_between(x, rate, bound, where=rate > bound, interpolate=True, color="tab:green", alpha=0.15, lw=0,
                         label="the repeaters beat any direct link")
    if (rate > 0).any():  # a bound many decades under the chain would squash it: keep three decades below
        top.set_ylim(bottom=max(top.get_ylim()[0], float(rate[rate > 0].min()) / 1e3))
    top.set_ylabel("end-to-end pairs per second")
    top.grid(True, which="major", alpha=0.3)
    top.legend(fontsize=9)
    fidelity = np.array([_finite(p["fidelity_mean"]) for p in points])
    ci = np.nan_to_num(np.array([_finite(p["fidelity_ci95"]) for p in points]))
    bottom.errorbar(x, fidelity, yerr=ci, fmt="o-", color=_FIDELITY, lw=2, capsize=3,
                    label="mean fidelity at delivery (95 % CI)")
    shown = fidelity[np.isfinite(fidelity)]
    low, high = (float((shown - ci[np.isfinite(fidelity)]).min()), float(shown.max())) if len(shown) else (0.5, 1.0)
    pad = max(high - low, 0.01) * 0.25
    if low - pad <= 0.5:  # the threshold is in view: mark it
        bottom.axhline(0.5, color="tab:red", lw=1, ls="--", label="0.5: no entanglement below")
    bottom.set_ylim(max(0.0, low - pad), min(1.0 + pad / 5, high + pad))
    bottom.set_ylabel("fidelity")
    bottom.set_xlabel(_KNOB_LABELS.get(knob, knob))
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=9)
    if knob in ("nodes", "memories", "per-link", "purify"):
        bottom.set_xticks(x)
    top.set_title(f"Repeater chain: rate and fidelity against {knob}", fontsize=11, loc="left")
    fig.suptitle(_wrap(title), fontsize=9, color="0.3", x=0.01, ha="left")
    return _save(fig, plt, path)


_KNOB_LABELS = {"nodes": "routers in the chain (ends included)", "link-km": "elementary link length (km)",
                "memories": "memories per router", "per-link": "memories per link end",
                "coherence": "coherence time (s)",
                "cutoff": "cut-off (s)", "t1": "T1 (s)", "t2": "T2 (s)", "fidelity": "heralded pair fidelity",
                "purify": "purification rounds", "swap-success": "Bell-measurement success probability"}


def plot_network(report: Report, path: str | Path, *, title: str) -> Path:
    """Two histograms: delivered pairs per admitted request (how evenly the network served them) and the
    fidelity of every delivered pair, with the mean."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    pairs = np.array([f.pairs for f in report.flows])
    left.hist(pairs, bins=min(40, max(5, len(pairs) // 3)), color=_RATE, alpha=0.85, edgecolor="white")
    left.set_xlabel("end-to-end pairs delivered")
    left.set_ylabel("requests")
    refused = f", {len(report.refused)} refused" if report.refused else ""
    left.set_title(f"pairs per request ({len(pairs)} admitted{refused})", fontsize=11, loc="left")
    if len(pairs):
        left.axvline(float(pairs.mean()), color="black", lw=1.5, label=f"mean {pairs.mean():,.1f}")
        left.legend(fontsize=9)
    left.grid(True, alpha=0.3)
    left.yaxis.get_major_locator().set_params(integer=True)
    fidelities = np.array([d.fidelity for f in report.flows for d in f.deliveries])
    if len(fidelities):
        right.hist(fidelities, bins=50, color=_FIDELITY, alpha=0.85, edgecolor="white", lw=0.3)
        right.axvline(float(fidelities.mean()), color="black", lw=1.5, label=f"mean {fidelities.mean():.4f}")
    if not len(fidelities) or fidelities.min() < 0.6:  # the threshold is near the data: mark it
        right.axvline(0.5, color="tab:red", lw=1, ls="--", label="0.5: no entanglement below")
    right.set_xlabel("fidelity at delivery")
    right.set_ylabel("pairs")
    right.set_title(f"fidelity of each delivered pair ({len(fidelities):,})", fontsize=11, loc="left")
    right.yaxis.get_major_locator().set_params(integer=True)
    right.legend(fontsize=9, loc="upper left")
    right.grid(True, alpha=0.3)
    fig.suptitle(_wrap(title, 140), fontsize=9, color="0.3", x=0.01, ha="left")
    return _save(fig, plt, path)


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, loaded on the first plot (as :mod:`qnet.scenarios.plots`)."""
    import matplotlib  # noqa: PLC0415 - only a run asked for a plot pays for matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    out = Path(path)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        raise QNetError(f"cannot write the plot {str(out)!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out


def _wrap(text: str, width: int = 125) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _time_unit(duration_s: float) -> tuple[float, str]:
    """A scale and unit that put the run's span in readable numbers."""
    return (1.0, "s") if duration_s >= 1 else (1e3, "ms") if duration_s >= 1e-3 else (1e6, "µs")


def _hz(value: float) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix} pairs/s"
    return f"{value:.3g} pairs/s"


def _finite(value: Any) -> float:
    return math.nan if value is None else float(value)


def _floor(rate: np.ndarray, bound: np.ndarray) -> float:
    """Where a zero rate is drawn on the log axis: a decade under the smallest value shown."""
    shown = np.r_[rate[rate > 0], bound[np.isfinite(bound) & (bound > 0)]]
    return float(shown.min()) / 10 if len(shown) else 1.0
