"""Quantum-repeater scenarios for ``qnet repeater``: a chain's settings and its run, sweeps of one setting
on Dask, and a network of routers serving random requests.

:class:`RepeaterSettings` is one frozen, picklable value holding everything a run needs (the links, the
memories, the routers' policy, the duration and the seed), so a sweep point is that value with one field
replaced, sent to a Dask worker (:func:`~qnet.scenarios.sweep.map_on_dask`) and answered with a small
summary (no per-pair deliveries travel back). The physics and the simulation are
:mod:`qnet.quantum.entanglement`'s; this module only wires them.

Examples:
    >>> parse_chain_sweep("nodes=3,5,9")
    ('nodes', [3.0, 5.0, 9.0])
    >>> parse_chain_sweep("link-km=10:30:10")
    ('link-km', [10.0, 20.0, 30.0])
    >>> duration_s("250ms"), duration_s("20us"), duration_s("none", never=True)
    (0.25, 2e-05, inf)
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import networkx as nx
import numpy as np

from qnet.errors import InvalidRequestError
from qnet.quantum.entanglement.components import LinkModel, MemoryModel
from qnet.quantum.entanglement.report import Report
from qnet.quantum.entanglement.simulation import Policy, Purification, simulate
from qnet.quantum.entanglement.states import Decay
from qnet.quantum.entanglement.topology import Request, chain, grid, random_network
from qnet.scenarios.sweep import map_on_dask
from qnet.units import parse_duration_s

__all__ = [
    "MAX_SWEEP_POINTS",
    "SWEEP_KNOBS",
    "ChainRun",
    "NetworkRun",
    "RepeaterSettings",
    "build_network",
    "chain_point",
    "chain_summary",
    "duration_s",
    "parse_chain_sweep",
    "parse_topology",
    "random_requests",
    "run_chain_sweep",
    "settings_dict",
    "simulate_chain",
    "simulate_network",
    "sweep_settings",
]

_NEVER = ("none", "inf", "never")
_SMALL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ns)\s*$")


def duration_s(text: str, *, never: bool = False) -> float:
    """A duration in seconds: ``"1s"``, ``"250ms"``, ``"20us"``, ``"15min"``, or plain seconds (``"1e-4"``);
    with ``never``, ``"none"`` (or ``"inf"``) is an infinite one.

    Raises:
        ValueError: naming the text when it is not a positive, finite duration.
    """
    word = text.strip().lower()
    if never and word in _NEVER:
        return math.inf
    small = _SMALL.match(word)
    try:
        value = float(word) if not small else float(small[1]) / (1e9 if small[2] == "ns" else 1e6)
    except ValueError:
        value = parse_duration_s(word)  # raises ValueError naming the text
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"a duration must be finite and > 0, got {text!r}" + (" (or none)" if never else ""))
    return value


@dataclass(frozen=True, kw_only=True)
class RepeaterSettings:
    """Everything one repeater run needs; the defaults are ``qnet repeater chain``'s.

    Attributes:
        nodes: routers of the chain (its two ends included); unused by a network run.
        link_km: fibre length of every elementary link, router to router.
        duration_s: simulated time.
        memories: qubits each router stores, shared by its links and requests.
        per_link: memories a request asks for at each link end.
        fidelity: the heralded pair's fidelity (a Werner state); ``None`` takes it from the scheme.
        coherence_s: depolarising coherence time of a stored qubit (``inf``: none).
        t1_s: amplitude-damping time of a stored qubit (``inf``: none).
        t2_s: dephasing time of a stored qubit (``inf``: none).
        cutoff_s: a qubit stored longer than this is discarded (``inf``: never).
        frequency_hz: the memories' re-excitation rate; also the mode rate of the repeaterless bound.
        detector_efficiency: the heralding station's detectors.
        attenuation_db_per_km: the fibre's loss.
        dark_count_probability: per detector and attempt.
        scheme: heralding scheme, ``barrett_kok``, ``single_click`` or ``ideal``.
        bright_state: the single-click scheme's bright-state parameter.
        success_probability: per-attempt heralding probability, overriding the scheme's (``ideal`` needs it).
        attempt_s: duration of one attempt, overriding the scheme's (``ideal`` needs it).
        order: swapping order, ``nested`` or ``sequential``.
        swap_success: probability that a Bell-state measurement succeeds.
        swap_depolarising: depolarising noise a Bell-state measurement adds.
        purify_rounds: purification rounds (0: none).
        purify_protocol: ``dejmps`` or ``bbpssw``.
        purify_at: which pairs are purified: ``links``, ``end`` or ``all``.
        purify_scheme: ``recurrence`` or ``pumping``.
        formalism: pair states: ``bell_diagonal``, ``density_matrix`` or ``stabilizer``.
        seed: the run's random streams (the same seed gives the same run).
    """

    nodes: int = 9
    link_km: float = 20.0
    duration_s: float = 1.0
    memories: int = 10
    per_link: int = 5
    fidelity: float | None = None
    coherence_s: float = math.inf
    t1_s: float = math.inf
    t2_s: float = math.inf
    cutoff_s: float = math.inf
    frequency_hz: float = 2e6
    detector_efficiency: float = 0.9
    attenuation_db_per_km: float = 0.2
    dark_count_probability: float = 0.0
    scheme: str = "barrett_kok"
    bright_state: float = 0.1
    success_probability: float | None = None
    attempt_s: float | None = None
    order: str = "nested"
    swap_success: float = 1.0
    swap_depolarising: float = 0.0
    purify_rounds: int = 0
    purify_protocol: str = "dejmps"
    purify_at: str = "links"
    purify_scheme: str = "recurrence"
    formalism: str = "bell_diagonal"
    seed: int = 0

    def memory(self) -> MemoryModel:
        """Every router's memories."""
        return MemoryModel(count=self.memories, decay=Decay(self.t1_s, self.t2_s, self.coherence_s),
                           cutoff_s=self.cutoff_s, frequency_hz=self.frequency_hz)

    def link(self) -> LinkModel:
        """Every elementary link."""
        return LinkModel(self.link_km, attenuation_db_per_km=self.attenuation_db_per_km,
                         detector_efficiency=self.detector_efficiency,
                         dark_count_probability=self.dark_count_probability, scheme=self.scheme,
                         bright_state=self.bright_state, raw_fidelity=self.fidelity,
                         success_probability_override=self.success_probability, attempt_s_override=self.attempt_s)

    def policy(self) -> Policy:
        """What every router does with its pairs."""
        purification = None if self.purify_rounds == 0 else Purification(
            rounds=self.purify_rounds, protocol=self.purify_protocol, spans=self.purify_at,
            scheme=self.purify_scheme)
        return Policy(order=self.order, swap_success=self.swap_success, swap_depolarising=self.swap_depolarising,
                      purification=purification, formalism=self.formalism)

    def check(self, *, chain: bool = True) -> None:
        """Refuse settings the simulation cannot run, before anything starts.

        Raises:
            InvalidRequestError: naming what is wrong.
        """
        if chain and self.nodes < 2:
            raise InvalidRequestError(f"a chain needs >= 2 routers (its two ends), got {self.nodes}")
        if chain and self.nodes > 2 and self.memories < 2:
            raise InvalidRequestError(f"an interior router of a chain shares its memories between its two links: "
                                      f"give >= 2 memories, got {self.memories}")
        if self.formalism == "stabilizer" and self.purify_rounds and self.purify_protocol != "dejmps":
            raise InvalidRequestError("the stabilizer formalism purifies with dejmps only (BBPSSW's twirl is "
                                      "not one Clifford circuit)")
        try:
            memory, link = self.memory(), self.link()
            self.policy()
            p = link.success_probability(memory)
            link.initial_state(memory)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        if p <= 0:
            raise InvalidRequestError(f"the links never herald a pair (success probability 0 over {self.link_km:g} "
                                      "km)")

    def figures(self) -> dict[str, float]:
        """What the link layer works with: per-attempt success, attempt time, the heralded pair's fidelity,
        and the mean rate of heralded pairs per memory slot of one link."""
        memory, link = self.memory(), self.link()
        p, attempt = link.success_probability(memory), link.attempt_s(memory)
        return {"success_probability": p, "attempt_s": attempt, "raw_fidelity": float(link.initial_state(memory)[0]),
                "slot_rate_hz": p / attempt}

    def describe(self, *, omit: str = "") -> str:
        """One line of the settings that shape the result (a plot's title), without the field ``omit`` (a
        sweep's knob)."""
        parts: list[tuple[str, str]] = [("nodes", f"{self.nodes} routers" if self.nodes else ""),
                                        ("link_km", f"{self.link_km:g} km links"),
                                        ("per_link", f"{self.per_link} mem/link"), ("scheme", self.scheme)]
        if self.fidelity is not None:
            parts.append(("fidelity", f"F₀={self.fidelity:g}"))
        for field, name in (("t1_s", "T1"), ("t2_s", "T2"), ("coherence_s", "coherence"), ("cutoff_s", "cut-off")):
            if math.isfinite(getattr(self, field)):
                parts.append((field, f"{name} {_short_s(getattr(self, field))}"))
        parts.append(("order", self.order))
        if self.swap_success < 1:
            parts.append(("swap_success", f"BSM p={self.swap_success:g}"))
        if self.purify_rounds:
            parts.append(("purify_rounds", f"{self.purify_rounds}× {self.purify_protocol} at {self.purify_at}"))
        parts += [("formalism", self.formalism), ("duration_s", f"{_short_s(self.duration_s)} simulated"),
                  ("seed", f"seed {self.seed}")]
        return ", ".join(text for field, text in parts if text and field != omit)


def _short_s(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


# -- a chain ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainRun:
    """A chain's run: the simulation's report (one flow, end to end), its wall time and the link figures."""

    settings: RepeaterSettings
    report: Report
    wall_s: float
    figures: dict[str, float]


def simulate_chain(settings: RepeaterSettings, progress: Callable[[float], None] | None = None) -> ChainRun:
    """Run one request from the chain's first router to its last for ``settings.duration_s``.

    Args:
        progress: called with the simulated time, every 1 % of it.

    Raises:
        InvalidRequestError: if the settings cannot run (:meth:`RepeaterSettings.check`) or the request is
            refused.
    """
    settings.check()
    graph = chain(settings.nodes, link=settings.link(), memory=settings.memory())
    request = Request("r0", f"r{settings.nodes - 1}", memories=settings.per_link)
    started = time.perf_counter()
    report = simulate(graph, [request], settings.duration_s, settings.policy(), seed=settings.seed, progress=progress)
    wall = time.perf_counter() - started
    if not report.flows:
        raise InvalidRequestError(f"the request was refused: {report.refused[0][2]}")
    return ChainRun(settings, report, wall, settings.figures())


def chain_summary(run: ChainRun) -> dict[str, Any]:
    """The run as one flat record: the flow's figures, the run's counters, the wall time and the link figures."""
    counters = {k: v for k, v in run.report.to_dict().items() if k != "flows"}
    return {**counters, **run.report.flows[0].to_dict(), "wall_s": run.wall_s, "link": run.figures}


def chain_point(settings: RepeaterSettings) -> dict[str, Any]:
    """One point of a sweep (runs on a Dask worker): the chain's summary, without per-pair deliveries."""
    return chain_summary(simulate_chain(settings))


SWEEP_KNOBS: dict[str, tuple[str, str]] = {
    "nodes": ("nodes", "int"), "link-km": ("link_km", "float"), "memories": ("memories", "int"),
    "per-link": ("per_link", "int"), "fidelity": ("fidelity", "float"), "coherence": ("coherence_s", "s"),
    "t1": ("t1_s", "s"), "t2": ("t2_s", "s"), "cutoff": ("cutoff_s", "s"), "frequency": ("frequency_hz", "float"),
    "detector-efficiency": ("detector_efficiency", "float"), "attenuation": ("attenuation_db_per_km", "float"),
    "dark-count": ("dark_count_probability", "float"), "bright-state": ("bright_state", "float"),
    "success-probability": ("success_probability", "float"), "attempt-time": ("attempt_s", "s"),
    "swap-success": ("swap_success", "float"), "swap-noise": ("swap_depolarising", "float"),
    "purify": ("purify_rounds", "int"), "duration": ("duration_s", "s"), "seed": ("seed", "int"),
}
"""What ``--sweep NAME=...`` can vary: the option's name -> (the settings' field, int / float / s)."""

MAX_SWEEP_POINTS = 1000


def parse_chain_sweep(text: str) -> tuple[str, list[float]]:
    """``NAME=V1,V2,...`` or ``NAME=START:STOP:STEP`` (STOP included) -> (name, values).

    Durations may carry units in a list (``coherence=100ms,1s``); a range is in seconds.

    Raises:
        InvalidRequestError: naming what is wrong.
    """
    name, sep, values = text.partition("=")
    name = name.strip().replace("_", "-")
    if not sep or name not in SWEEP_KNOBS:
        raise InvalidRequestError(f"--sweep takes NAME=V1,V2,... or NAME=START:STOP:STEP with NAME one of "
                                  f"{', '.join(SWEEP_KNOBS)}; got {text!r}")
    kind = SWEEP_KNOBS[name][1]
    try:
        points = _range(values) if ":" in values else [_value(v, kind) for v in values.split(",") if v.strip()]
    except ValueError as exc:
        raise InvalidRequestError(f"--sweep {name}: {exc}") from None
    if not points:
        raise InvalidRequestError(f"--sweep {name}: no value given")
    if len(points) > MAX_SWEEP_POINTS:
        raise InvalidRequestError(f"--sweep {name}: {len(points)} points is too many (at most {MAX_SWEEP_POINTS})")
    if kind == "int" and any(v != round(v) for v in points):
        raise InvalidRequestError(f"--sweep {name}: the values must be whole numbers, got {values!r}")
    return name, points


def _value(text: str, kind: str) -> float:
    if kind == "s":
        return duration_s(text, never=True)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the values must be finite numbers, got {text.strip()!r}")
    return value


def _range(text: str) -> list[float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"a range is START:STOP:STEP, got {text!r}")
    start, stop, step = (float(p) for p in parts)
    if not (math.isfinite(start) and math.isfinite(stop) and step > 0 and stop >= start):
        raise ValueError(f"a range needs finite START <= STOP and STEP > 0, got {text!r}")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_SWEEP_POINTS:
        raise ValueError(f"{count} points is too many (at most {MAX_SWEEP_POINTS})")
    return [round(start + i * step, 9) for i in range(count)]


def sweep_settings(settings: RepeaterSettings, knob: str, value: float) -> RepeaterSettings:
    """``settings`` with the knob's field set to ``value``, checked.

    Raises:
        InvalidRequestError: naming the knob and value when the run could not start.
    """
    field, kind = SWEEP_KNOBS[knob]
    changes: dict[str, Any] = {field: round(value) if kind == "int" else value}
    point = replace(settings, **changes)
    try:
        point.check()
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"--sweep {knob}={value:g}: {exc}") from None
    return point


def run_chain_sweep(settings: RepeaterSettings, knob: str, values: Sequence[float], *, scheduler: str | None = None,
                    workers: int | None = None, progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """One chain per value of ``knob`` on Dask; their summaries, each with ``{knob: value}``, in order.

    Args:
        scheduler: a Dask scheduler address, ``"inline"`` (this process) or ``None`` (a local cluster).
        workers: local worker processes (the machine's cores if None).
        progress: called with the number of points finished so far.

    Raises:
        InvalidRequestError: if a point's settings cannot run (checked before any starts).
        QNetError: if the scheduler cannot be reached.
    """
    points = [sweep_settings(settings, knob, v) for v in values]
    done = map_on_dask(chain_point, [(p,) for p in points], scheduler=scheduler, workers=workers, progress=progress)
    return [{knob: v, **summary} for v, summary in zip(values, done, strict=True)]


# -- a network of routers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkRun:
    """A network's run: its size, the report (one flow per admitted request), wall time and peak memory."""

    topology: str
    routers: int
    links: int
    requests: int
    report: Report
    wall_s: float
    build_s: float
    peak_rss_bytes: int | None

    def totals(self) -> dict[str, Any]:
        """The run's headline numbers (and the counters of the report)."""
        flows = self.report.flows
        pairs = self.report.pairs
        fidelity = sum(f.fidelity_mean * f.pairs for f in flows if f.pairs) / pairs if pairs else math.nan
        served = [f for f in flows if f.pairs]
        counters = {k: v for k, v in self.report.to_dict().items() if k not in ("flows", "refused")}
        return {"topology": self.topology, "routers": self.routers, "links": self.links, "requests": self.requests,
                "admitted": len(flows), "refused_count": len(self.report.refused), "served": len(served),
                **counters, "rate_hz": pairs / self.report.duration_s, "fidelity_mean": fidelity,
                "wall_s": self.wall_s, "build_s": self.build_s, "peak_rss_bytes": self.peak_rss_bytes}


_TOPOLOGY = re.compile(r"^(?:(grid):(\d+)x(\d+)|(random):(\d+)|(chain):(\d+))$")


def parse_topology(text: str) -> tuple[str, tuple[int, ...]]:
    """``grid:ROWSxCOLS``, ``random:N`` or ``chain:N`` -> (kind, sizes).

    Examples:
        >>> parse_topology("grid:32x32"), parse_topology("random:1000")
        (('grid', (32, 32)), ('random', (1000,)))

    Raises:
        InvalidRequestError: naming what is wrong.
    """
    match = _TOPOLOGY.match(text.strip().lower())
    if match is None:
        raise InvalidRequestError(f"a topology is grid:ROWSxCOLS, random:N or chain:N; got {text!r}")
    groups = [g for g in match.groups() if g is not None]
    sizes = tuple(int(g) for g in groups[1:])
    routers = math.prod(sizes)
    if routers < 2 or min(sizes) < 1:
        raise InvalidRequestError(f"a network needs >= 2 routers, got {text!r}")
    if routers > 1_000_000:
        raise InvalidRequestError(f"{routers} routers is too many (at most 1,000,000), got {text!r}")
    return groups[0], sizes


def build_network(topology: str, settings: RepeaterSettings, *, degree: float = 3.0) -> nx.Graph:
    """The network of ``topology`` (:func:`parse_topology`), every router and link as ``settings`` says."""
    kind, sizes = parse_topology(topology)
    link, memory = settings.link(), settings.memory()
    if kind == "grid":
        return grid(sizes[0], sizes[1], link=link, memory=memory)
    if kind == "chain":
        return chain(sizes[0], link=link, memory=memory)
    return random_network(sizes[0], degree=degree, link=link, memory=memory, seed=settings.seed)


def random_requests(graph: nx.Graph, count: int, *, memories: int, seed: int = 0) -> list[Request]:
    """``count`` requests between distinct routers drawn uniformly (seeded), all from time 0 to the end."""
    rng = np.random.default_rng([seed, 0x5EED])
    names = sorted(graph.nodes)
    out = []
    for _ in range(count):
        a, b = rng.choice(len(names), size=2, replace=False)
        out.append(Request(names[int(a)], names[int(b)], memories=memories))
    return out


def simulate_network(settings: RepeaterSettings, topology: str, requests: int, *, degree: float = 3.0,
                     progress: Callable[[float], None] | None = None) -> NetworkRun:
    """Build the network, draw ``requests`` random requests (``settings.per_link`` memories per link end each),
    reserve their routes first come first served and run them together for ``settings.duration_s``.

    Raises:
        InvalidRequestError: if the settings or the topology cannot run.
    """
    settings.check(chain=False)
    if not degree >= 1:
        raise InvalidRequestError(f"a random network's mean degree must be >= 1, got {degree!r}")
    started = time.perf_counter()
    graph = build_network(topology, settings, degree=degree)
    wanted = random_requests(graph, requests, memories=settings.per_link, seed=settings.seed)
    built = time.perf_counter()
    report = simulate(graph, wanted, settings.duration_s, settings.policy(), seed=settings.seed, progress=progress)
    wall = time.perf_counter() - built
    return NetworkRun(topology, graph.number_of_nodes(), graph.number_of_edges(), requests, report, wall,
                      built - started, _peak_rss_bytes())


def _peak_rss_bytes() -> int | None:
    """This process's peak resident memory (``getrusage``; ``None`` where there is no such call)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def settings_dict(settings: RepeaterSettings) -> dict[str, Any]:
    """The settings as JSON-ready values (infinite times are ``inf``; the CLI writes them as null)."""
    return asdict(settings)
