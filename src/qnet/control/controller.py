"""The controller of a QKD network (ITU-T Y.3804 control layer), modelled on the Tokyo QKD Network's
key management server (Sasaki et al., Opt. Express 19, 10387 (2011), sec. 4): every control period
each key manager reports its links (stored key, key rate, QBER, status); the controller merges the two
ends' reports into one :class:`~qnet.control.routing.LinkState` per link, raises alarms, and hands the
whole picture back, so that every key manager routes relays with the same view.

It also holds:

- **link control**: an operator cuts a link (administratively down) or restores it;
- **session control** for SAE pairs, after ETSI GS QKD 004 (OPEN_CONNECT / GET_KEY / CLOSE): a
  session has a Key_stream_ID, a QoS (key rate, priority) and a route; opening one checks access
  control and policy and admits it only if the links along its route have the rate to spare after
  sessions of equal or higher priority; a higher-priority session pre-empts lower ones. The rate
  of a link is what its ends measure (the smaller end's report) once they have reported for
  ``measure_s``, and the planned rate before; the admission and the refusal say which they used;
- **re-routing**: each control period, a session whose route crosses a link that is down, alarmed
  (QBER above threshold, pool below its low-water mark) or silent gets a new route.

Pure logic with the clock passed in: the live controller server (``qnet.servers.controller``) and the
simulator (``qnet.scenarios.simulate``) drive the same object (DESIGN.md: one brain, two bodies).
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from qnet.control.events import ControlEvent, EventKind, KMEEventIntake, ReportedEvent, Severity
from qnet.control.routing import (
    Cost,
    FeedModeName,
    LinkState,
    RoutePolicy,
    Router,
    Topology,
    hop_cost,
    usable_link,
)
from qnet.control.streams import StreamKeys
from qnet.errors import (
    CapacityError,
    ConflictError,
    InvalidRequestError,
    NoRouteError,
    NotFoundError,
    UnauthorizedError,
)
from qnet.keys.events import KMEEvent

__all__ = ["FEED_MODES", "Controller", "LinkReport", "RateBasis", "Session",
           "state_from_dict"]

FEED_MODES: tuple[FeedModeName, ...] = ("photon", "sampled")
"""The feed modes a link report may name (``qnet.quantum.link.FeedMode``'s values)."""


class RateBasis(StrEnum):
    """Which link rates an admission was checked against."""

    MEASURED = "measured"
    """What the links' ends reported, once they had reported for the controller's ``measure_s``."""
    PLANNED = "planned"
    """The planned rates (``capacity_bps``): no measurement yet."""
    MIXED = "measured and planned"
    """Measured on some links of the route, planned on the others."""


@dataclass(frozen=True)
class LinkReport:
    """One end's report of one link."""

    link_id: str
    stored_units: int
    key_rate_bps: float
    qber: float | None = None
    up: bool = True
    lag_s: float | None = None
    """How far the link's key feed is behind real time (s); None: not known (older KMEs)."""
    feed_mode: FeedModeName | None = None
    """``photon`` or ``sampled`` (the feed fell behind and samples block statistics); None: not known."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LinkReport:
        """From a JSON report (``qber``, ``up``, ``lag_s`` and ``feed_mode`` may be missing or null).

        Raises:
            InvalidRequestError: naming the bad field.
        """
        try:
            qber, lag, mode = raw.get("qber"), raw.get("lag_s"), raw.get("feed_mode")
            report = cls(str(raw["link_id"]), int(raw["stored_units"]), float(raw["key_rate_bps"]),
                         None if qber is None else float(qber), bool(raw.get("up", True)),
                         None if lag is None else float(lag), _feed_mode(mode))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"malformed link report: {exc!r}") from None
        if report.stored_units < 0 or not 0 <= report.key_rate_bps < math.inf or not 0 <= (report.qber or 0) <= 1:
            raise InvalidRequestError(f"link report out of range for {report.link_id}")
        if report.lag_s is not None and not 0 <= report.lag_s < math.inf:
            raise InvalidRequestError(f"link report for {report.link_id}: lag_s must be a finite number >= 0, "
                                    f"got {report.lag_s!r}")
        return report


@dataclass
class Session:
    """An admitted key stream between two SAEs (ETSI GS QKD 004's Key_stream_ID and QoS)."""

    key_stream_id: str
    source: str
    destination: str
    nodes: tuple[str, str]
    key_rate_bps: float
    priority: int
    route: list[str]
    opened_s: float
    reroutes: int = 0
    moved_s: float = -math.inf
    """When its route last changed."""
    admitted_against: RateBasis = RateBasis.PLANNED
    """The link rates its admission was checked against."""
    qos: dict[str, Any] = field(default_factory=dict)
    """The rest of its ETSI 004 QoS (chunk size, max bps, jitter, timeout, TTL), as asked."""
    connected: set[str] = field(default_factory=set)
    """Its SAEs that have called OPEN_CONNECT (the one that opened it at least)."""
    keys: StreamKeys = field(default_factory=StreamKeys, repr=False)
    """The key_IDs of its keys by index (:mod:`qnet.control.streams`)."""
    connected_s: dict[str, float] = field(default_factory=dict)
    """When each SAE connected (the opener: when it opened)."""
    delivered_bits: dict[str, int] = field(default_factory=dict)
    """Key bits each end's KME has delivered to its application (from their reports)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"Key_stream_ID": self.key_stream_id, "source": self.source, "destination": self.destination,
                "QoS": {**self.qos, "key_rate_bps": self.key_rate_bps, "priority": self.priority},
                "route": self.route, "opened_s": self.opened_s, "reroutes": self.reroutes,
                "admitted_against": self.admitted_against.value, "connected": sorted(self.connected),
                "delivered_bits": dict(sorted(self.delivered_bits.items()))}


@dataclass
class _Link:
    ends: tuple[str, str]
    capacity_bps: float
    reports: dict[str, tuple[LinkReport, float]] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    """Per end: when its current run of reports (none missed for ``silence_s``) began."""
    cut: bool = False
    eavesdropper: bool = False
    alarms: set[str] = field(default_factory=set)
    last_stock: int | None = None


class Controller:
    """The network's controller.

    Args:
        topology: nodes and links.
        policy: route limits (max hops, excluded nodes, minimum key rate).
        saes: SAE_ID -> node.
        access: SAE_ID -> SAEs it may share keys with (an SAE not named may pair with any).
        capacity_bps: planned key rate per link_id (admission control), shared by both directions (the
            ends hand each other unused units); missing: unlimited.
        control_period_s: how often key managers report.
        silence_s: a link whose key managers have not reported for this long counts as down
            (3 control periods if None; ``math.inf`` for a simulator that reports only changes).
        qber_threshold: QBER above which a link's alarm trips.
        low_water_units: stored units below which a link counts as running low.
        cost: route cost callable (``None`` hides a link).
        measure_s: how long a link's ends must have reported before admission trusts their
            measured key rate over the planned one (the KMEs' rate window: 60 s).
    """

    def __init__(self, topology: Topology, policy: RoutePolicy | None = None, *,
                 saes: Mapping[str, str] | None = None, access: Mapping[str, Sequence[str]] | None = None,
                 capacity_bps: Mapping[str, float] | None = None, control_period_s: float = 1.0,
                 qber_threshold: float = 0.11, low_water_units: int = 0, cost: Cost = hop_cost,
                 silence_s: float | None = None, measure_s: float = 60.0) -> None:
        self.topology, self.router = topology, Router(topology, policy, cost)
        self.saes, self.access = dict(saes or {}), {s: frozenset(p) for s, p in (access or {}).items()}
        self.period_s, self.qber_threshold, self.low_water_units = control_period_s, qber_threshold, low_water_units
        self.silence_s = 3 * control_period_s if silence_s is None else silence_s
        if not measure_s >= 0:
            raise ValueError(f"measure_s must be >= 0 seconds, got {measure_s!r}")
        self.measure_s = measure_s
        self.dwell_s = 30 * control_period_s
        """How long a session stays on its route before a low pool may move it."""
        caps = capacity_bps or {}
        self.links = {lid: _Link((a, b), caps.get(lid, math.inf)) for a, b, lid in topology.links}
        self.sessions: dict[str, Session] = {}
        self.usage: dict[str, list[dict[str, Any]]] = {}
        """Key handed to applications, as each node's KME last reported it (:meth:`take_usage`)."""
        self._version = 0
        self.revision = 0
        """Counts the changes that key managers must hear of (cuts, alarms, drains, sessions, routes):
        every event of the controller's own; a key manager that waits on it hears of a cut at once."""
        self._states: tuple[tuple[float, int], dict[str, LinkState]] | None = None
        self.events: deque[ControlEvent] = deque(maxlen=5000)
        self.intake = KMEEventIntake()
        """The key managers' events, each taken once, floods counted."""
        self.listeners: list[Callable[[ControlEvent], None]] = []
        """Called with every event as it happens (the management layer's alarm store, streams)."""
        self.route_changes = 0
        self._heard: dict[str, float] = {}
        self.drained: set[str] = set()
        self._silent: set[str] = set()
        self._was_up: dict[str, bool] = {}
        self._first_check_s: float | None = None
        self.start_grace_s = 30 * control_period_s
        """A link never seen up is not alarmed as down until this long after the first report
        (its ends are still starting: a peer not reached yet is reported down)."""

    # -- monitoring ------------------------------------------------------------------------------------

    def report(self, node: str, reports: Iterable[LinkReport], now_s: float,
               events: Iterable[Sequence[Any]] = (), *, boot: str | None = None) -> dict[str, Any]:
        """Take a key manager's reports (and its events: (time, kind, detail[, seq, count]), as
        :class:`~qnet.control.events.ReportedEvent`, from its start ``boot``); answer with the
        network's link states and the control period. Each event is filed once, and floods are
        counted rather than each filed (:class:`~qnet.control.events.KMEEventIntake`).

        Raises:
            InvalidRequestError: for an unknown node, a link that is not the node's or an unknown event kind.
        """
        if node not in self.topology.nodes:
            raise InvalidRequestError(f"unknown node {node!r}")
        reports = list(reports)
        for rep in reports:
            link = self.links.get(rep.link_id)
            if link is None or node not in link.ends:
                raise InvalidRequestError(f"link {rep.link_id!r} is not a link of node {node!r}")
        taken = [ReportedEvent(*e) for e in events]
        unknown = sorted({str(e.kind) for e in taken if e.kind not in _KME_EVENTS})
        if unknown:
            raise InvalidRequestError(f"unknown event kind(s) {', '.join(map(repr, unknown))}; a key manager "
                                    f"reports one of {', '.join(sorted(_KME_EVENTS))}")
        for rep in reports:
            link = self.links[rep.link_id]
            last = link.reports.get(node)
            if last is None or now_s - last[1] > self.silence_s:
                link.since[node] = now_s
            link.reports[node] = (rep, now_s)
        self._version += 1
        self._heard[node] = now_s
        if node in self._silent:
            self._silent.discard(node)
            self._event(now_s, EventKind.NODE_REACHABLE, node, Severity.CLEARED, "its key manager reports again")
        self._file_kme_events([(node, e) for e in self.intake.take(node, taken, now_s, boot)])
        self._check_alarms(now_s)
        self._check_links(now_s)
        return self.directive(now_s)

    def take_usage(self, node: str, usage: Iterable[Mapping[str, Any]], streams: Iterable[Mapping[str, Any]],
                   now_s: float | None = None) -> None:
        """What ``node``'s KME says it handed its applications (its count since it started: rows of
        SAE_ID, peer_SAE_ID, api, keys, bits) and each key stream's bits delivered there; rows for
        SAEs not of that node are ignored. With ``now_s``: a key stream (a session with an ETSI 004
        QoS) that one of this node's SAEs connected to more than three periods ago and that is not
        in the KME's list is closed (the KME restarted, or lost it): its capacity is freed."""
        own = {sae for sae, at in self.saes.items() if at == node}
        self.usage[node] = [dict(r) for r in usage if r.get("SAE_ID") in own]
        listed = set()
        for row in streams:
            session, sae = self.sessions.get(str(row.get("Key_stream_ID"))), row.get("SAE_ID")
            if session is not None and sae in own and sae in (session.source, session.destination):
                session.delivered_bits[str(sae)] = int(row.get("bits", 0))
                listed.add(session.key_stream_id)
        if now_s is None:
            return
        grace = 3 * self.period_s
        stale = [s for s in self.sessions.values() if "key_chunk_size" in s.qos and s.key_stream_id not in listed
                 and any(now_s - s.connected_s.get(sae, s.opened_s) > grace for sae in s.connected & own)]
        for session in stale:
            del self.sessions[session.key_stream_id]
            self._event(now_s, EventKind.SESSION_CLOSE, session.key_stream_id, Severity.INFO,
                        f"{session.source}->{session.destination}: no longer open at {node}'s KME")

    def answer(self, node: str, reports: Iterable[LinkReport], now_s: float,
               events: Iterable[Sequence[Any]] = (), *, boot: str | None = None) -> dict[str, Any]:
        """A key manager's whole exchange: take its report (:meth:`report`), then answer with the
        directive, the sessions that start at it, and the revision after re-routing.

        Raises:
            InvalidRequestError: as :meth:`report`.
        """
        answer = self.report(node, reports, now_s, events, boot=boot)
        answer["sessions"] = [s.as_dict() for s in self.sessions.values() if s.route[0] == node]
        self.reroute(now_s)
        answer["revision"] = self.revision
        return answer

    def tick(self, now_s: float) -> None:
        """Notice key managers that fell silent (node unreachable) and links that went down with them;
        the live controller calls this every period, the simulator need not."""
        self._file_kme_events(self.intake.due(now_s))
        for node, at in self._heard.items():
            if now_s - at > self.silence_s and node not in self._silent:
                self._silent.add(node)
                self._event(now_s, EventKind.NODE_UNREACHABLE, node, Severity.MAJOR,
                            f"no report for {now_s - at:.1f} s (its key manager is down or cut off)")
        self._check_links(now_s)

    def _check_links(self, now_s: float) -> None:
        """``link-down`` / ``link-up`` on each change of a link's state (cuts have their own events)."""
        self._first_check_s = now_s if self._first_check_s is None else self._first_check_s
        for lid, state in self.states(now_s).items():
            if self.links[lid].cut:  # a cut is its own alarm (link-cut ... link-restored)
                self._was_up[lid] = True
                continue
            if not self.links[lid].reports:
                continue  # no end has reported it yet: neither up nor down
            was = self._was_up.get(lid)
            if was is None and not state.up and now_s - self._first_check_s < self.start_grace_s:
                continue  # not up yet, as every link is while a network starts: no alarm yet
            was = True if was is None else was
            if state.up != was:
                kind, severity = ((EventKind.LINK_UP, Severity.CLEARED) if state.up else
                                  (EventKind.LINK_DOWN, Severity.MAJOR))
                self._event(now_s, kind, lid, severity, "reports show the link working again" if state.up else
                            "a key manager reports it down, or both ends fell silent")
            self._was_up[lid] = state.up

    def directive(self, now_s: float) -> dict[str, Any]:
        """What every key manager gets back: each link's state as the controller sees it."""
        return {"period_s": self.period_s, "time_s": now_s, "drained": sorted(self.drained),
                "links": {lid: {**_state_dict(st), "cut": self.links[lid].cut,
                                "eavesdropper": self.links[lid].eavesdropper}
                          for lid, st in self.states(now_s).items()}}

    def states(self, now_s: float) -> dict[str, LinkState]:
        """The merged state of every link: down if cut, reported down, or silent for 3 periods;
        stored units the smaller end's; alarmed while an alarm holds. (Kept until the next report,
        cut or restore, or another time.)"""
        if self._states is None or self._states[0] != (now_s, self._version):
            self._states = ((now_s, self._version), {lid: self._state(link, now_s) for lid, link in self.links.items()})
        return dict(self._states[1])

    def _state(self, link: _Link, now_s: float) -> LinkState:
        fresh = [rep for rep, at in link.reports.values() if now_s - at <= self.silence_s]
        if not link.reports:  # not heard of yet: assume up
            return LinkState(up=not link.cut, alarm=bool(link.alarms))
        if not fresh:  # its key managers fell silent
            return LinkState(up=False, stored_units=0, key_rate_bps=0.0, alarm=bool(link.alarms))
        qbers = [r.qber for r in fresh if r.qber is not None]
        lags = [r.lag_s for r in fresh if r.lag_s is not None]
        modes = {r.feed_mode for r in fresh if r.feed_mode is not None}
        return LinkState(up=not link.cut and all(r.up for r in fresh) and len(fresh) == len(link.reports),
                         stored_units=min(r.stored_units for r in fresh),
                         key_rate_bps=min(r.key_rate_bps for r in fresh),
                         qber=max(qbers) if qbers else 0.0, alarm=bool(link.alarms),
                         lag_s=max(lags) if lags else None,
                         feed_mode="sampled" if "sampled" in modes else "photon" if modes else None)

    def _check_alarms(self, now_s: float) -> None:
        """QBER above threshold; pool running low: below the low-water mark and falling (a pool
        filling up after a start is not running low), cleared at twice the mark (hysteresis)."""
        for lid, link in self.links.items():
            fresh = [rep for rep, at in link.reports.values() if now_s - at <= self.silence_s]
            qber = max((r.qber for r in fresh if r.qber is not None), default=0.0)
            high = qber > self.qber_threshold or (EventKind.QBER_HIGH in link.alarms
                                                  and qber > 0.75 * self.qber_threshold)
            self._alarm(lid, link, EventKind.QBER_HIGH, high, now_s,  # cleared below 3/4 of it: estimates are noisy
                        f"QBER {qber:.3f} (threshold {self.qber_threshold:.3f})", Severity.MAJOR)
            if not fresh:
                continue
            stock = min(r.stored_units for r in fresh)
            falling, link.last_stock = link.last_stock is not None and stock < link.last_stock, stock
            low = (stock < self.low_water_units and falling) or (EventKind.POOL_LOW in link.alarms and
                                                                 stock < 2 * self.low_water_units)
            self._alarm(lid, link, EventKind.POOL_LOW, low, now_s,
                        f"{stock} units stored, low-water mark {self.low_water_units}", Severity.MINOR)

    def _alarm(self, lid: str, link: _Link, kind: EventKind, on: bool, now_s: float, detail: str,
               severity: Severity) -> None:
        if on != (kind in link.alarms):
            self._version += 1
        if on and kind not in link.alarms:
            link.alarms.add(kind)
            self._event(now_s, kind, lid, severity, detail)
        elif not on and kind in link.alarms:
            link.alarms.discard(kind)
            self._event(now_s, kind.cleared(), lid, Severity.CLEARED, detail)

    # -- link control ----------------------------------------------------------------------------------

    def cut(self, link_id: str, now_s: float, reason: str = "operator") -> None:
        """Take a link out of service; sessions over it are re-routed at once.

        Raises:
            NotFoundError: for an unknown link.
        """
        link = self._link(link_id)
        self._version += 1
        if not link.cut:
            link.cut = True
            self._event(now_s, EventKind.LINK_CUT, link_id, Severity.MAJOR, f"link cut ({reason})")
        self.reroute(now_s)

    def restore(self, link_id: str, now_s: float) -> None:
        """Put a cut link back in service.

        Raises:
            NotFoundError: for an unknown link.
        """
        link = self._link(link_id)
        self._version += 1
        if link.cut:
            link.cut = False
            self._event(now_s, EventKind.LINK_RESTORED, link_id, Severity.CLEARED, "link back in service")

    def eavesdrop(self, link_id: str, on: bool, now_s: float) -> None:
        """Start or stop a simulated eavesdropper on a link (the demonstration the Tokyo QKD Network
        gave: its QBER alarm trips and traffic moves away).

        Raises:
            NotFoundError: for an unknown link.
        """
        link = self._link(link_id)
        if link.eavesdropper != on:
            link.eavesdropper = on
            self._version += 1
            self._event(now_s, EventKind.EAVESDROPPER_ON if on else EventKind.EAVESDROPPER_OFF, link_id, Severity.INFO,
                        "an operator started a simulated intercept-resend attack" if on else "attack stopped")

    def drain(self, node: str, on: bool, now_s: float) -> None:
        """Drain a node (no relay passes through it; its own SAEs still get keys) or undrain it.

        Raises:
            NotFoundError: for an unknown node.
        """
        if node not in self.topology.nodes:
            raise NotFoundError(f"no node {node!r} in this network")
        if (node in self.drained) != on:
            (self.drained.add if on else self.drained.discard)(node)
            self._version += 1
            self._event(now_s, EventKind.NODE_DRAINED if on else EventKind.NODE_UNDRAINED, node, Severity.INFO,
                        "relays route around it" if on else "relays may pass through it again")
            self.reroute(now_s)

    def _link(self, link_id: str) -> _Link:
        link = self.links.get(link_id)
        if link is None:
            raise NotFoundError(f"no link {link_id!r} in this network")
        return link

    # -- routes and sessions ---------------------------------------------------------------------------

    def route(self, src: str, dst: str, now_s: float) -> list[str]:
        """The route a relay from node ``src`` to ``dst`` takes now.

        Raises:
            NoRouteError: naming why there is none.
        """
        return self.router.route(src, dst, self.states(now_s), avoid_nodes=self.drained)

    def open_session(self, source: str, destination: str, now_s: float, *, key_rate_bps: float = 0.0,
                     priority: int = 0, key_stream_id: str | None = None, opener: str | None = None,
                     qos: Mapping[str, Any] | None = None) -> Session:
        """OPEN_CONNECT: admit a key stream from SAE ``source`` to SAE ``destination``.

        Admission checks the demand against each hop's rate (:meth:`admission_rate_bps`: measured
        once the link's ends have reported for ``measure_s``, planned before); the session's
        ``admitted_against`` and its ``session-open`` event say which, and a refusal names the hop,
        the figures and which rates they are.

        Raises:
            UnauthorizedError: for an unknown SAE or an access-control refusal.
            ConflictError: for a Key_stream_ID open already.
            NoRouteError: if no route satisfies the policy.
            CapacityError: if the demand exceeds what its route has left (the message names the
                link, the figures and their basis).
            InvalidRequestError: for an ``opener`` that is neither end.
        """
        ksid = key_stream_id or str(uuid.uuid4())
        if ksid in self.sessions:
            raise ConflictError(f"Key_stream_ID {ksid} is already open")
        opener = source if opener is None else opener
        if opener not in (source, destination):
            raise InvalidRequestError(f"{opener!r} is neither end of the session {source}->{destination}")
        nodes = self._session_nodes(source, destination)
        if not 0 <= key_rate_bps < math.inf:
            raise InvalidRequestError("QoS key_rate_bps must be a finite number >= 0")
        try:
            route = self.route(*nodes, now_s)
        except NoRouteError as exc:
            raise NoRouteError(nodes[0], nodes[1], exc.reason) from None
        session, victims = self._admit_on_some_route(
            Session(ksid, source, destination, nodes, key_rate_bps, priority, route, now_s, qos=dict(qos or {}),
                    connected={opener}, connected_s={opener: now_s}), now_s)
        for victim in victims:
            del self.sessions[victim.key_stream_id]
            self._event(now_s, EventKind.SESSION_PREEMPTED, victim.key_stream_id, Severity.MINOR,
                        f"{victim.source}->{victim.destination} pre-empted by priority {priority}")
        self.sessions[ksid] = session
        self._event(now_s, EventKind.SESSION_OPEN, ksid, Severity.INFO,
                    f"{source}->{destination} over {' -> '.join(session.route)} "
                    f"(admitted against {session.admitted_against} rates)")
        return session

    def connect_session(self, key_stream_id: str, sae: str, now_s: float, *, source: str | None = None,
                        destination: str | None = None) -> Session:
        """OPEN_CONNECT by the second of a session's SAEs (the first opened it); ``source`` and
        ``destination``, if given, must be the session's (checked before anything changes).

        Raises:
            NotFoundError: if no such session is open.
            InvalidRequestError: if ``sae`` is neither of its ends.
            ConflictError: if ``sae`` has connected already, or the session joins other SAEs (ETSI
                004: KSID already in use).
        """
        session = self.session(key_stream_id)
        if (source or session.source, destination or session.destination) != (session.source, session.destination):
            raise ConflictError(f"Key_stream_ID {key_stream_id} is a stream between other applications")
        if sae not in (session.source, session.destination):
            raise InvalidRequestError(f"{sae!r} is neither end of the session {key_stream_id}")
        if sae in session.connected:
            raise ConflictError(f"{sae} has connected to Key_stream_ID {key_stream_id} already")
        session.connected.add(sae)
        session.connected_s[sae] = now_s
        self._event(now_s, EventKind.SESSION_OPEN, key_stream_id, Severity.INFO, f"{sae} connected")
        return session

    def close_session(self, key_stream_id: str, now_s: float) -> Session:
        """CLOSE: end a key stream.

        Raises:
            NotFoundError: if no such session is open.
        """
        session = self.session(key_stream_id)
        del self.sessions[key_stream_id]
        self._event(now_s, EventKind.SESSION_CLOSE, key_stream_id, Severity.INFO,
                    f"{session.source}->{session.destination}")
        return session

    def session(self, key_stream_id: str) -> Session:
        """An open session.

        Raises:
            NotFoundError: if none has this Key_stream_ID.
        """
        session = self.sessions.get(key_stream_id)
        if session is None:
            raise NotFoundError(f"no open session with Key_stream_ID {key_stream_id}")
        return session

    def admission_rate_bps(self, link_id: str, now_s: float) -> tuple[float, RateBasis]:
        """The key rate admission counts on for a link (both directions together), and which it is:
        what its ends measure (the smaller end's report) once every end heard from has reported for
        ``measure_s`` with no gap longer than ``silence_s``; the planned rate before
        (``capacity_bps``; unlimited if none was planned).

        Raises:
            NotFoundError: for an unknown link.
        """
        link = self._link(link_id)
        fresh = [(node, rep) for node, (rep, at) in link.reports.items() if now_s - at <= self.silence_s]
        if fresh and all(now_s - link.since[node] >= self.measure_s for node, _ in fresh):
            return min(rep.key_rate_bps for _, rep in fresh), RateBasis.MEASURED
        return link.capacity_bps, RateBasis.PLANNED

    def reroute(self, now_s: float) -> list[Session]:
        """Move sessions off troubled routes; returns the sessions that moved.

        A route crossing a hop with no link up (cut, failed, silent) or only QBER-alarmed links moves
        at once. One that only crosses a pool running low moves if it has stayed put for
        :attr:`dwell_s` and the new route has no alarm at all (damping: traffic moved off a low pool
        must not bounce straight back). A session with no route keeps its old one (its keys are
        refused until a route returns)."""
        states = self.states(now_s)
        moved = []
        for session in sorted(self.sessions.values(), key=lambda s: -s.priority):
            trouble = self._trouble(session.route, states)
            settled = now_s - max(session.moved_s, session.opened_s)
            if trouble is None or (trouble == "soft" and settled < self.dwell_s):
                continue
            try:
                route = self.router.route(*session.nodes, states, avoid_nodes=self.drained)
            except NoRouteError as exc:
                self._event(now_s, EventKind.SESSION_NO_ROUTE, session.key_stream_id, Severity.MAJOR, str(exc))
                continue
            if route == session.route or (trouble == "soft" and self._trouble(route, states) is not None):
                continue
            self._event(now_s, EventKind.ROUTE_CHANGE, session.key_stream_id, Severity.INFO,
                        f"{' -> '.join(session.route)} => {' -> '.join(route)}")
            session.route, session.reroutes, session.moved_s = route, session.reroutes + 1, now_s
            self.route_changes += 1
            moved.append(session)
        return moved

    def _trouble(self, route: Sequence[str], states: Mapping[str, LinkState]) -> str | None:
        """"hard" if the route is not usable even counting pool-low links as fine (a relay drained or
        excluded, or a hop with no usable link free of a QBER alarm), "soft" if it is usable only
        through links whose pools run low, else None (:meth:`Router.usable`: one definition)."""
        if not self.router.usable(route, self._qber_view(states), avoid_nodes=self.drained):
            return "hard"
        return None if self.router.usable(route, states, avoid_nodes=self.drained) else "soft"

    def _qber_view(self, states: Mapping[str, LinkState]) -> dict[str, LinkState]:
        """``states`` with only QBER alarms counted as alarms (a low pool is a reason to move, not a
        reason to drop the route at once)."""
        return {lid: replace(st, alarm=EventKind.QBER_HIGH in self.links[lid].alarms) if st.alarm else st
                for lid, st in states.items()}

    def _session_nodes(self, source: str, destination: str) -> tuple[str, str]:
        nodes = []
        for sae in (source, destination):
            node = self.saes.get(sae)
            if node is None:
                raise UnauthorizedError(f"unknown SAE {sae!r}: not attached to any node of this network")
            nodes.append(node)
        if nodes[0] == nodes[1]:
            raise InvalidRequestError(f"{source} and {destination} are at the same node {nodes[0]}: no QKD needed")
        for a, b in ((source, destination), (destination, source)):
            if a in self.access and b not in self.access[a]:
                raise UnauthorizedError(f"access control: {source} and {destination} may not share keys")
        return nodes[0], nodes[1]

    def _admit_on_some_route(self, session: Session, now_s: float) -> tuple[Session, list[Session]]:
        """Admit on the best route, else on the next cheapest ones that fit (up to 4 in all).

        Raises:
            CapacityError: the best route's refusal, if none fits.
        """
        try:
            return self._admit(session, now_s)
        except CapacityError as first:
            routes = self.router.alternatives(*session.nodes, self.states(now_s), limit=4, avoid_nodes=self.drained)
            for route in routes:
                if route == session.route:
                    continue
                try:
                    return self._admit(replace(session, route=route), now_s)
                except CapacityError:
                    continue
            raise first from None

    def _admit(self, new: Session, now_s: float) -> tuple[Session, list[Session]]:
        """``new`` with the rates it was admitted against, and the lower-priority sessions to pre-empt
        so that it fits on its route.

        Raises:
            CapacityError: if it does not fit even so.
        """
        victims: list[Session] = []
        bases: set[RateBasis] = set()
        for a, b in itertools.pairwise(new.route):
            capacity, basis = self._hop_rate_bps(a, b, now_s)
            bases.add(basis)
            others = [s for s in self.sessions.values()
                      if (_crosses(s.route, a, b) or _crosses(s.route, b, a)) and s not in victims]
            kept = sum(s.key_rate_bps for s in others if s.priority >= new.priority)
            if kept + new.key_rate_bps > capacity:
                left = max(capacity - kept, 0.0)
                raise CapacityError((a, b), new.key_rate_bps, left,
                                    f"demand of {new.key_rate_bps:.6g} bit/s exceeds what hop {a}-{b} has left: "
                                    f"{left:.6g} of {capacity:.6g} bit/s ({basis} rate)")
            used = sum(s.key_rate_bps for s in others)
            for s in sorted((s for s in others if s.priority < new.priority), key=lambda s: s.priority):
                if used + new.key_rate_bps <= capacity:
                    break
                victims.append(s)
                used -= s.key_rate_bps
        basis = bases.pop() if len(bases) == 1 else RateBasis.MIXED if bases else RateBasis.PLANNED
        return replace(new, admitted_against=basis), victims

    def _hop_rate_bps(self, a: str, b: str, now_s: float) -> tuple[float, RateBasis]:
        """What the sessions crossing ``a``-``b`` (either way) may use together: the admission rate of
        each usable link between them (the ends hand each other the units they do not use, so one
        direction may have the whole link), and its basis."""
        states = self.states(now_s)
        ids = [i for i in self.topology.links_between(a, b)
               if usable_link(states[i], self.router.policy, alarmed_ok=True)]
        rates = [self.admission_rate_bps(i, now_s) for i in ids]
        bases = {basis for _, basis in rates}
        basis = bases.pop() if len(bases) == 1 else RateBasis.MIXED if bases else RateBasis.PLANNED
        return sum(rate for rate, _ in rates), basis

    def _file_kme_events(self, events: Iterable[tuple[str, ReportedEvent]]) -> None:
        for node, event in events:
            kind = EventKind.from_kme(KMEEvent(event.kind))  # not to be taken for the controller's own
            severity = Severity.CRITICAL if kind is EventKind.AUTH_FAILURE else Severity.INFO
            self._event(event.time_s, kind, node, severity, event.detail, own=False)

    def _event(self, now_s: float, kind: EventKind, place: str, severity: Severity, detail: str,
               own: bool = True) -> None:
        event = ControlEvent(now_s, kind, place, severity, detail)
        self.events.append(event)
        self.revision += own
        for listener in self.listeners:
            listener(event)


_KME_EVENTS = frozenset(k.value for k in KMEEvent)


def _crosses(route: Sequence[str], a: str, b: str) -> bool:
    """Whether ``route`` goes from ``a`` to ``b`` (that direction)."""
    return any((x, y) == (a, b) for x, y in itertools.pairwise(route))


def _feed_mode(raw: object) -> FeedModeName | None:
    """A report's ``feed_mode``: None, or one of :data:`FEED_MODES`.

    Raises:
        ValueError: for anything else.
    """
    if raw is None:
        return None
    for mode in FEED_MODES:
        if raw == mode:
            return mode
    raise ValueError(f"feed_mode must be one of {', '.join(FEED_MODES)} or null, got {raw!r}")


def _state_dict(state: LinkState) -> dict[str, Any]:
    rate = state.key_rate_bps
    return {"up": state.up, "stored_units": state.stored_units, "key_rate_bps": rate if math.isfinite(rate) else None,
            "qber": state.qber, "alarm": state.alarm, "lag_s": state.lag_s, "feed_mode": state.feed_mode}


def state_from_dict(raw: Mapping[str, Any]) -> LinkState:
    """A link state from a controller's directive (the key manager's side); ``lag_s`` and
    ``feed_mode`` may be missing (an older controller) and an unknown feed mode reads as None."""
    rate, lag, mode = raw.get("key_rate_bps"), raw.get("lag_s"), raw.get("feed_mode")
    return replace(LinkState(), up=bool(raw.get("up", True)), stored_units=int(raw.get("stored_units", 0)),
                   key_rate_bps=math.inf if rate is None else float(rate), qber=float(raw.get("qber", 0.0)),
                   alarm=bool(raw.get("alarm", False)), lag_s=None if lag is None else float(lag),
                   feed_mode=mode if mode in FEED_MODES else None)
