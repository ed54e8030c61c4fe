"""A key manager's side of the control protocol (ITU-T Y.3804): what it tells the controller about
its links each control period, and what it takes from the answer. The live KME's agent
(``qnet.servers.agent``) carries both over HTTPS; ``qnet simulate --key-managers`` calls the
controller in the same process. The same object decides in both.

What a KME reports per link: servable units, the key rate (its QKD module's figure, else what
reached the store over the last :data:`RATE_WINDOW_S`), the QBER its module last estimated, whether
the peer answers, and how its feed keeps pace (lag, photon-level or sampled: an event when it falls
behind and when it has kept up again for :data:`REAL_TIME_AFTER_S`).

What it takes from the answer:

- every link's state feeds this KME's relay routing, so all key managers route with the same
  picture (links cut, alarmed or silent are avoided);
- its own links that an operator cut are taken out of service: no keys are served or relayed over
  them, and their feeders drop what the link makes (``cut/LINK`` in the store's meta table;
  ``eve/LINK`` for an eavesdropper the operator put on it);
- drained nodes (no relay passes through them) and the routes of sessions that start here
  (OPEN_CONNECT at the controller), which its relays use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from qnet.control.controller import state_from_dict
from qnet.control.routing import RelayRouting
from qnet.keys.events import KMEEvent
from qnet.keys.manager import KeyManager
from qnet.keys.relayer import Relayer
from qnet.keys.source import SampleReason

__all__ = ["RATE_WINDOW_S", "REAL_TIME_AFTER_S", "STOCK_REFRESH_S", "KMEControlView", "feed_pace"]

REAL_TIME_AFTER_S = 60.0
"""A lagging link is back at real time once its feed has run photon by photon this long."""
RATE_WINDOW_S = 60.0
"""The key rate reported is the mean over this long: links deliver key a block at a time."""
STOCK_REFRESH_S = 3.0
"""A link's stock in the reports is at most this old."""


def feed_pace(meta: Mapping[str, str], link_id: str) -> tuple[float | None, str | None]:
    """(seconds the link's key feed is behind real time, ``"photon"`` or ``"sampled"``), as its
    feeder last wrote them in the store's ``meta`` (:meth:`KeyStore.meta`); None where it has not
    (not a simulated link, or not started)."""
    lag, mode = meta.get(f"lag/{link_id}"), meta.get(f"mode/{link_id}")
    return (float(lag) if lag else None), (mode or ("photon" if lag else None))


class KMEControlView:
    """One KME's reports to the controller and its reading of the answers.

    Args:
        manager: the key manager (its store, links, events and links out of service).
        routing: the relay's routing (takes the controller's picture of every link).
        relayer: the relay (takes drained nodes and session routes).
        unit_bits: the store's unit (for the rate of a link without a QKD module's figure).
    """

    def __init__(self, manager: KeyManager, routing: RelayRouting, relayer: Relayer, *, unit_bits: int) -> None:
        self.manager, self.routing, self.relayer, self.unit_bits = manager, routing, relayer, unit_bits
        self.clock: Callable[[], float] = manager.clock
        self.sessions: list[dict[str, Any]] = []
        """The sessions that start here, as the controller last described them."""
        self._history: dict[str, deque[tuple[float, int]]] = {}
        self._events_sent = 0  # the seq of the last event the controller took
        self._cut: set[str] = set()
        self._eve: set[str] = set()
        self._lagging: set[str] = set()
        self._photon_since: dict[str, float] = {}
        self._stocks: dict[str, tuple[float, int]] = {}
        self.usage: Callable[[], dict[str, Any]] = dict
        """What the report says of key handed to applications (``usage``, ``streams``: set by the node)."""

    def report(self, now: float) -> dict[str, Any]:
        """The body of this period's report: each link's view and the events not yet sent (each
        with its ``seq``, so that the controller takes it once however often the report is sent,
        and its ``count``, more than 1 for a summary of repeats)."""
        self.manager.summarise_repeats(now)
        events = [e for e in self.manager.events if e.seq > self._events_sent][-1000:]
        return {"links": self.reports(now), "boot": self.manager.boot, "events": [
            {"time_s": e.time_s, "kind": e.kind, "detail": e.detail[:2000], "seq": e.seq, "count": e.count}
            for e in events], **self.usage()}

    def answered(self, report: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
        """The controller took ``report`` and answered: its events are sent; take the picture."""
        self.apply(answer)
        if report["events"]:
            self._events_sent = max(self._events_sent, report["events"][-1]["seq"])

    def reports(self, now: float) -> list[dict[str, Any]]:
        """This KME's view of each of its links (the controller's ``LinkReport`` fields)."""
        store, out = self.manager.store, []
        meta = store.meta()  # one read for every link's QBER, rate, lag and mode
        for link in self.manager.by_id.values():
            history = self._history.setdefault(link.link_id, deque())
            qber, skr = meta.get(f"qber/{link.link_id}"), meta.get(f"skr/{link.link_id}")
            if skr:  # what the link makes (its QKD module's secret key rate), paused or not
                rate = float(skr)
            else:  # no QKD module's figure (a PRNG source): what reached the store over the window
                history.append((now, store.produced(link.link_id)))
                while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
                    history.popleft()
                (t0, first), (t1, last) = history[0], history[-1]
                rate = (last - first) * self.unit_bits / (t1 - t0) if t1 > t0 else 0.0
            lag, mode = feed_pace(meta, link.link_id)
            self._note_mode(link.link_id, mode, lag, meta.get(f"why/{link.link_id}"))
            out.append({"link_id": link.link_id, "stored_units": self._stock(link.link_id, now),
                        "key_rate_bps": max(rate, 0.0), "qber": float(qber) if qber else None,
                        "up": self.manager.peer_ok(link.peer), "lag_s": lag, "feed_mode": mode})
        return out

    def _stock(self, link_id: str, now: float) -> int:
        """The link's servable units here, counted at most every :data:`STOCK_REFRESH_S` (a count
        over a full pool costs milliseconds, and every KME reports every second)."""
        counted = self._stocks.get(link_id)
        if counted is None or now - counted[0] >= STOCK_REFRESH_S:
            counted = self._stocks[link_id] = (now, self.manager.store.stock(link_id))
        return counted[1]

    def _note_mode(self, link_id: str, mode: str | None, lag: float | None, why: str | None = None) -> None:
        """Events when a link's feed cannot keep up (it samples its blocks) and when it has kept up
        again for :data:`REAL_TIME_AFTER_S`; a feed that switches back and forth raises one of each."""
        now = self.clock()
        lagging = link_id in self._lagging
        if mode == "sampled":
            self._photon_since.pop(link_id, None)
            if not lagging:
                self._lagging.add(link_id)
                reason = SampleReason(why) if why in set(SampleReason) else SampleReason.PLANNED
                self.manager.event(KMEEvent.LINK_LAGGING, f"link {link_id}: {reason.explain(lag)}; its blocks "
                                   "are sampled from the same statistics (finite-key length and QBER of the "
                                   "expected counts)")
        elif lagging and mode == "photon":
            since = self._photon_since.setdefault(link_id, now)
            if now - since >= REAL_TIME_AFTER_S:
                self._lagging.discard(link_id)
                self.manager.event(KMEEvent.LINK_REAL_TIME, f"link {link_id}: the key feed has kept real "
                                   f"time for {REAL_TIME_AFTER_S:g} s, photon by photon")

    def apply(self, answer: Mapping[str, Any]) -> None:
        """Take the controller's picture: link states, cuts, eavesdroppers, drained nodes, session routes."""
        links = answer.get("links") or {}
        self.routing.states = {lid: state_from_dict(raw) for lid, raw in links.items()}
        store, own = self.manager.store, set(self.manager.by_id)
        cut = {lid for lid, raw in links.items() if lid in own and raw.get("cut")}
        for lid in cut ^ self._cut:
            store.set_meta(f"cut/{lid}", "1" if lid in cut else "0")
            kind = KMEEvent.LINK_CUT if lid in cut else KMEEvent.LINK_RESTORED
            self.manager.event(kind, f"link {lid} (controller)")
        self._cut = cut
        self.manager.out_of_service = set(cut)
        eve = {lid for lid, raw in links.items() if lid in own and raw.get("eavesdropper")}
        for lid in eve ^ self._eve:
            store.set_meta(f"eve/{lid}", "1" if lid in eve else "0")
        self._eve = eve
        self.relayer.drained = set(answer.get("drained") or [])
        self.sessions = [s for s in answer.get("sessions") or [] if isinstance(s, dict)]
        self.relayer.session_routes = {str(s["route"][-1]): [str(n) for n in s["route"]]
                                       for s in self.sessions if s.get("route")}

    def forget(self) -> None:
        """The controller is silent: route on what this KME sees itself."""
        self.routing.states, self.relayer.session_routes = {}, {}
