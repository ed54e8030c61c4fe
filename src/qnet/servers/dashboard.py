"""The network dashboard: a web page an operator keeps open, served by the controller process.

Browsers do not present client certificates easily, so the dashboard is a second server of the
controller process: plain HTTP on 127.0.0.1 only, behind a random token, as Jupyter does. Open
``http://127.0.0.1:PORT/?token=TOKEN`` (``qnet up`` prints it); the first visit sets a cookie, and
scripts may send the token as the ``X-Qnet-Token`` header. Anything without the token gets 401.

=====================================================  ==============================================
endpoint                                                what
=====================================================  ==============================================
``GET  /``                                              the page (HTML, CSS and JS in one file)
``GET  /api/state``                                     nodes (map positions), links, sessions, alarms,
                                                        recent events
``GET  /api/history?link=ID``                           a link's key rate and QBER, one sample a period
``GET  /api/stream``                                    server-sent events: every controller event, and
                                                        ``closing`` when the server stops
``POST /api/links/{id}/cut`` | ``/restore``             take a link out of service / put it back
``POST|DELETE /api/links/{id}/eavesdropper``            start / stop a simulated eavesdropper
``POST|DELETE /api/nodes/{node}/drain``                 drain / undrain a node
=====================================================  ==============================================

It shares the controller's :class:`~qnet.control.controller.Controller` and alarm store, and listens
to the controller's events itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from qnet.control.controller import Controller
from qnet.errors import NotFoundError, UnauthorizedError
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.servers.errors import CONTROL_STATUS, install_error_handler
from qnet.servers.fcaps import add_operator_actions, sse_stream, stream_closing

__all__ = ["COOKIE", "HISTORY_SAMPLES", "create_dashboard"]

COOKIE = "qnet_dashboard_token"
HEADER = "x-qnet-token"
HISTORY_SAMPLES = 900
"""Samples kept per link (15 minutes at one a second)."""


def create_dashboard(ctl: Controller, store: AlarmStore, broker: EventBroker, *, token: str,
                     clock: Callable[[], float] = time.time, name: str = "qnet",
                     positions: Mapping[str, tuple[float, float]] | None = None) -> FastAPI:
    """The dashboard's ASGI app.

    Args:
        ctl: the controller it shows and acts on (the controller server's own).
        store: the controller's alarm store.
        broker: where it fans the controller's events out to its streams (its own: it registers a
            listener on ``ctl``).
        token: the secret every request must carry.
        clock: wall-clock time, s.
        name: the network's name, for the title bar.
        positions: node -> (x, y) in [0, 1], y downwards; a circle for nodes not in it.

    Raises:
        ValueError: for a token shorter than 16 characters.
    """
    if len(token) < 16:
        raise ValueError("the dashboard's token must have at least 16 characters")
    history = _History(ctl, clock)
    ctl.listeners.append(lambda event: broker.publish({"type": "event", **event.as_dict()}))
    app = FastAPI(title="qnet dashboard", lifespan=history.lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(_token_check(token))])

    install_error_handler(app, CONTROL_STATUS)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        response = HTMLResponse(_page(), headers={"Cache-Control": "no-store"})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/api/state")
    async def state() -> JSONResponse:
        return JSONResponse(snapshot(ctl, store, clock(), name=name, positions=positions or {}))

    @app.get("/api/history")
    async def link_history(link: str = Query(...)) -> JSONResponse:
        return JSONResponse({"link_id": link, "qber_threshold": ctl.qber_threshold, "points": history.of(link)})

    @app.get("/api/stream")
    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(sse_stream(broker, request, "qnet dashboard events", closing=stream_closing(app)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    add_operator_actions(app, "/api", ctl, clock, lambda _: "the dashboard")  # the token is checked first
    return app


def _token_check(token: str) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        given = (request.query_params.get("token") or request.headers.get(HEADER)
                 or request.cookies.get(COOKIE) or "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise UnauthorizedError("authentication failed: open the URL with ?token= that qnet up printed")
    return check


def snapshot(ctl: Controller, store: AlarmStore, now_s: float, *, name: str = "qnet",
             positions: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """What the page draws: nodes with positions, links with their state, sessions with their
    routes, alarms (active first, then the latest cleared) and the latest events."""
    nodes = list(ctl.topology.nodes)
    saes: dict[str, list[str]] = {n: [] for n in nodes}
    for sae, node in ctl.saes.items():
        saes.setdefault(node, []).append(sae)
    spots = {**circle(nodes), **(positions or {})}
    links = ctl.directive(now_s)["links"]
    alarms = store.alarms(limit=100)
    return {
        "name": name, "time_s": now_s, "period_s": ctl.period_s, "qber_threshold": ctl.qber_threshold,
        "low_water_units": ctl.low_water_units,
        "nodes": [{"name": n, "x": spots[n][0], "y": spots[n][1], "drained": n in ctl.drained,
                   "saes": sorted(saes.get(n, []))} for n in nodes],
        "links": [{"link_id": lid, "ends": list(link.ends), "up": links[lid]["up"], "cut": link.cut,
                   "eavesdropper": link.eavesdropper, "alarms": sorted(link.alarms),
                   **_measured(links[lid] if link.reports else {})}
                  for lid, link in ctl.links.items()],
        "sessions": [s.as_dict() for s in ctl.sessions.values()],
        "alarms": [a.as_dict() for a in alarms if a.cleared_s is None]
        + [a.as_dict() for a in alarms if a.cleared_s is not None][:30],
        "events": [e.as_dict() for e in list(ctl.events)[-40:]][::-1],
    }


def _measured(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a link's reports say (None before any): stock, key rate, QBER, and how far its key feed
    is behind real time (``lag_s``, s) and how it runs (``feed_mode``: ``photon`` or ``sampled``),
    None where the key managers do not say."""
    return {key: state.get(key) for key in ("stored_units", "key_rate_bps", "qber", "lag_s", "feed_mode")}


def circle(nodes: list[str]) -> dict[str, tuple[float, float]]:
    """Nodes evenly on a circle in the unit square, the first at the top, clockwise."""
    n = max(len(nodes), 1)
    return {node: (round(0.5 + 0.5 * math.sin(2 * math.pi * i / n), 4),
                   round(0.5 - 0.5 * math.cos(2 * math.pi * i / n), 4)) for i, node in enumerate(nodes)}


class _History:
    """Each link's key rate and QBER, sampled every control period (a ring buffer per link)."""

    def __init__(self, ctl: Controller, clock: Callable[[], float]) -> None:
        self.ctl, self.clock = ctl, clock
        self.samples: dict[str, deque[tuple[float, float | None, float | None]]] = {
            lid: deque(maxlen=HISTORY_SAMPLES) for lid in ctl.links}

    def sample(self) -> None:
        now = self.clock()
        for lid, state in self.ctl.states(now).items():
            heard = bool(self.ctl.links[lid].reports)
            rate = state.key_rate_bps if heard and math.isfinite(state.key_rate_bps) else None
            self.samples[lid].append((now, rate, state.qber if heard else None))

    def of(self, link_id: str) -> list[tuple[float, float | None, float | None]]:
        """(time s, key rate bit/s, QBER) samples of a link, oldest first.

        Raises:
            NotFoundError: for an unknown link.
        """
        if link_id not in self.samples:
            raise NotFoundError(f"no link {link_id!r} in this network")
        return list(self.samples[link_id])

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        async def sampling() -> None:
            while True:
                self.sample()
                await asyncio.sleep(self.ctl.period_s)
        task = asyncio.get_running_loop().create_task(sampling())
        yield
        task.cancel()


def _page() -> str:
    return (files("qnet.servers") / "static" / "dashboard.html").read_text(encoding="utf-8")
