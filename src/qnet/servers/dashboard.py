"""The network dashboard: a web page an operator keeps open, served by the controller process.

Browsers do not present client certificates easily, so the dashboard is a second server of the
controller process: plain HTTP on 127.0.0.1 only, behind a random token, as Jupyter does. Open
``http://127.0.0.1:PORT/?token=TOKEN`` (``qnet up`` prints it); the first visit sets a cookie, and
scripts may send the token as the ``X-Qnet-Token`` header. Anything without the token gets 401.

Another page the operator's browser has open may send requests here, and the cookie goes with
them (SameSite does not tell ports apart: a page on another port of 127.0.0.1 is the same site), so
against cross-site request forgery every state-changing request (POST, DELETE...) must carry the
token in the ``X-Qnet-Token`` header, which a page of another origin cannot set without a CORS
preflight this server never grants, and an ``Origin``, when the browser sends one, of this very
server (403 otherwise). Only ``127.0.0.1`` and ``localhost`` are served as ``Host`` (against DNS
rebinding). Every answer has a Content-Security-Policy (scripts only with this page's nonce, no
framing: ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``, ``nosniff`` and
``Referrer-Policy: no-referrer`` (the token in the URL leaks nowhere); the page takes the token
from a meta tag and drops it from the address bar.

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
from html import escape
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qnet.control.controller import Controller
from qnet.errors import ForbiddenError, NotFoundError, UnauthorizedError
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.servers.errors import CONTROL_STATUS, install_error_handler
from qnet.servers.fcaps import add_operator_actions, sse_stream, stream_closing
from qnet.servers.identity import BodyLimit

__all__ = ["COOKIE", "DASHBOARD_BODY_BYTES", "HISTORY_SAMPLES", "create_dashboard"]

COOKIE = "qnet_dashboard_token"
HEADER = "x-qnet-token"
DASHBOARD_BODY_BYTES = 64 * 1024
"""The largest request body (its actions carry none): 413 beyond, before it is read."""
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
    app.add_middleware(BodyLimit, limit_of=lambda _: DASHBOARD_BODY_BYTES)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        response = HTMLResponse(_page(token, nonce), headers={"Cache-Control": "no-store",
                                                              "Content-Security-Policy": csp(nonce)})
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


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _token_check(token: str) -> Callable[[Request], None]:
    def same(given: str | None) -> bool:
        return secrets.compare_digest((given or "").encode(), token.encode())

    def check(request: Request) -> None:
        if not any(same(g) for g in (request.query_params.get("token"), request.headers.get(HEADER),
                                     request.cookies.get(COOKIE))):
            raise UnauthorizedError("authentication failed: open the URL with ?token= that qnet up printed")
        if request.method in SAFE_METHODS:
            return
        if not same(request.headers.get(HEADER)):
            raise ForbiddenError("a request that changes state must carry the token in the X-Qnet-Token header "
                                 "(a cookie alone could be another page's forgery)")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{request.headers.get('host', '')}":
            raise ForbiddenError(f"a request from another origin ({origin[:100]}) may not change state here")
    return check


def csp(nonce: str | None = None) -> str:
    """The Content-Security-Policy: this origin only, scripts only with ``nonce``, never framed."""
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    return (f"default-src 'none'; script-src {script}; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class SecurityHeaders:
    """ASGI middleware: the headers every dashboard answer carries (the page sets its own CSP, with
    its script's nonce; every other answer gets one that allows no script)."""

    HEADERS = ((b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
               (b"cross-origin-resource-policy", b"same-origin"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", csp().encode()))
                message = {**message, "headers": [*headers, *self.HEADERS]}
            await send(message)
        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def snapshot(ctl: Controller, store: AlarmStore, now_s: float, *, name: str = "qnet",
             positions: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """What the page draws: nodes with positions, links with their state, sessions with their
    routes, key used by each application (as their KMEs report it), alarms (active first, then the
    latest cleared) and the latest events."""
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
        "usage": sorted((row for rows in ctl.usage.values() for row in rows),
                        key=lambda r: (r["SAE_ID"], r["peer_SAE_ID"], r["api"])),
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


def _page(token: str, nonce: str) -> str:
    """The page, its script given ``nonce`` and the token in a meta tag (for its requests' header;
    another origin cannot read the page)."""
    html = (files("qnet.servers") / "static" / "dashboard.html").read_text(encoding="utf-8")
    meta = f'<meta name="qnet-token" content="{escape(token)}">\n'
    return html.replace("<script>", f'<script nonce="{nonce}">', 1).replace('<meta name="viewport"', meta +
                                                                             '<meta name="viewport"', 1)
