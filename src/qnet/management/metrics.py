"""Monitoring (ITU-T Y.3804 performance management): Prometheus metrics of key managers and the
controller, in the Prometheus text exposition format (``GET /metrics`` on each server).

Each server app holds its own :class:`prometheus_client.CollectorRegistry` (never the process-wide
one), so two apps in one process never mix their numbers. Two kinds of number:

- **pushed** as requests are served: requests by name and status code, their latency, relays; the
  server's request middleware and handlers call :meth:`RequestMetrics.observe` and
  :meth:`KMEMetrics.relayed`;
- **read at scrape time** by a collector: a key manager's per-link numbers come from its key store
  (what it holds, what the link produced, what was consumed, the last QBER), the controller's from
  its picture of the network; nothing else has to push them.

Key manager (``KMEMetrics``), per link (labels ``link``, ``peer``):

==========================================  =======  ==================================================
``qnet_link_key_rate_bits_per_second``      gauge    secret key delivered by the link into the store,
                                                     mean over the last ``RATE_WINDOW_S``
``qnet_link_produced_bits_total``           counter  secret key the link delivered since it began
``qnet_link_qber``                          gauge    the QBER the link last estimated (simulated links)
``qnet_link_stored_key_bits``               gauge    key held, by ``state`` (new, available, assigned)
``qnet_link_servable_key_bits``             gauge    key this KME may hand to master SAEs now
``qnet_link_consumed_bits_total``           counter  key consumed, by ``use``: ``delivered`` to SAEs,
                                                     or spent on a key ``relay``
==========================================  =======  ==================================================

and per node: ``qnet_kme_requests_total{method, code}`` (``method``: the ETSI GS QKD 014 method,
``status``, ``enc_keys``, ``dec_keys``, or ``km_message``, ``metrics``, ``other``),
``qnet_kme_request_duration_seconds{method}`` (a histogram), ``qnet_kme_relays_total{outcome}``
(``started`` here, ``forwarded`` as a later hop, ``failed``), ``qnet_kme_events_total{kind}`` and
``qnet_kme_errors_total{kind}`` (``internal``: a request failed unexpectedly; and the error kinds
of :data:`ERROR_EVENTS`); and the accounting of key handed to applications:
``qnet_kme_keys_served_total{sae, peer, api}`` and ``qnet_kme_key_bits_served_total{sae, peer, api}``
(``api``: ``etsi014``, or ``etsi004`` for a key stream's keys), ``qnet_kme_key_streams{sae}`` (open
ETSI 004 streams).

Controller (``ControllerMetrics``), per link (label ``link``): ``qnet_controller_link_up``,
``qnet_controller_link_cut``, ``qnet_controller_link_stored_units``,
``qnet_controller_link_key_rate_bits_per_second``, ``qnet_controller_link_qber``,
``qnet_controller_link_alarms``, ``qnet_link_lag_seconds`` (how far the link's key feed is behind
real time, the larger end's report; absent until an end reports it); and ``qnet_controller_sessions``,
``qnet_controller_route_changes_total``, ``qnet_controller_events_total{kind}``,
``qnet_controller_requests_total{endpoint, code}``,
``qnet_controller_request_duration_seconds{endpoint}``, ``qnet_controller_errors_total{kind}``.

Events are counted from the bounded event logs at scrape time: should more events arrive between
two scrapes than a log holds (1000 at a key manager, 5000 at the controller), the oldest are missed.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qnet.control.controller import Controller
from qnet.keys.manager import KeyManager
from qnet.keys.store import SPENT, SpentAs, keys_table
from qnet.service.usage import KeyUsage

__all__ = ["ERROR_EVENTS", "LATENCY_BUCKETS_S", "RATE_WINDOW_S", "ControllerMetrics", "KMEMetrics",
           "RequestMetrics", "consumed_units"]

T = TypeVar("T")

RATE_WINDOW_S = 60.0
"""The key rate is the mean over this long (links deliver key a block at a time)."""
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Request latency histogram buckets (s): a key request is served in about a millisecond; a slave's
``dec_keys`` may wait up to 3 s for its master's KME, a relay longer."""
ERROR_EVENTS = frozenset({"sync-mismatch", "km-message-refused", "relay-refused", "relay-reroute",
                          "peer-unreachable", "controller-unreachable"})
"""Key manager event kinds that count as errors (``qnet_kme_errors_total``)."""
RELAY_OUTCOMES = ("started", "forwarded", "failed")
_STATES = ("new", "available", "assigned")


class _Kinded(Protocol):
    @property
    def kind(self) -> str: ...


class _EventTally:
    """Events by kind, counted from an append-only bounded log (a deque) each time it is read:
    the events after the newest one seen last time are new."""

    def __init__(self) -> None:
        self.counts: Tally[str] = Tally()
        self._last: object | None = None
        self._lock = threading.Lock()

    def update(self, log: Iterable[_Kinded]) -> dict[str, int]:
        """Count the events of ``log`` not seen before; returns the counts so far."""
        with self._lock:
            events = tuple(log)  # one C-level copy: no other thread's append lands mid-way
            for event in reversed(events):
                if event is self._last:
                    break
                self.counts[event.kind] += 1
            if events:
                self._last = events[-1]
            return dict(self.counts)


class RequestMetrics:
    """Requests an app served (by ``label``, a small fixed set of names, and status code) and their
    latency; requests that failed unexpectedly are also errors of kind ``internal``.

    Args:
        registry: the app's registry.
        prefix: metric name prefix (``qnet_kme``).
        label: the label naming what was asked (``method``, ``endpoint``).
    """

    def __init__(self, registry: CollectorRegistry, prefix: str, label: str) -> None:
        self.requests = Counter(f"{prefix}_requests", "Requests served, by what was asked and status code.",
                                [label, "code"], registry=registry)
        self.latency = Histogram(f"{prefix}_request_duration_seconds", "Time to serve a request (s).", [label],
                                 buckets=LATENCY_BUCKETS_S, registry=registry)
        self.internal_errors = 0

    def observe(self, name: str, status: int, seconds: float) -> None:
        """A request ``name`` answered ``status`` after ``seconds``."""
        self.requests.labels(name, str(status)).inc()
        self.latency.labels(name).observe(seconds)

    def failed(self, name: str, seconds: float, status: int = 503) -> None:
        """A request ``name`` raised an unexpected error (answered ``status`` by the error handler)."""
        self.internal_errors += 1
        self.observe(name, status, seconds)


class _Exposing:
    """A registry and its exposition."""

    registry: CollectorRegistry

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the format the ``Accept`` header asks for (Prometheus text format 0.0.4 by
        default, OpenMetrics if asked): (body, content type). Reads the collectors now."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class KMEMetrics(_Exposing):
    """The metrics of one key manager: request and relay counts pushed by the server, per-link
    numbers read from ``manager``'s store at each scrape.

    Args:
        manager: the key manager (its store, links, unit size and event log).
        clock: wall-clock seconds (for the key rate).
    """

    def __init__(self, manager: KeyManager, *, clock: Callable[[], float] = time.time,
                 usage: KeyUsage | None = None, streams: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestMetrics(self.registry, "qnet_kme", "method")
        self.relays = Counter("qnet_kme_relays", "Key relays: started here, forwarded as a later hop, failed.",
                              ["outcome"], registry=self.registry)
        for outcome in RELAY_OUTCOMES:
            self.relays.labels(outcome)
        self.registry.register(_KMECollector(manager, self.http, clock))
        if usage is not None:
            self.registry.register(_UsageCollector(usage, streams or dict))

    async def relayed(self, outcome: str, relay: Awaitable[T]) -> T:
        """Await ``relay``, counting it under ``outcome`` (and ``failed`` if it raises)."""
        self.relays.labels(outcome).inc()
        try:
            return await relay
        except Exception:
            self.relays.labels("failed").inc()
            raise


class _UsageCollector(Collector):
    """Key handed to applications (:class:`~qnet.service.usage.KeyUsage`) and the open key streams.
    The label values are SAE_IDs of the network's spec (a bounded set), never a caller's words."""

    def __init__(self, usage: KeyUsage, streams: Callable[[], Mapping[str, int]]) -> None:
        self.usage, self.streams = usage, streams

    def collect(self) -> Iterator[Metric]:
        labels = ["sae", "peer", "api"]
        keys = CounterMetricFamily("qnet_kme_keys_served", "Keys handed to applications, by application (sae), "
                                   "the application it shares them with (peer) and API (etsi014, etsi004).",
                                   labels=labels)
        bits = CounterMetricFamily("qnet_kme_key_bits_served", "Key bits handed to applications, by application, "
                                   "peer and API.", labels=labels)
        for row in self.usage.rows():
            values = [row["SAE_ID"], row["peer_SAE_ID"], row["api"]]
            keys.add_metric(values, row["keys"])
            bits.add_metric(values, row["bits"])
        streams = GaugeMetricFamily("qnet_kme_key_streams", "Open ETSI 004 key streams, by application here.",
                                    labels=["sae"])
        for sae, count in sorted(self.streams().items()):
            streams.add_metric([sae], count)
        yield from (keys, bits, streams)


def consumed_units(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    """Units spent per link_id: (delivered to SAEs, spent on relays); expired and discarded units
    are not consumption. Reads the store's typed ``spent_as`` column."""
    return {lid: (d, r) for lid, (d, r, _) in spent_units(conn).items()}


def spent_units(conn: sa.Connection) -> dict[str, tuple[int, int, int]]:
    """Units spent per link_id: (delivered to SAEs, spent on relays, discarded by synchronisation)."""
    use = keys_table.c.spent_as

    def count(*kinds: SpentAs) -> Any:
        return sa.func.sum(sa.case((use.in_([k.value for k in kinds]), 1), else_=0))

    query = (sa.select(keys_table.c.link_id, count(SpentAs.ENC_KEYS, SpentAs.DEC_KEYS), count(SpentAs.RELAY),
                       count(SpentAs.DISCARDED))
             .where(keys_table.c.state == SPENT).group_by(keys_table.c.link_id))
    return {str(lid): (int(d or 0), int(r or 0), int(x or 0)) for lid, d, r, x in conn.execute(query)}


class _KMECollector(Collector):
    """Reads a key manager's store at scrape time."""

    def __init__(self, manager: KeyManager, http: RequestMetrics, clock: Callable[[], float]) -> None:
        self.manager, self.http, self.clock = manager, http, clock
        self.events = _EventTally()
        self._history: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def _rate_bps(self, link_id: str, now: float, produced: int) -> float:
        """Mean rate over the last RATE_WINDOW_S of scrapes (since the link's epoch at the first)."""
        with self._lock:
            history = self._history.get(link_id)
            if history is None:
                history = self._history[link_id] = deque()
                epoch = self.manager.store.get_meta(f"epoch/{link_id}")
                if epoch is not None and float(epoch) < now:
                    history.append((float(epoch), 0))
            history.append((now, produced))
            while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
                history.popleft()
            (t0, first), (t1, last) = history[0], history[-1]
        return max(last - first, 0) * self.manager.unit_bits / (t1 - t0) if t1 > t0 else 0.0

    def collect(self) -> Iterator[Metric]:
        """The per-link and per-node families."""
        yield from self._links()
        kinds = self.events.update(self.manager.events)
        events = CounterMetricFamily("qnet_kme_events", "Key manager events, by kind.", labels=["kind"])
        errors = CounterMetricFamily("qnet_kme_errors", "Errors: internal (a request failed unexpectedly) "
                                     "and key manager error events, by kind.", labels=["kind"])
        errors.add_metric(["internal"], self.http.internal_errors)
        for kind, n in sorted(kinds.items()):
            events.add_metric([kind], n)
            if kind in ERROR_EVENTS:
                errors.add_metric([kind], n)
        yield events
        yield errors

    def _links(self) -> Iterator[Metric]:
        manager, store, bits = self.manager, self.manager.store, self.manager.unit_bits
        labels = ["link", "peer"]
        rate = GaugeMetricFamily("qnet_link_key_rate_bits_per_second", "Secret key rate into the store "
                                 f"(bit/s), mean over the last {RATE_WINDOW_S:g} s.", labels=labels)
        produced = CounterMetricFamily("qnet_link_produced_bits", "Secret key bits the link delivered.",
                                       labels=labels)
        qber = GaugeMetricFamily("qnet_link_qber", "QBER the link last estimated.", labels=labels)
        stored = GaugeMetricFamily("qnet_link_stored_key_bits", "Key bits held, by state.",
                                   labels=[*labels, "state"])
        servable = GaugeMetricFamily("qnet_link_servable_key_bits", "Key bits this KME may hand to master "
                                     "SAEs now.", labels=labels)
        consumed = CounterMetricFamily("qnet_link_consumed_bits", "Key bits consumed: delivered to SAEs, or "
                                       "spent on relays.", labels=[*labels, "use"])
        discarded = CounterMetricFamily("qnet_link_discarded_bits", "Key bits discarded because one end lacked "
                                        "them (key synchronisation); 0 when both ends receive the same units.",
                                        labels=labels)
        lag = GaugeMetricFamily("qnet_link_lag_seconds", "How far the link's key feed is behind real time (s); "
                                "beyond 3 s (or one block) its blocks are sampled.", labels=labels)
        sampled = CounterMetricFamily("qnet_link_sampled_blocks", "Blocks made by block-level sampling of the "
                                      "same statistics because the machine could not keep up.", labels=labels)
        with store.reading() as conn:
            used = spent_units(conn)
        now, meta = self.clock(), store.meta()
        for link in manager.by_id.values():
            lid, names = link.link_id, [link.link_id, link.peer]
            made = store.produced(lid)
            produced.add_metric(names, made * bits)
            rate.add_metric(names, self._rate_bps(lid, now, made))
            last_qber = meta.get(f"qber/{lid}") or None
            if last_qber is not None and math.isfinite(float(last_qber)):
                qber.add_metric(names, float(last_qber))
            counts = store.counts(lid)
            for state in _STATES:
                units = sum(n for key, n in counts.items() if key.rsplit("/", 1)[1] == state)
                stored.add_metric([*names, state], units * bits)
            servable.add_metric(names, counts.get(f"{manager.kme_id}/available", 0) * bits)
            delivered, relayed, dropped = used.get(lid, (0, 0, 0))
            consumed.add_metric([*names, "delivered"], delivered * bits)
            consumed.add_metric([*names, "relay"], relayed * bits)
            discarded.add_metric(names, dropped * bits)
            behind, blocks = meta.get(f"lag/{lid}"), meta.get(f"sampled/{lid}")
            if behind:
                lag.add_metric(names, float(behind))
            sampled.add_metric(names, int(blocks or 0))
        yield from (rate, produced, qber, stored, servable, consumed, discarded, lag, sampled)


class ControllerMetrics(_Exposing):
    """The metrics of the controller: request counts pushed by the server, the network's picture
    read from ``ctl`` at each scrape (call :meth:`exposition` on the thread that drives ``ctl``).

    Args:
        ctl: the controller.
        clock: wall-clock seconds (link states are as of the scrape).
    """

    def __init__(self, ctl: Controller, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestMetrics(self.registry, "qnet_controller", "endpoint")
        self.registry.register(_ControllerCollector(ctl, self.http, clock))


class _ControllerCollector(Collector):
    """Reads the controller's picture at scrape time."""

    def __init__(self, ctl: Controller, http: RequestMetrics, clock: Callable[[], float]) -> None:
        self.ctl, self.http, self.clock = ctl, http, clock
        self.events = _EventTally()

    def collect(self) -> Iterator[Metric]:
        """The per-link and network families."""
        ctl = self.ctl
        yield from _link_states(ctl, self.clock())
        sessions = GaugeMetricFamily("qnet_controller_sessions", "Open key sessions (ETSI GS QKD 004).")
        sessions.add_metric([], len(ctl.sessions))
        changes = CounterMetricFamily("qnet_controller_route_changes", "Sessions moved to another route.")
        changes.add_metric([], ctl.route_changes)
        events = CounterMetricFamily("qnet_controller_events", "Controller events, by kind.", labels=["kind"])
        for kind, n in sorted(self.events.update(ctl.events).items()):
            events.add_metric([kind], n)
        errors = CounterMetricFamily("qnet_controller_errors", "Errors: internal (a request failed "
                                     "unexpectedly).", labels=["kind"])
        errors.add_metric(["internal"], self.http.internal_errors)
        yield from (sessions, changes, events, errors)


def _link_states(ctl: Controller, now: float) -> Iterator[Metric]:
    """Each link's state as the controller sees it (a rate or QBER not known yet is left out)."""
    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"qnet_controller_link_{name}", doc, labels=["link"])

    up, cut = gauge("up", "1 if the link is up."), gauge("cut", "1 if an operator cut the link.")
    units = gauge("stored_units", "Servable units, the smaller end's.")
    rate = gauge("key_rate_bits_per_second", "Key rate the link's ends reported (bit/s), the smaller.")
    qber = gauge("qber", "QBER the link's ends reported, the larger.")
    alarms = gauge("alarms", "Alarms active on the link.")
    lag = GaugeMetricFamily("qnet_link_lag_seconds", "How far the link's key feed is behind real time (s), "
                            "the larger end's report.", labels=["link"])
    for lid, state in sorted(ctl.states(now).items()):
        link = ctl.links[lid]
        up.add_metric([lid], float(state.up))
        cut.add_metric([lid], float(link.cut))
        alarms.add_metric([lid], len(link.alarms))
        if link.reports:  # heard of: the numbers are reported ones, not the router's defaults
            units.add_metric([lid], state.stored_units)
            if math.isfinite(state.key_rate_bps):
                rate.add_metric([lid], state.key_rate_bps)
            qber.add_metric([lid], state.qber)
        if state.lag_s is not None:
            lag.add_metric([lid], state.lag_s)
    yield from (up, cut, units, rate, qber, alarms, lag)

