"""A KME's link to the network's controller (ITU-T Y.3804): every control period it reports each of
its links (servable units, key rate over the last period, the QBER its QKD module last estimated,
whether the peer answers) and applies the answer:

- every link's state as the controller sees it feeds this KME's relay routing, so all key managers
  route with the same picture (links cut, alarmed or silent are avoided);
- its own links that an operator cut are taken out of service: no keys are served or relayed over
  them, and their feeders drop what the link makes (``cut/LINK`` in the store's meta table);
- the routes of sessions that start here (OPEN_CONNECT at the controller) are used for their relays.

Between reports the agent waits on the controller's changes (a long poll): a cut, an alarm or a
moved session reaches every KME at once, not a period later.

If the controller stops answering for three periods, the KME forgets its picture and routes on what it
sees itself, so the network keeps working without its controller.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from qnet.control.controller import state_from_dict
from qnet.control.routing import LinkState
from qnet.keys.events import KMEEvent
from qnet.keys.manager import KeyManager
from qnet.keys.source import SampleReason
from qnet.keys.store import KeyStore
from qnet.servers.config import KMEConfig

__all__ = ["ControlAgent", "ControlledNode", "feed_pace"]

REAL_TIME_AFTER_S = 60.0
"""A lagging link is back at real time once its feed has run photon by photon this long."""
RATE_WINDOW_S = 60.0
"""The key rate reported is the mean over this long: links deliver key a block at a time."""

STOCK_REFRESH_S = 3.0
"""A link's stock in the reports is at most this old."""
WAIT_SLICE_S = 2.0
"""The longest one wait on the controller's changes lasts (a stopping KME is not held up longer)."""
MIN_REPORT_GAP_S = 0.1
"""Reports come at most this often, however often the controller's picture changes."""

log = logging.getLogger("qnet.kme")


def feed_pace(meta: Mapping[str, str], link_id: str) -> tuple[float | None, str | None]:
    """(seconds the link's key feed is behind real time, ``"photon"`` or ``"sampled"``), as its
    feeder last wrote them in the store's ``meta`` (:meth:`KeyStore.meta`); None where it has not
    (not a simulated link, or not started)."""
    lag, mode = meta.get(f"lag/{link_id}"), meta.get(f"mode/{link_id}")
    return (float(lag) if lag else None), (mode or ("photon" if lag else None))


class ControlledNode(Protocol):
    """What the agent reads of the KME it serves and sets from the controller's answers
    (:class:`qnet.servers.node.KMENode`)."""

    config: KMEConfig
    manager: KeyManager
    store: KeyStore
    clock: Callable[[], float]
    control_states: dict[str, LinkState]
    session_routes: dict[str, list[str]]
    drained: set[str]
    sessions: list[dict[str, Any]]


class ControlAgent:
    """Reports to the controller at ``url`` and applies its answers to ``node``."""

    def __init__(self, node: ControlledNode, url: str, period_s: float, context: ssl.SSLContext) -> None:
        self.node, self.url, self.period_s = node, url.rstrip("/") + "/control/v1/reports", period_s
        self.changes_url = url.rstrip("/") + "/control/v1/changes"
        self._revision: int | None = None
        self._http = httpx.Client(verify=context, timeout=max(period_s, 2.0))
        self._history: dict[str, deque[tuple[float, int]]] = {}
        self._silent_since: float | None = None
        self._events_sent = 0.0
        self._cut: set[str] = set()
        self._eve: set[str] = set()
        self._lagging: set[str] = set()
        self._photon_since: dict[str, float] = {}
        self._stocks: dict[str, tuple[float, int]] = {}

    def run(self, stop: threading.Event) -> None:
        """Report every period until ``stop`` is set."""
        while not stop.is_set():
            began = time.monotonic()
            self.step()
            self.wait(stop, began + self.period_s)
        self._http.close()

    def wait(self, stop: threading.Event, until: float) -> None:
        """Until the next report is due at ``until`` (monotonic), or sooner: once the controller's
        picture changes. Without an answer from the controller this is a plain wait."""
        stop.wait(MIN_REPORT_GAP_S)
        while not stop.is_set() and (left := until - time.monotonic()) > 0:
            if self._revision is None or self._silent_since is not None:
                stop.wait(left)
                return
            wait_s = min(left, WAIT_SLICE_S)
            try:
                r = self._http.get(self.changes_url, params={"after": self._revision, "wait_s": round(wait_s, 3)},
                                   timeout=wait_s + 5.0)
                if r.status_code != 200:
                    raise httpx.HTTPError(f"{r.status_code}: {r.text[:200]}")
                if int(r.json()["revision"]) > self._revision:
                    return
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                stop.wait(left)
                return

    def step(self) -> None:
        """One report and its answer."""
        now = self.node.clock()
        try:
            events = [e for e in self.node.manager.events if e.time_s > self._events_sent]
            r = self._http.post(self.url, json={"links": self.reports(now), "events": [
                {"time_s": e.time_s, "kind": e.kind, "detail": e.detail[:2000]} for e in events[-1000:]]})
            if r.status_code != 200:
                raise httpx.HTTPError(f"{r.status_code}: {r.text[:200]}")
            self.apply(r.json())
            self._silent_since = None
            if events:
                self._events_sent = events[-1].time_s
        except (httpx.HTTPError, ValueError) as exc:
            if self._silent_since is None:
                self._silent_since = now
                self.node.manager.event(KMEEvent.CONTROLLER_UNREACHABLE, f"{self.url}: {exc}")
            elif now - self._silent_since > 3 * self.period_s:
                self.node.control_states, self.node.session_routes = {}, {}

    def reports(self, now: float) -> list[dict[str, Any]]:
        """This KME's view of each of its links."""
        store, out = self.node.store, []
        meta = store.meta()  # one read for every link's QBER, rate, lag and mode
        for link in self.node.config.links:
            history = self._history.setdefault(link.link_id, deque())
            qber, skr = meta.get(f"qber/{link.link_id}"), meta.get(f"skr/{link.link_id}")
            if skr:  # what the link makes (its QKD module's secret key rate), paused or not
                rate = float(skr)
            else:  # no QKD module's figure (a PRNG source): what reached the store over the window
                history.append((now, store.produced(link.link_id)))
                while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
                    history.popleft()
                (t0, first), (t1, last) = history[0], history[-1]
                rate = (last - first) * self.node.config.unit_bits / (t1 - t0) if t1 > t0 else 0.0
            lag, mode = feed_pace(meta, link.link_id)
            self._note_mode(link.link_id, mode, lag, meta.get(f"why/{link.link_id}"))
            out.append({"link_id": link.link_id, "stored_units": self._stock(link.link_id, now),
                        "key_rate_bps": max(rate, 0.0), "qber": float(qber) if qber else None,
                        "up": self.node.manager.peer_ok(link.peer), "lag_s": lag, "feed_mode": mode})
        return out

    def _stock(self, link_id: str, now: float) -> int:
        """The link's servable units here, counted at most every :data:`STOCK_REFRESH_S` (a count
        over a full pool costs milliseconds, and every KME reports every second)."""
        counted = self._stocks.get(link_id)
        if counted is None or now - counted[0] >= STOCK_REFRESH_S:
            counted = self._stocks[link_id] = (now, self.node.store.stock(link_id))
        return counted[1]

    def _note_mode(self, link_id: str, mode: str | None, lag: float | None, why: str | None = None) -> None:
        """Events when a link's feed cannot keep up (it samples its blocks) and when it has kept up
        again for :data:`REAL_TIME_AFTER_S`; a feed that switches back and forth raises one of each."""
        now = self.node.clock()
        lagging = link_id in self._lagging
        if mode == "sampled":
            self._photon_since.pop(link_id, None)
            if not lagging:
                self._lagging.add(link_id)
                reason = SampleReason(why) if why in set(SampleReason) else SampleReason.PLANNED
                self.node.manager.event(KMEEvent.LINK_LAGGING, f"link {link_id}: {reason.explain(lag)}; its blocks "
                                        "are sampled from the same statistics (finite-key length and QBER of the "
                                        "expected counts)")
        elif lagging and mode == "photon":
            since = self._photon_since.setdefault(link_id, now)
            if now - since >= REAL_TIME_AFTER_S:
                self._lagging.discard(link_id)
                self.node.manager.event(KMEEvent.LINK_REAL_TIME, f"link {link_id}: the key feed has kept real "
                                        f"time for {REAL_TIME_AFTER_S:g} s, photon by photon")

    def apply(self, answer: dict[str, Any]) -> None:
        """Take the controller's picture: link states, cuts, session routes, the period."""
        links = answer.get("links") or {}
        states: dict[str, LinkState] = {lid: state_from_dict(raw) for lid, raw in links.items()}
        self.node.control_states = states
        own = {lk.link_id for lk in self.node.config.links}
        cut = {lid for lid, raw in links.items() if lid in own and raw.get("cut")}
        for lid in cut ^ self._cut:
            self.node.store.set_meta(f"cut/{lid}", "1" if lid in cut else "0")
            kind = KMEEvent.LINK_CUT if lid in cut else KMEEvent.LINK_RESTORED
            self.node.manager.event(kind, f"link {lid} (controller)")
        self._cut = cut
        self.node.manager.out_of_service = set(cut)
        eve = {lid for lid, raw in links.items() if lid in own and raw.get("eavesdropper")}
        for lid in eve ^ self._eve:
            self.node.store.set_meta(f"eve/{lid}", "1" if lid in eve else "0")
        self._eve = eve
        self.node.drained = set(answer.get("drained") or [])
        self.node.sessions = [s for s in answer.get("sessions") or [] if isinstance(s, dict)]
        self.node.session_routes = {str(s["route"][-1]): [str(n) for n in s["route"]]
                                    for s in answer.get("sessions") or [] if s.get("route")}
        self.period_s = float(answer.get("period_s", self.period_s))
        revision = answer.get("revision")
        self._revision = revision if isinstance(revision, int) else None
