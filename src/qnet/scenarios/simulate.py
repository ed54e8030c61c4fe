"""``qnet simulate``: a QKD network's life on the discrete-event kernel, with the live network's brain.

The decisions are the ones the live network makes (DESIGN.md: one brain, two bodies): the same
:class:`~qnet.control.controller.Controller` admits each demand as a session (access control,
policy, priority), takes the links' reports, raises alarms, and re-routes sessions when a link is
cut, its QBER alarm trips or its pool runs low; key is relayed along the sessions' routes and every
hop's pool pays for it, as the key managers' relay does.

The body is a fluid model stepped once per control period on the kernel (:mod:`qnet.sim.kernel`):

- each link makes key at the mean rate its photon-level link makes live
  (:func:`qnet.quantum.link.expected_rate_bps` for the block length ``qnet up`` gives it), half into
  each end's pool, capped as the live feeds are; what a full pool cannot take is discarded (and
  counted: made = stored + discarded, stored = used + left); after each period an end with far more
  than the other hands units over, as the key managers do (:func:`hand_over`), so a demand that
  only ever sends one way gets the whole link;
- each demand asks for ``key_rate_bps x period`` bits per period along its session's route; where a
  hop's pool cannot cover all the demands crossing it, each gets the same share of what is there
  (higher priorities first, then demands the controller did not admit, served best effort as KMEs
  serve enc_keys without a session); what is not supplied is blocked (dropped, as an SAE turned away with 503
  does), and the blocking probability is the blocked share of what was asked;
- the spec's fault schedule cuts and restores links, stops nodes, and puts eavesdroppers on links
  (QBER about 25 %: the link makes no key and its QBER alarm trips).

**What is random** (``stochastic=True``, the default; the seed picks the numbers): key comes in
units of :data:`UNIT_BITS`, and the number of units each end of a link gets in a period is
Poisson-distributed about its mean (photon counts, and so the key distilled from them, are Poisson),
drawn from the link's own stream ``kernel.rng("link/NAME")``; a demand's SAEs ask for whole keys
of :data:`UNIT_BITS` as a Poisson process about the demand's rate, from ``kernel.rng("demand/NAME")``.
Each stream belongs to one link or demand, so adding one never changes another's numbers; the same
seed gives the same run bit for bit, another seed another run with the same means. What is not
random: the mean rates (the planner's finite-key figures), the fault schedule, the controller's
decisions given the pools. ``stochastic=False`` runs the mean-field model (every seed alike).

Arrays are numpy, indexed by link and by demand; a period costs a few vector operations, and the
controller is called only when a link's state changes, so 24 h of a 50-node network take seconds.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from qnet.control.controller import Controller, LinkReport, Session
from qnet.control.events import ControlEvent
from qnet.control.routing import RoutePolicy, Topology
from qnet.errors import NoRouteError, QNetError, UnavailableError
from qnet.keys.manager import CEDE_MAX_UNITS, CEDE_MIN_UNITS
from qnet.quantum.link import CASCADE_EFFICIENCY, expected_block, feed_block_pulses, plan_feeds
from qnet.scenarios.deploy import feed_geometry, feed_params
from qnet.scenarios.spec import FaultAction, NetworkSpec
from qnet.sim.kernel import Kernel

__all__ = ["Demand", "DemandResult", "FaultRecord", "LinkResult", "SimResult", "admit_demands", "link_qbers",
           "link_rates", "plan_run", "simulate"]

UNIT_BITS = 256
"""The key store's unit: the grain of the random key supply and of the SAEs' requests."""
POOL_CAP_BITS = 100_000 * UNIT_BITS
"""What a link's pools hold at most (the live feeds' ``max_units``), half in each direction."""
LOW_WATER_UNITS = 1000
ADMIT_RETRY_S = 300.0
"""How often demands without a session ask the controller again (besides when a link changes)."""
EVE_QBER = 0.25


@dataclass(frozen=True)
class LinkResult:
    """One link over the run: ``made = stored + discarded`` and ``stored = consumed + final_pool``."""

    name: str
    ends: tuple[str, str]
    rate_bps: float
    """The mean secret key rate while it works."""
    made_bits: float
    """Key the link made while it worked (not capped by its pools)."""
    stored_bits: float
    """Key that went into its pools."""
    consumed_bits: float
    """Key spent from its pools on demands: delivered at its ends or relayed across it."""
    discarded_bits: float
    """Key made while the receiving pool was full, dropped."""
    final_pool_bits: float
    """Key left in its pools at the end."""
    utilisation: float = 0.0
    """The share of the link's key that demands used (both directions: the ends hand unused units
    over, so a link carrying a one-way demand can be full)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"link": self.name, "ends": list(self.ends), "rate_bps": self.rate_bps, "made_bits": self.made_bits,
                "stored_bits": self.stored_bits, "consumed_bits": self.consumed_bits,
                "discarded_bits": self.discarded_bits, "final_pool_bits": self.final_pool_bits,
                "utilisation": self.utilisation}


@dataclass(frozen=True)
class FaultRecord:
    """One fault of the schedule as it was applied."""

    time_s: float
    action: FaultAction
    target: str
    """The link or node."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"time_s": self.time_s, "action": self.action.value, "target": self.target}


@dataclass(frozen=True)
class DemandResult:
    """One demand over the run."""

    name: str
    saes: tuple[str, str]
    key_rate_bps: float
    priority: int
    requested_bits: float
    delivered_bits: float
    route: list[str]
    reroutes: int
    refused: str | None
    """Why the controller did not admit its session, if it did not (it is then served best effort
    on the router's route, after every admitted demand, unless access control refused it)."""

    @property
    def blocking_probability(self) -> float:
        """The share of the key asked for that was not supplied."""
        return 1.0 - self.delivered_bits / self.requested_bits if self.requested_bits else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"demand": self.name, "saes": list(self.saes), "key_rate_bps": self.key_rate_bps,
                "priority": self.priority, "requested_bits": self.requested_bits,
                "delivered_bits": self.delivered_bits, "blocking_probability": self.blocking_probability,
                "route": self.route, "reroutes": self.reroutes, "refused": self.refused}


@dataclass
class SimResult:
    """What ``qnet simulate`` measured."""

    network: str
    duration_s: float
    control_period_s: float
    links: list[LinkResult]
    demands: list[DemandResult]
    times_s: np.ndarray
    pools_bits: np.ndarray
    """links x samples: each pool at each sample time."""
    delivered_bits: np.ndarray
    """demands x samples: key delivered to each demand up to each sample time."""
    events: list[ControlEvent]
    faults: list[FaultRecord]
    seed: int = 0
    stochastic: bool = True
    wall_s: float = 0.0
    """Wall time of the simulation itself."""
    planning_s: float = 0.0
    """Wall time spent working out the links' rates (the planner's link physics) before it."""
    body: str = "fluid"
    """Which body ran it: ``fluid`` (this module) or ``key-managers`` (:mod:`qnet.scenarios.kmsim`)."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    """Every relay attempt of every node (the key-manager body only)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every enc_keys call and its outcome (the key-manager body only)."""

    @property
    def route_changes(self) -> list[ControlEvent]:
        """The controller's route changes."""
        return [e for e in self.events if e.kind == "route-change"]

    def delivered_rate_bps(self) -> np.ndarray:
        """demands x samples: the rate key was delivered to each demand between each sample and the
        one before (the first column is 0)."""
        rates = np.zeros_like(self.delivered_bits)
        if self.delivered_bits.shape[-1] > 1:
            rates[:, 1:] = np.diff(self.delivered_bits, axis=1) / np.diff(self.times_s)
        return rates

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no time series)."""
        total = {f"{k}_bits": float(sum(getattr(lk, f"{k}_bits") for lk in self.links))
                 for k in ("made", "stored", "discarded")}
        return {"network": self.network, "duration_s": self.duration_s, "control_period_s": self.control_period_s,
                "seed": self.seed, "stochastic": self.stochastic, "body": self.body, "wall_s": self.wall_s,
                "planning_s": self.planning_s, "links": [lk.as_dict() for lk in self.links],
                "demands": [d.as_dict() for d in self.demands], **total,
                "delivered_bits": float(sum(d.delivered_bits for d in self.demands)),
                "route_changes": len(self.route_changes), "events": [e.as_dict() for e in self.events],
                "faults": [f.as_dict() for f in self.faults],
                **({"decisions": self.decisions, "requests": self.requests} if self.body == "key-managers" else {})}


def link_rates(spec: NetworkSpec) -> dict[str, float]:
    """Each link's mean secret key rate (bit/s) as ``qnet up`` runs it (its block length included)."""
    return {name: rate for name, (rate, _) in _link_physics(spec).items()}


def link_qbers(spec: NetworkSpec) -> dict[str, float]:
    """Each link's mean QBER as ``qnet up`` runs it (what its ends report to the controller)."""
    return {name: qber for name, (_, qber) in _link_physics(spec).items()}


def _link_physics(spec: NetworkSpec) -> dict[str, tuple[float, float]]:
    plan_feeds((*feed_geometry(spec, link), feed_params(link)) for link in spec.links)  # one batch, then cached
    physics = {}
    for link in spec.links:
        length, attenuation = feed_geometry(spec, link)
        device = feed_params(link)
        physics[link.label] = expected_block(length, attenuation, feed_block_pulses(length, attenuation, device=device),
                                             CASCADE_EFFICIENCY, device)
    return physics


def simulate(spec: NetworkSpec, duration_s: float, *, control_period_s: float = 1.0,
             rates: Mapping[str, float] | None = None, qbers: Mapping[str, float] | None = None,
             samples: int = 600, seed: int = 0, stochastic: bool = True,
             progress: Callable[[float], None] | None = None) -> SimResult:
    """Run ``spec`` for ``duration_s`` simulated seconds.

    Args:
        spec: a checked spec (its demands are the load, its faults the schedule).
        duration_s: simulated time.
        control_period_s: the step of the fluid model and the controller's period.
        rates: link name -> secret key rate (bit/s); :func:`link_rates` if left out (its wall time
            is then the result's ``planning_s``).
        qbers: link name -> QBER its ends report; :func:`link_qbers` if rates are left out too, else 0.
        samples: how many points the time series keep.
        seed: the seed of every random stream (one per link, one per demand). The same seed and
            inputs give the same result; the seed changes nothing if ``stochastic`` is False.
        stochastic: Poisson key supply and requests about the mean rates (see the module's
            docstring); False runs the mean-field model.
        progress: called with the simulated time now and then (for progress bars).

    Raises:
        ValueError: for a duration or period that is not positive.
    """
    rates, qbers, planning_s = plan_run(spec, duration_s, control_period_s, rates, qbers)
    planned = time.perf_counter()
    kernel = Kernel(seed)
    periods = math.floor(duration_s / control_period_s + 1e-9)
    run = _Run(spec, rates, qbers, control_period_s,
               kernel if stochastic else None, periods)
    for fault in spec.faults:
        target = fault.link or fault.node or ""
        kernel.at_s(fault.at_s(), partial(run.fault, fault.action, target, kernel))
        end = fault.until_s()
        if end is not None:
            kernel.at_s(end, partial(run.fault, _OPPOSITE[fault.action], target, kernel))
    sample_every = max(duration_s / samples, control_period_s)
    kernel.process(run.ticker(kernel, duration_s))
    kernel.process(run.sampler(kernel, sample_every, progress))
    kernel.run_until_s(duration_s + 1e-9)
    result = run.result(spec.name, duration_s)
    result.seed, result.stochastic = seed, stochastic
    result.wall_s, result.planning_s = time.perf_counter() - planned, planning_s
    return result


def plan_run(spec: NetworkSpec, duration_s: float, control_period_s: float, rates: Mapping[str, float] | None,
             qbers: Mapping[str, float] | None) -> tuple[dict[str, float], dict[str, float], float]:
    """Check a run's times and get its links' rates and QBERs (:func:`link_rates` and
    :func:`link_qbers` if ``rates`` is None): (rates, qbers, wall seconds spent planning).

    Raises:
        ValueError: for a duration or period that is not positive.
    """
    if not (duration_s > 0 and control_period_s > 0):
        raise ValueError("duration and control period must be > 0")
    started = time.perf_counter()
    if rates is None:
        rates, qbers = link_rates(spec), link_qbers(spec)
    return dict(rates), dict(qbers or {}), time.perf_counter() - started


class _Counts:
    """Poisson counts per period, one named stream per row of ``means`` (a link's two ends, or a
    demand), drawn a chunk of periods at a time so that a period costs one row lookup."""

    MAX_BUFFER = 1 << 21
    """Numbers held at once (16 MiB)."""

    def __init__(self, rngs: list[np.random.Generator], means: np.ndarray, periods: int) -> None:
        self.rngs, self.means = rngs, means.reshape(len(rngs), -1)
        width = max(self.means.size, 1)
        self.chunk = max(1, min(periods, self.MAX_BUFFER // width, 4096))
        self._buffer = np.zeros((0, self.means.size))
        self._next = 0

    def draw(self) -> np.ndarray:
        """The counts of the next period, flat (row-major over ``means``)."""
        if self._next == len(self._buffer):
            k = self.means.shape[1]
            self._buffer = np.empty((self.chunk, self.means.size))
            for i, rng in enumerate(self.rngs):
                self._buffer[:, i * k:(i + 1) * k] = rng.poisson(self.means[i], size=(self.chunk, k))
            self._next = 0
        self._next += 1
        row: np.ndarray = self._buffer[self._next - 1]
        return row


_OPPOSITE = {FaultAction.CUT: FaultAction.RESTORE, FaultAction.RESTORE: FaultAction.CUT,
             FaultAction.NODE_DOWN: FaultAction.NODE_UP, FaultAction.NODE_UP: FaultAction.NODE_DOWN,
             FaultAction.EAVESDROP: FaultAction.EAVESDROP_END, FaultAction.EAVESDROP_END: FaultAction.EAVESDROP}


@dataclass
class Demand:
    """A demand of the spec as the simulation serves it: its session (if admitted), or the route it
    is served on best effort."""

    name: str
    saes: tuple[str, str]
    rate_bps: float
    priority: int
    session: Session | None = None
    refused: str | None = None
    best_effort: list[str] | None = None
    """The route it is served on without a session, if the controller did not admit it."""

    @property
    def route(self) -> list[str]:
        """The route its key takes now (empty: none)."""
        return list(self.session.route) if self.session else list(self.best_effort or [])


def admit_demands(ctl: Controller, demands: list[Demand], now_s: float) -> None:
    """Open a session for each demand that has none; one the controller does not admit for lack
    of rate is served best effort on the router's route, after every admitted one (its SAEs still
    call enc_keys, which KMEs serve without a session). Both simulation bodies admit this way."""
    for d in demands:
        if d.session is not None and d.session.key_stream_id not in ctl.sessions:
            d.session, d.refused = None, "pre-empted by a higher-priority demand"
        if d.session is None:
            try:
                d.session = ctl.open_session(*d.saes, now_s, key_rate_bps=d.rate_bps, priority=d.priority,
                                             key_stream_id=d.name)
                d.refused, d.best_effort = None, None
            except QNetError as exc:  # refused: not now (no route, no capacity), or never (access control)
                d.refused = exc.message
                d.best_effort = _best_effort_route(ctl, d, now_s) if isinstance(exc, UnavailableError) else None


def _best_effort_route(ctl: Controller, d: Demand, now_s: float) -> list[str] | None:
    try:
        return ctl.route(ctl.saes[d.saes[0]], ctl.saes[d.saes[1]], now_s)
    except NoRouteError:
        return None


def hand_over(pool: np.ndarray) -> np.ndarray:
    """The key managers' hand-over of unused units, on every link at once: ``pool`` holds the two
    ends' pools of each link (index 2 l + d, in bits); an end holding more than twice the other's
    hands over half the difference, the rule of :func:`qnet.keys.manager.cede_count` (in units of
    :data:`UNIT_BITS`, at most ``CEDE_MAX_UNITS`` a time), so a one-way demand gets the whole link.

    Examples:
        >>> hand_over(np.array([0.0, 256_000.0, 128_000.0, 128_000.0])).tolist()
        [128000.0, 128000.0, 128000.0, 128000.0]
    """
    units = (pool / UNIT_BITS).reshape(-1, 2)
    mine, theirs = units, units[:, ::-1]
    count = np.where(mine >= 2 * theirs + CEDE_MIN_UNITS, np.minimum((mine - theirs) // 2, CEDE_MAX_UNITS), 0.0)
    moved: np.ndarray = (units - count + count[:, ::-1]).reshape(-1) * UNIT_BITS
    return moved


class _Run:
    """The state of one simulation: pools, link states, sessions and their routes."""

    def __init__(self, spec: NetworkSpec, rates: dict[str, float], qbers: dict[str, float], period_s: float,
                 kernel: Kernel | None = None, periods: int = 0) -> None:
        self.names = [lk.label for lk in spec.links]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.ends = [(lk.endpoints[0], lk.endpoints[1]) for lk in spec.links]
        self.rate = np.array([float(rates.get(n, 0.0)) for n in self.names])
        self.qber = np.array([float(qbers.get(n, 0.0)) for n in self.names])
        # two pools per link (index 2 l + d): the units each end owns and spends on keys it sends,
        # half the link's key each (the key store splits units between the ends by key_ID)
        self.pool = np.zeros(2 * len(self.names))
        self.made, self.stored, self.discarded, self.consumed = (np.zeros(2 * len(self.names)) for _ in range(4))
        self.cut = np.zeros(len(self.names), dtype=bool)
        self.eve = np.zeros(len(self.names), dtype=bool)
        self.node_down: set[str] = set()
        self.period_s = period_s
        pol = spec.policies
        topology = Topology(tuple(n.name for n in spec.nodes),
                            tuple((a, b, name) for (a, b), name in zip(self.ends, self.names, strict=True)))
        self.ctl = Controller(topology, RoutePolicy(pol.max_hops, frozenset(pol.excluded_nodes), pol.min_key_rate_bps),
                              saes={a.sae_id: a.node for a in spec.applications},
                              access={a.sae_id: a.peers for a in spec.applications if a.peers is not None},
                              capacity_bps=dict(zip(self.names, self.rate.tolist(), strict=True)),
                              control_period_s=period_s, qber_threshold=pol.qber_alarm_threshold,
                              low_water_units=LOW_WATER_UNITS, silence_s=math.inf)
        self.demands = [Demand(d.label, (d.between[0], d.between[1]), d.key_rate_bps, d.priority)
                        for d in sorted(spec.demands, key=lambda d: -d.priority)]
        self.order = [spec.demands.index(d) for d in sorted(spec.demands, key=lambda d: -d.priority)]
        self.requested, self.delivered = np.zeros(len(self.demands)), np.zeros(len(self.demands))
        self.faults: list[FaultRecord] = []
        self.reported: np.ndarray | None = None
        self.times: list[float] = []
        self.pool_samples: list[np.ndarray] = []
        self.delivered_samples: list[np.ndarray] = []
        self._classes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._want = np.array([d.rate_bps for d in self.demands])
        self._admitted_s = 0.0
        self._made = np.zeros(2 * len(self.names))
        self._usable = np.ones(2 * len(self.names))
        self._key_units: _Counts | None = None
        self._asked_units: _Counts | None = None
        if kernel is not None:  # each end gets half the link's units; each demand asks for whole units
            self._key_units = _Counts([kernel.rng(f"link/{n}") for n in self.names],
                                      np.repeat(self.rate * period_s / 2 / UNIT_BITS, 2), periods)
            self._asked_units = _Counts([kernel.rng(f"demand/{d.name}") for d in self.demands],
                                        self._want * period_s / UNIT_BITS, periods)

    # -- the processes -------------------------------------------------------------------------------

    def ticker(self, kernel: Kernel, until_s: float) -> Any:
        self.control(0.0, force=True)
        while kernel.now_s + self.period_s <= until_s + 1e-9:
            yield kernel.timeout_s(self.period_s)
            self.step(self.period_s)
            self.control(kernel.now_s)

    def sampler(self, kernel: Kernel, every_s: float, progress: Callable[[float], None] | None) -> Any:
        while True:
            self.times.append(kernel.now_s)
            self.pool_samples.append(self.pool.reshape(-1, 2).sum(axis=1))
            self.delivered_samples.append(self.delivered.copy())
            if progress:
                progress(kernel.now_s)
            yield kernel.timeout_s(every_s)

    # -- the fluid step --------------------------------------------------------------------------------

    def producing(self) -> np.ndarray:
        """Which links make key now: not cut, no eavesdropper, both ends up."""
        working: np.ndarray = ~(self.cut | self.eve | self._ends_down())
        return working

    def _ends_down(self) -> np.ndarray:
        return np.array([a in self.node_down or b in self.node_down for a, b in self.ends], dtype=bool)

    def step(self, dt: float) -> None:
        """One period: the links make key into their pools (a full pool discards it), then the
        demands are served, higher priorities first."""
        if self._key_units is not None and self._asked_units is not None:
            made = self._key_units.draw() * UNIT_BITS * (self._made > 0)
            want = self._asked_units.draw() * UNIT_BITS
        else:
            made, want = self._made * dt, self._want * dt
        stored = np.minimum(made, np.maximum(POOL_CAP_BITS / 2 - self.pool, 0.0))
        self.made += made
        self.stored += stored
        self.discarded += made - stored
        self.pool += stored
        self.requested += want
        for cand, owner, members in self._classes:  # higher priority first; each class shares what is left
            self._serve(cand, owner, members, want)
        self.pool = hand_over(self.pool)


    def _serve(self, cand: np.ndarray, owner: np.ndarray, members: np.ndarray, want: np.ndarray) -> None:
        """Serve one priority class. ``cand`` holds, per (demand, hop), the sender's pools of the
        hop's parallel links (padded with a dummy); each takes from the fullest usable one now, as a
        KME takes each key from the link with the most stock."""
        if cand.size == 0:
            return
        score = np.append(self.pool * self._usable, -1.0)[cand]
        flat = cand[np.arange(len(cand)), score.argmax(axis=1)]
        asked = want[owner]
        need = np.bincount(flat, weights=asked, minlength=len(self.pool))
        avail = self.pool * self._usable
        short = need > avail
        got = members.astype(float)
        if short.any():  # some hop cannot cover every demand crossing it: each gets the same share
            share = np.ones(len(self.pool))
            share[short] = avail[short] / need[short]
            np.minimum.at(got, owner, share[flat])
        spend = np.bincount(flat, weights=asked * got[owner], minlength=len(self.pool))
        self.pool = np.maximum(self.pool - spend, 0.0)
        self.consumed += spend
        self.delivered += want * got

    # -- control -----------------------------------------------------------------------------------------

    def control(self, now_s: float, *, force: bool = False) -> None:
        """Report the links whose state changed; re-route and admit sessions if anything did."""
        producing = self.producing()
        stock = self.pool.reshape(-1, 2).min(axis=1)  # each end reports what it may send
        low = stock < LOW_WATER_UNITS * UNIT_BITS
        state = np.stack([producing, low, stock < 2 * LOW_WATER_UNITS * UNIT_BITS, self.eve])
        diff = np.ones_like(state) if force or self.reported is None else state != self.reported
        changed = np.flatnonzero(diff.any(axis=0))
        retry = bool(self.waiting) and now_s - self._admitted_s >= ADMIT_RETRY_S
        if changed.size == 0 and not retry:
            return
        self.reported = state
        for i in changed:  # from every end that is up (a stale "down" from one end would keep it down)
            a, b = self.ends[i]
            up = bool(a not in self.node_down and b not in self.node_down)
            report = LinkReport(self.names[i], int(stock[i] // UNIT_BITS), float(self.rate[i] * producing[i]),
                                EVE_QBER if self.eve[i] else float(self.qber[i]), up)
            for node in [n for n in (a, b) if n not in self.node_down] or [b]:
                self.ctl.report(node, [report], now_s)
        moved = self.ctl.reroute(now_s)
        hard = bool(diff[[0, 3]].any())  # a link stopped, started or got an eavesdropper
        if hard or retry:
            self._admit(now_s)
        if hard or retry or moved:
            self._rebuild()

    def fault(self, action: FaultAction, target: str, kernel: Kernel) -> None:
        """Apply one fault of the schedule now."""
        now_s = kernel.now_s
        self.faults.append(FaultRecord(now_s, action, target))
        if action in (FaultAction.CUT, FaultAction.RESTORE):
            self.cut[self.index[target]] = action is FaultAction.CUT
            (self.ctl.cut if action is FaultAction.CUT else self.ctl.restore)(target, now_s)
        elif action in (FaultAction.EAVESDROP, FaultAction.EAVESDROP_END):
            self.eve[self.index[target]] = action is FaultAction.EAVESDROP
        elif action is FaultAction.NODE_DOWN:
            self.node_down.add(target)
        else:
            self.node_down.discard(target)
        self.control(now_s, force=True)

    @property
    def waiting(self) -> bool:
        """Whether some demand has no session (admission is tried again now and then)."""
        return any(d.session is None for d in self.demands)

    def _admit(self, now_s: float) -> None:
        self._admitted_s = now_s
        admit_demands(self.ctl, self.demands, now_s)

    def _rebuild(self) -> None:
        """The flat (link, demand) incidence of the sessions' routes: on each hop, the producing link
        with the most key."""
        cands, owner = [], []
        for j, d in enumerate(self.demands):
            route = d.route
            if not route or self.node_down & set(route):
                continue
            for a, b in itertools.pairwise(route):
                cands.append([2 * self.index[x] + (self.ends[self.index[x]][0] != a)
                              for x in self.ctl.topology.links_between(a, b)])  # the sender's units
                owner.append(j)
        width = max((len(c) for c in cands), default=1)
        dummy = len(self.pool)
        flat_a = np.array([c + [dummy] * (width - len(c)) for c in cands], dtype=np.intp).reshape(-1, width)
        owner_a = np.array(owner, dtype=np.intp)
        prio = np.array([d.priority if d.session else -1 for d in self.demands])  # best effort: last
        self._classes = []
        for p in sorted(set(prio.tolist()), reverse=True):
            members = prio == p
            in_class = members[owner_a] if owner_a.size else np.zeros(0, dtype=bool)
            self._classes.append((flat_a[in_class], owner_a[in_class], members))
        self._made = np.repeat(np.where(self.producing(), self.rate / 2, 0.0), 2)
        self._usable = np.repeat(~self.cut & ~self._ends_down(), 2).astype(float)

    def result(self, name: str, duration_s: float) -> SimResult:
        made, stored, used, dropped, left = (x.reshape(-1, 2).sum(axis=1) for x in
                                             (self.made, self.stored, self.consumed, self.discarded, self.pool))
        busiest = np.divide(used, made, out=np.zeros_like(made), where=made > 0)
        links = [LinkResult(n, self.ends[i], float(self.rate[i]), float(made[i]), float(stored[i]), float(used[i]),
                            float(dropped[i]), float(left[i]), float(busiest[i]))
                 for i, n in enumerate(self.names)]
        by_spec = sorted(range(len(self.demands)), key=lambda j: self.order[j])
        demands = [DemandResult(d.name, d.saes, d.rate_bps, d.priority, float(self.requested[j]),
                                float(self.delivered[j]), d.route,
                                d.session.reroutes if d.session else 0, d.refused)
                   for j, d in ((j, self.demands[j]) for j in by_spec)]
        return SimResult(name, duration_s, self.period_s, links, demands, np.array(self.times),
                         np.array(self.pool_samples).T, np.array(self.delivered_samples).T[by_spec],
                         list(self.ctl.events), list(self.faults))
