"""The controller server: the control layer's API (ITU-T Y.3804) over HTTPS with mutual TLS.

An adapter over :class:`qnet.control.controller.Controller`; who may do what comes from the caller's
certificate: its role (subject OU, set by the CA) and its name (subject CN) together
(:mod:`qnet.servers.identity`), so an SAE named like a node or an operator has neither's rights:

=========================================  ===========================  =======================================
endpoint                                    caller                       what
=========================================  ===========================  =======================================
``POST /control/v1/reports``                a KME (role kme, CN a node)  its links' state; answers every link's
``GET  /control/v1/links``                  anyone with a certificate    links: state, alarms, cut
``POST /control/v1/links/{id}/cut``         an operator                  take a link out of service
``POST /control/v1/links/{id}/restore``     an operator                  put it back
``GET  /control/v1/routes?src=&dst=``       anyone                       the route a relay takes now
``GET  /control/v1/events?since=``          anyone                       alarms, cuts, route changes
``/control/v1/sessions...``                 an SAE, its KME, operators   ETSI GS QKD 004 sessions
                                                                         (:mod:`qnet.servers.sessions`)
=========================================  ===========================  =======================================

GET_KEY of a session is served by the KMEs (:mod:`qnet.servers.kme004`); each KME learns the
sessions' routes in its report's answer. Errors are
``{"message": ...}`` with 400, 401, 403, 404, 409, 413 (a body over :data:`CONTROL_BODY_BYTES`) or
503; nothing unexpected reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from qnet.control.controller import Controller, LinkReport
from qnet.control.routing import RoutePolicy, Topology
from qnet.errors import ForbiddenError, NoRouteError, UnavailableError
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.management.metrics import ControllerMetrics
from qnet.servers.config import ControllerConfig
from qnet.servers.dashboard import create_dashboard
from qnet.servers.errors import CONTROL_STATUS, install_error_handler
from qnet.servers.fcaps import add_management_routes, stream_closing, wire
from qnet.servers.identity import BodyLimit, PeerCertProtocol, caller, tls13
from qnet.servers.kme import add_metrics, route_name
from qnet.servers.sessions import add_session_routes

__all__ = ["EventStreamServer", "controller_from_config", "create_app", "serve"]

log = logging.getLogger("qnet.controller")
API = "/control/v1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EventIn(_Model):
    """An event a KME saw (no key material)."""

    time_s: float
    kind: str = Field(max_length=64)
    detail: str = Field(max_length=2000)
    seq: int | None = Field(default=None, ge=1)
    """Its number at the KME (from 1 at each start): a report sent again is taken once."""
    count: int = Field(default=1, ge=1, le=10**9)
    """How many occurrences it stands for (a summary of repeats)."""


class UsageIn(_Model):
    """Key a KME handed one of its applications, for use with a peer, over an API."""

    SAE_ID: str = Field(max_length=64)
    peer_SAE_ID: str = Field(max_length=64)
    api: str = Field(max_length=16)
    keys: int = Field(ge=0)
    bits: int = Field(ge=0)


class StreamUsageIn(_Model):
    """Key bits a KME delivered to its application on one ETSI 004 stream."""

    Key_stream_ID: str = Field(max_length=64)
    SAE_ID: str = Field(max_length=64)
    bits: int = Field(ge=0)


class ReportIn(_Model):
    """A KME's report: one entry per link, as :class:`~qnet.control.controller.LinkReport`, and the
    events it saw since its last report."""

    links: list[dict[str, Any]] = Field(max_length=10_000)
    events: list[EventIn] = Field(default_factory=list, max_length=1000)
    boot: str | None = Field(default=None, max_length=64)
    """The KME's start (its events' seq count from 1 at each)."""
    usage: list[UsageIn] = Field(default_factory=list, max_length=10_000)
    streams: list[StreamUsageIn] = Field(default_factory=list, max_length=10_000)


CONTROL_BODY_BYTES = 1024 * 1024
"""The largest request body (a KME's report of a few hundred links and events is tens of kB)."""
MAX_CHANGES_WAIT_S = 60.0
"""The longest a KME may wait on the controller's changes in one request."""


def controller_from_config(config: ControllerConfig) -> Controller:
    """The controller's brain for a configuration."""
    net = config.network
    topology = Topology(tuple(net.nodes), tuple((a, b, lid) for a, b, lid in net.links))
    policy = RoutePolicy(net.max_hops, frozenset(net.excluded_nodes), net.min_key_rate_bps)
    return Controller(topology, policy, saes=net.saes, access=net.access, capacity_bps=config.capacity_bps,
                      control_period_s=config.control_period_s, qber_threshold=config.qber_threshold,
                      low_water_units=config.low_water_units)


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _install_handlers(app: FastAPI) -> None:
    install_error_handler(app, CONTROL_STATUS)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _fail(400, "bad request: " + "; ".join(problems[:3]))

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _fail(404 if exc.status_code == 404 else 400, f"bad request: {exc.detail}")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _fail(503, "the controller could not serve this request; the error is in its log")


def create_app(ctl: Controller, *, operators: frozenset[str] = frozenset({"operator"}),
               clock: Callable[[], float] = time.time, alarms: AlarmStore | None = None) -> FastAPI:
    """The ASGI app of the controller (alarms kept in ``alarms``, in memory if None)."""
    store, broker = alarms or AlarmStore(), EventBroker()
    wire(ctl, store, broker)
    app = FastAPI(title="qnet controller", version="1", lifespan=_ticking(ctl, clock),
                  description="ITU-T Y.3804 control layer of a QKD network; session control after ETSI GS QKD "
                              "004 (mutual TLS: the caller is its certificate's CN).")
    _install_handlers(app)
    metrics = ControllerMetrics(ctl, clock=clock)
    add_metrics(app, metrics, metrics.http, route_name, caller, in_thread=False)
    app.add_middleware(BodyLimit, limit_of=lambda _: CONTROL_BODY_BYTES)
    nodes = frozenset(ctl.topology.nodes)

    def operator(request: Request) -> str:
        who = caller(request, "operator")
        if who not in operators:
            raise ForbiddenError(f"{who!r} is not an operator of this network")
        return who

    @app.post(f"{API}/reports")
    async def reports(body: ReportIn, request: Request) -> JSONResponse:
        node = caller(request, "kme")
        if node not in nodes:
            raise ForbiddenError(f"{node!r} is not a KME of this network")
        now = clock()
        ctl.take_usage(node, [u.model_dump() for u in body.usage], [u.model_dump() for u in body.streams],
                       now if "streams" in body.model_fields_set else None)
        return JSONResponse(ctl.answer(node, [LinkReport.from_dict(r) for r in body.links], now,
                                       [(e.time_s, e.kind, e.detail, e.seq, e.count) for e in body.events],
                                       boot=body.boot))

    changed = _Changes(ctl)

    @app.get(f"{API}/changes")
    async def changes(request: Request, after: int = Query(..., ge=0),
                      wait_s: float = Query(0.0, ge=0.0, le=MAX_CHANGES_WAIT_S)) -> JSONResponse:
        """Answers once the controller's picture has changed since revision ``after`` (a cut, a
        route, an alarm), or after ``wait_s``: a KME waits here between reports, so that it hears
        of a change at once rather than at its next report."""
        if caller(request, "kme") not in nodes:
            raise ForbiddenError("only the network's KMEs wait on its changes")
        await changed.after(after, wait_s)
        return JSONResponse({"revision": ctl.revision})

    @app.get(f"{API}/links")
    async def links(request: Request) -> JSONResponse:
        caller(request)
        now = clock()
        states = ctl.states(now)
        return JSONResponse({"time_s": now, "links": [
            {"link_id": lid, "ends": list(link.ends), "cut": link.cut, "alarms": sorted(link.alarms),
             "capacity_bps": link.capacity_bps if link.capacity_bps != float("inf") else None,
             **ctl.directive(now)["links"][lid], "up": states[lid].up}
            for lid, link in ctl.links.items()]})

    @app.get(f"{API}/routes")
    async def routes(request: Request, src: str = Query(...), dst: str = Query(...)) -> JSONResponse:
        caller(request)
        try:
            return JSONResponse({"src": src, "dst": dst, "route": ctl.route(src, dst, clock())})
        except NoRouteError as exc:
            raise UnavailableError(str(exc)) from None

    @app.get(f"{API}/events")
    async def events(request: Request, since: float = Query(0.0)) -> JSONResponse:
        caller(request)
        return JSONResponse({"events": [e.as_dict() for e in ctl.events if e.time_s >= since]})

    add_session_routes(app, ctl, operator, clock)
    add_management_routes(app, ctl, store, broker, caller=caller, operator=operator, clock=clock)
    return app


class _Changes:
    """Wakes the requests waiting on the controller's revision; everything here runs on the
    server's one event loop (the controller is called from its handlers and its ticker only)."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl, self._event = ctl, asyncio.Event()
        ctl.listeners.append(lambda _: self._wake())

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def after(self, revision: int, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.ctl.revision <= revision and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)


def _ticking(ctl: Controller, clock: Callable[[], float]) -> Callable[[FastAPI], Any]:
    """A lifespan that ticks the controller every period: key managers that fell silent (node
    unreachable), links down with them, sessions re-routed."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def ticking() -> None:
            while True:
                await asyncio.sleep(ctl.period_s)
                ctl.tick(clock())
                ctl.reroute(clock())
        task = asyncio.get_running_loop().create_task(ticking())
        yield
        task.cancel()
    return lifespan


def serve(config: ControllerConfig) -> None:
    """Run the controller, and its dashboard if the configuration has a port for it, until interrupted.

    Both servers run on one event loop and share the controller, its alarm store and its events.
    """
    ctl = controller_from_config(config)
    store = AlarmStore(config.store_url or "sqlite://")
    app = create_app(ctl, operators=frozenset(config.operators), alarms=store)
    main = EventStreamServer(uvicorn.Config(
        app, host=config.host, port=config.port, http=PeerCertProtocol, loop="uvloop",
        ssl_certfile=str(config.tls.cert), ssl_keyfile=str(config.tls.key), ssl_ca_certs=str(config.tls.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_context_factory=tls13, log_level="warning", access_log=False,
    ), stream_closing(app))
    if config.dashboard_port is None:
        main.run()
        return
    dashboard = create_dashboard(ctl, store, EventBroker(), token=config.dashboard_token or secrets.token_urlsafe(16),
                                 clock=time.time, name=config.name, positions=config.positions)
    beside = EventStreamServer(uvicorn.Config(dashboard, host="127.0.0.1", port=config.dashboard_port, loop="uvloop",
                                              log_level="warning", access_log=False),
                               stream_closing(dashboard), signals=False)

    async def both() -> None:
        async def controller_then_stop() -> None:
            try:
                await main.serve()
            finally:
                beside.should_exit = True
        await asyncio.gather(controller_then_stop(), beside.serve())

    uvloop.run(both())


class EventStreamServer(uvicorn.Server):
    """A uvicorn server that, when it starts to shut down, first ends its app's event streams
    (``closing``, from :func:`~qnet.servers.fcaps.stream_closing`): each sends its last event and
    chunk, so that the shutdown does not wait on them forever nor cut them off mid-stream.

    Args:
        config: uvicorn's configuration.
        closing: the app's stream-closing event.
        signals: whether it handles SIGINT and SIGTERM itself; the dashboard leaves them to the
            controller's server beside it, which stops it when it stops.
    """

    def __init__(self, config: uvicorn.Config, closing: asyncio.Event, *, signals: bool = True) -> None:
        super().__init__(config)
        self.closing, self.signals = closing, signals

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.closing.set()  # before uvicorn waits for the connections to finish their responses
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.signals:
            yield
            return
        with super().capture_signals():
            yield
