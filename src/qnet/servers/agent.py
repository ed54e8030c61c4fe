"""A KME's link to the network's controller (ITU-T Y.3804): every control period it reports each of
its links (servable units, key rate over the last period, the QBER its QKD module last estimated,
whether the peer answers) and applies the answer:

- every link's state as the controller sees it feeds this KME's relay routing, so all key managers
  route with the same picture (links cut, alarmed or silent are avoided);
- its own links that an operator cut are taken out of service: no keys are served or relayed over
  them, and their feeders drop what the link makes (``cut/LINK`` in the store's meta table);
- the routes of sessions that start here (OPEN_CONNECT at the controller) are used for their relays.

If the controller stops answering for three periods, the KME forgets its picture and routes on what it
sees itself, so the network keeps working without its controller.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import httpx

from qnet.control.controller import state_from_dict
from qnet.control.routing import LinkState

if TYPE_CHECKING:
    from qnet.servers.node import KmeNode

__all__ = ["ControlAgent"]

RATE_WINDOW_S = 60.0
"""The key rate reported is the mean over this long: links deliver key a block at a time."""

log = logging.getLogger("qnet.kme")


class ControlAgent:
    """Reports to the controller at ``url`` and applies its answers to ``node``."""

    def __init__(self, node: KmeNode, url: str, period_s: float, context: ssl.SSLContext) -> None:
        self.node, self.url, self.period_s = node, url.rstrip("/") + "/control/v1/reports", period_s
        self._http = httpx.Client(verify=context, timeout=max(period_s, 2.0))
        self._history: dict[str, deque[tuple[float, int]]] = {}
        self._silent_since: float | None = None
        self._events_sent = 0.0
        self._cut: set[str] = set()
        self._eve: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Report every period until ``stop`` is set."""
        while not stop.is_set():
            self.step()
            stop.wait(self.period_s)
        self._http.close()

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
                self.node.manager.event("controller-unreachable", f"{self.url}: {exc}")
            elif now - self._silent_since > 3 * self.period_s:
                self.node.control_states, self.node.session_routes = {}, {}

    def reports(self, now: float) -> list[dict[str, Any]]:
        """This KME's view of each of its links."""
        store, out = self.node.store, []
        for link in self.node.config.links:
            history = self._history.setdefault(link.link_id, deque())
            history.append((now, store.produced(link.link_id)))
            while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
                history.popleft()
            (t0, first), (t1, last) = history[0], history[-1]
            rate = (last - first) * self.node.config.unit_bits / (t1 - t0) if t1 > t0 else 0.0
            qber = store.get_meta(f"qber/{link.link_id}")
            out.append({"link_id": link.link_id, "stored_units": store.stock(link.link_id),
                        "key_rate_bps": max(rate, 0.0), "qber": float(qber) if qber else None,
                        "up": self.node.manager.peer_ok(link.peer)})
        return out

    def apply(self, answer: dict[str, Any]) -> None:
        """Take the controller's picture: link states, cuts, session routes, the period."""
        links = answer.get("links") or {}
        states: dict[str, LinkState] = {lid: state_from_dict(raw) for lid, raw in links.items()}
        self.node.control_states = states
        own = {lk.link_id for lk in self.node.config.links}
        cut = {lid for lid, raw in links.items() if lid in own and raw.get("cut")}
        for lid in cut ^ self._cut:
            self.node.store.set_meta(f"cut/{lid}", "1" if lid in cut else "0")
            self.node.manager.event("link-cut" if lid in cut else "link-restored", f"link {lid} (controller)")
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
