"""The KME server: ETSI GS QKD 014 v1.1.1 over HTTPS with mutual TLS, and the KM-to-KM endpoint.

FastAPI on uvicorn (httptools), TLS 1.3 only, client certificates required and checked against the
local CA. The caller's SAE_ID is its certificate's subject CN and nothing else, and the ETSI 014
routes serve only certificates of role ``sae``, the KM-to-KM routes only peer KMEs' (role ``kme``):
:mod:`qnet.servers.identity`. Bodies over :data:`SAE_BODY_BYTES` (:data:`KM_BODY_BYTES` KM-to-KM)
get 413 before they are read.

Every answer is 200, 400, 401 or 503 with the standard's error body ``{"message", "details"}``:
validation errors become 400, unknown paths and methods 400, and anything unexpected 503 (logged
here, never shown to the caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qnet.errors import (
    ForbiddenError,
    InvalidRequestError,
    PortInUseError,
    QNetError,
    UnauthorizedError,
)
from qnet.keys.events import KMEEvent, KMMessage
from qnet.keys.store import NOT_YET_ASSIGNED, MalformedMessageError, StoreError
from qnet.management.metrics import ControllerMetrics, KMEMetrics, RequestMetrics
from qnet.security.envelope import EnvelopeError, open_envelope
from qnet.servers.errors import ETSI014_STATUS, error_body, install_error_handler, status_of
from qnet.servers.fcaps import add_kme_inventory_route
from qnet.servers.identity import BodyLimit, PeerCertProtocol, caller, tls13
from qnet.servers.kme004 import ETSI004Driver, add_etsi004_routes
from qnet.servers.node import Broadcast, KMENode
from qnet.service.etsi014 import KMELimits, keys_body

__all__ = [
    "KM_BODY_BYTES",
    "SAE_BODY_BYTES",
    "PortInUseError",
    "RequestMetricsMiddleware",
    "add_metrics",
    "create_app",
    "listen_socket",
    "serve",
    "uvicorn_config",
]

log = logging.getLogger("qnet.kme")

API = "/api/v1/keys"
ASSIGN_WAIT_S = 3.0
"""How long a slave's dec_keys waits for the master KME's ``assign`` message still on its way."""
LARGE_UNITS = 2048
"""An enc_keys request for more units than this is served from a worker thread, off the event loop."""
LARGE_MESSAGE_BYTES = 256 * 1024
"""A KM-to-KM message larger than this is verified and applied in a worker thread."""
KM_BODY_BYTES = 16 * 1024 * 1024
"""The largest KM-to-KM message body: the largest relay (one request of 1,024 keys of 8,192 bits,
1 MiB of key, in base64 and signed) several times over."""
SAE_BODY_BYTES = 256 * 1024
"""The largest request body of the ETSI 014 API: dec_keys with max_key_per_request key_IDs is
about 60 kB."""
LIMITS = KMELimits()
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _decimal(value: object) -> object:
    """A query parameter's integer as the standard writes it: decimal digits only (not ``256.0``,
    ``+256``, `` 256`` or ``2_56``, which a lax parser would take)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise ValueError("must be an integer written in decimal digits")
    return value


def _json_integer(value: object) -> object:
    """A JSON body's integer: a number, never a string or a boolean (which a lax parser would take
    as 1). A number with no fraction (``256.0``) is an integer in JSON Schema, so it passes."""
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON integer, not a string or a boolean")
    return value


# ETSI GS QKD 014 sec. 6.2: number and size are integers; strings and booleans are refused
Number = Annotated[int, Field(ge=1, le=LIMITS.max_key_per_request), BeforeValidator(_json_integer)]
Size = Annotated[int, Field(ge=LIMITS.min_key_size, le=LIMITS.max_key_size, multiple_of=8),
                 BeforeValidator(_json_integer)]
QueryNumber = Annotated[int, Field(ge=1, le=LIMITS.max_key_per_request), BeforeValidator(_decimal)]
QuerySize = Annotated[int, Field(ge=LIMITS.min_key_size, le=LIMITS.max_key_size, multiple_of=8),
                      BeforeValidator(_decimal)]  # the constraints first: they stay in the OpenAPI schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyRequest(_Model):
    """Key request data format (ETSI GS QKD 014 sec. 6.2). This KME supports no mandatory extension
    (a request naming one is refused, as the standard requires); optional ones are ignored."""

    number: Number | None = None
    size: Size | None = None
    additional_slave_SAE_IDs: list[str] | None = Field(None, max_length=LIMITS.max_SAE_ID_count)
    extension_mandatory: list[dict[str, Any]] | None = Field(None, max_length=0)
    extension_optional: list[dict[str, Any]] | None = None


class KeyIDItem(_Model):
    """One entry of a Key IDs request."""

    key_ID: str = Field(pattern=UUID_PATTERN)
    key_ID_extension: dict[str, Any] | None = None


class KeyIDs(_Model):
    """Key IDs data format (sec. 6.4)."""

    key_IDs: list[KeyIDItem] = Field(min_length=1, max_length=LIMITS.max_key_per_request)
    key_IDs_extension: dict[str, Any] | None = None


class Status(BaseModel):
    """Status data format (sec. 6.1)."""

    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int
    status_extension: dict[str, Any] | None = None


class Key(BaseModel):
    """One key of a Key container: key_ID and the key in base64."""

    key_ID: str
    key: str


class KeyContainer(BaseModel):
    """Key container data format (sec. 6.3)."""

    keys: list[Key]
    key_container_extension: dict[str, Any] | None = None


class Error(BaseModel):
    """Error data format (sec. 6.5)."""

    message: str
    details: list[dict[str, Any]] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request format"},
    401: {"model": Error, "description": "Unauthorized: unknown SAE, or no key link to the named SAE"},
    503: {"model": Error, "description": "Error on the server side: not enough key, or the peer KME is unreachable"},
}


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, details), status_code=status)


def _once(request: Request, *names: str) -> None:
    """Each of these query parameters at most once (a repeated one is ambiguous: refused, not the last taken).

    Raises:
        InvalidRequestError: naming the repeated parameter.
    """
    for name in names:
        if len(request.query_params.getlist(name)) > 1:
            raise InvalidRequestError(f"bad request: the query parameter {name!r} is given more than once",
                                      [{"field": name, "problem": "repeated"}])


def _sae(request: Request) -> str:
    """The calling SAE's SAE_ID: its certificate's CN, of role ``sae`` (ETSI 014 has no 403: a
    certificate of another role is 401, as one the KME does not know)."""
    try:
        return caller(request, "sae")
    except ForbiddenError as exc:
        raise UnauthorizedError(exc.message) from None


def _kme(request: Request) -> str:
    """The calling peer KME's KME_ID: its certificate's CN, of role ``kme``."""
    return caller(request, "kme")


def _install_handlers(app: FastAPI) -> None:
    install_error_handler(app, ETSI014_STATUS)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        if any("extension_mandatory" in d["field"] for d in details):
            return _error(400, "unsupported mandatory extension: this KME supports none", details)
        return _error(400, "bad request: " + "; ".join(f"{d['field']}: {d['problem']}" for d in details[:3]), details)

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(400, f"bad request: {exc.detail}")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(503, "the KME could not serve this request; the error is in its log")


def create_app(node: KMENode) -> FastAPI:
    """The ASGI app of one KME."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        node.loop = asyncio.get_running_loop()
        warming = node.loop.create_task(node.keep_warm())
        yield
        warming.cancel()

    app = FastAPI(title=f"qnet KME {node.kme_id}", version="1.1.1", lifespan=lifespan,
                  description="ETSI GS QKD 014 v1.1.1 key delivery API (mutual TLS: the caller's SAE_ID is the "
                              "subject CN of its client certificate).", responses=_ERRORS)
    _install_handlers(app)
    svc = node.service
    driver = ETSI004Driver(svc, node.manager.local_sae, node.session_client(), relay=node.relay_keys,
                           assigns_sent=node.assigns_sent, dec=lambda *a: dec_body(*a),  # noqa: PLW0108 (defined below)
                           clock=node.clock)
    metrics = KMEMetrics(node.manager, clock=node.clock, usage=svc.usage, streams=driver.book.open_by_sae)
    add_metrics(app, metrics, metrics.http, _etsi014_method, caller, in_thread=True)
    add_kme_inventory_route(app, node, caller)
    app.add_middleware(BodyLimit, limit_of=lambda scope: KM_BODY_BYTES if scope["path"].startswith("/km/")
                       else SAE_BODY_BYTES, streamed=("/km/v1/messages",))
    assigned = Broadcast()
    node.manager.assigned = assigned.fire  # type: ignore[method-assign]

    async def call(fn: Callable[..., dict[str, Any]], *args: Any, large: bool = False) -> JSONResponse:
        # inline on the event loop: a store call takes well under a millisecond (a few for 128 keys),
        # and a hop to a worker thread plus the GIL hand-over cost more than they save (measured:
        # 15,000 keys/s inline against 12,000 in threads at 128 keys per request); a large request
        # (1024 keys of 8192 bits: 32,768 units) goes to a thread, so the loop keeps serving the
        # other SAEs and the KM-to-KM channel meanwhile
        return JSONResponse(await asyncio.to_thread(fn, *args) if large else fn(*args))

    async def dec_body(caller: str, master: str, key_ids: list[str], stream: str | None = None) -> dict[str, Any]:
        """dec_keys, waiting up to ASSIGN_WAIT_S for an assign message still on its way."""
        deadline = asyncio.get_running_loop().time() + ASSIGN_WAIT_S
        while True:
            try:
                return svc.dec_keys(caller, master, key_ids, stream=stream)
            except QNetError as exc:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or not exc.details or any(d.get("reason") != NOT_YET_ASSIGNED for d in exc.details):
                    raise
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(assigned.wait(), min(left, 0.2))

    async def dec(caller: str, master: str, key_ids: list[str]) -> JSONResponse:
        return JSONResponse(await dec_body(caller, master, key_ids))

    @app.get(f"{API}/{{slave_SAE_ID}}/status", response_model=Status, summary="Get status")
    async def status(slave_SAE_ID: str, request: Request) -> JSONResponse:
        return await call(svc.status, _sae(request), slave_SAE_ID)

    async def enc(*args: Any) -> JSONResponse:
        """enc_keys; the answer leaves once the assign message has reached the peer KME (or the
        relayed keys the slave's KME), so that the slave, told the key_IDs by its master, finds them
        reserved (it would wait otherwise)."""
        plan = svc.enc_plan(*args)
        if plan.relayed:
            return JSONResponse(keys_body(await metrics.relayed("started", node.relay_keys(plan))))
        units = plan.number * -(-plan.size // node.manager.unit_bits)
        response = await call(svc.deliver, plan, large=units > LARGE_UNITS)
        await node.assigns_sent(timeout_s=2.0 + plan.number * plan.size / 4e6)
        return response

    @app.get(f"{API}/{{slave_SAE_ID}}/enc_keys", response_model=KeyContainer, summary="Get key")
    async def enc_keys_get(slave_SAE_ID: str, request: Request, number: QueryNumber | None = Query(None),
                           size: QuerySize | None = Query(None)) -> JSONResponse:
        _once(request, "number", "size")
        return await enc(_sae(request), slave_SAE_ID, number, size)

    @app.post(f"{API}/{{slave_SAE_ID}}/enc_keys", response_model=KeyContainer, summary="Get key")
    async def enc_keys_post(slave_SAE_ID: str, request: Request, body: KeyRequest = Body(...)) -> JSONResponse:
        return await enc(_sae(request), slave_SAE_ID, body.number, body.size, body.additional_slave_SAE_IDs,
                         body.extension_mandatory)

    @app.get(f"{API}/{{master_SAE_ID}}/dec_keys", response_model=KeyContainer, summary="Get key with key IDs")
    async def dec_keys_get(master_SAE_ID: str, request: Request,
                           key_ID: str = Query(..., pattern=UUID_PATTERN)) -> JSONResponse:
        _once(request, "key_ID")
        return await dec(_sae(request), master_SAE_ID, [key_ID])

    @app.post(f"{API}/{{master_SAE_ID}}/dec_keys", response_model=KeyContainer, summary="Get key with key IDs")
    async def dec_keys_post(master_SAE_ID: str, request: Request, body: KeyIDs = Body(...)) -> JSONResponse:
        return await dec(_sae(request), master_SAE_ID, [k.key_ID for k in body.key_IDs])

    _km_routes(app, node, metrics)
    add_etsi004_routes(app, driver, _sae)
    node.key_streams = driver.book
    return app


def _km_routes(app: FastAPI, node: KMENode, metrics: KMEMetrics) -> None:
    """The KM-to-KM channel: a ping that keeps a peer's connection warm, and the signed messages."""

    def peer_of(request: Request) -> str:
        peer = _kme(request)
        if peer not in node.manager.links:
            raise ForbiddenError(f"{peer!r} is not a peer KME of {node.kme_id}")
        return peer

    @app.get("/km/v1/ping", include_in_schema=False)
    async def km_ping(request: Request) -> JSONResponse:
        peer_of(request)
        return JSONResponse({"kme": node.kme_id})

    @app.post("/km/v1/messages", include_in_schema=False)
    async def km_message(request: Request) -> JSONResponse:
        peer = peer_of(request)  # before the body is read: a caller that is no peer KME is refused at once
        try:
            data = await request.body()
        except ClientDisconnect:  # the peer gave up (it resends from its outbox), or sent too much (413)
            return _error(400, "the peer disconnected before its message arrived")
        try:
            return await _km_message(node, data, peer, metrics, offload=len(data) > LARGE_MESSAGE_BYTES)
        except asyncio.CancelledError:  # the server is stopping: the peer resends (transactions are whole)
            return _error(503, "the KME is stopping")



async def _km_message(node: KMENode, data: bytes, peer: str, metrics: KMEMetrics, *,
                      offload: bool = False) -> JSONResponse:
    """Verify and apply one KM-to-KM message; a large one (``offload``) is verified and applied in a
    worker thread, so that the event loop keeps serving meanwhile (relay hops stay on the loop)."""
    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs) if offload else fn(*args, **kwargs)

    try:
        opened = await run(open_envelope, data, receiver=node.kme_id, verify_keys=node.verify_keys,
                           now_s=node.clock(), tls_peer=peer)
    except EnvelopeError as exc:
        node.manager.refuse(exc.reason, peer)
        return _answer(EnvelopeError(f"KM-to-KM message refused: {exc.reason}"))
    kind = opened.body.get("type")
    try:
        if kind == KMMessage.RELAY:
            return JSONResponse(await metrics.relayed("forwarded", node.relay_hop(opened)))
        return JSONResponse(await run(node.keep_anchor if kind == KMMessage.ANCHOR else node.manager.handle, opened))
    except EnvelopeError as exc:
        node.manager.refuse(exc.reason, peer)
        return _answer(EnvelopeError(f"KM-to-KM message refused: {exc.reason}"))
    except MalformedMessageError as exc:
        log.warning("malformed message from %s: %s", peer, exc.message)
        return _answer(exc)
    except StoreError as exc:  # the peer's message does not fit this store: its fault (a sync mismatch)
        node.manager.event(KMEEvent.SYNC_MISMATCH, exc.message)
        return _answer(InvalidRequestError(exc.message, exc.details))
    except QNetError as exc:  # e.g. a relay this hop refused, or one that failed further on (named)
        return _answer(exc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # signed, but malformed
        log.warning("malformed %s message from %s: %s: %s", opened.body.get("type"), peer, type(exc).__name__, exc)
        return _answer(InvalidRequestError(f"malformed KM-to-KM message: {type(exc).__name__}: {exc}"[:300]))


def _answer(exc: QNetError) -> JSONResponse:
    """``exc`` as the KMEs answer it (:data:`~qnet.servers.errors.ETSI014_STATUS`)."""
    return JSONResponse(error_body(exc.message, exc.details), status_code=status_of(exc, ETSI014_STATUS) or 503)


# -- monitoring: GET /metrics (Prometheus text format) and the request middleware -------------------

_ETSI014_METHODS = frozenset({"status", "enc_keys", "dec_keys"})
_OTHER_PATHS = {"/km/v1/messages": "km_message", "/metrics": "metrics"}


def _etsi014_method(scope: Scope) -> str:
    """A request's name for the metrics: its ETSI 014 method (``enc_keys``...), ``km_message``,
    ``metrics`` or ``other`` (a bounded set: SAE_IDs never become label values)."""
    path = str(scope["path"])
    if path.startswith(API + "/"):
        method = path.rsplit("/", 1)[-1]
        return method if method in _ETSI014_METHODS else "other"
    return _OTHER_PATHS.get(path, "other")


def route_name(scope: Scope) -> str:
    """A request's name for the metrics: its HTTP method and route template (``GET /a/{id}``), or
    ``other`` for a path no route matched. Read after the app ran (the router puts the route in
    the scope)."""
    path = getattr(scope.get("route"), "path", None)
    return f"{scope['method']} {path}" if path else "other"


class RequestMetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request under the name ``name_of`` gives it.
    It sits inside the server-error middleware, so a request that raises unexpectedly is counted
    as answered 503 (what the apps' catch-all handlers answer) and as an internal error."""

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, name_of: Callable[[Scope], str]) -> None:
        self.app, self.metrics, self.name_of = app, metrics, name_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            self.metrics.failed(self.name_of(scope), time.perf_counter() - start)
            raise
        self.metrics.observe(self.name_of(scope), status, time.perf_counter() - start)


def add_metrics(app: FastAPI, metrics: KMEMetrics | ControllerMetrics, requests: RequestMetrics,
                name_of: Callable[[Scope], str], caller: Callable[[Request], str], *, in_thread: bool) -> None:
    """Serve ``metrics`` at ``GET /metrics`` to any caller with a certificate (``caller`` checks it)
    and count every request of ``app`` in ``requests``. With ``in_thread`` the collectors run in a
    worker thread (a KME's read its store), else on the event loop (the controller's read the
    controller, which only the loop may touch)."""
    app.add_middleware(RequestMetricsMiddleware, metrics=requests, name_of=name_of)

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        caller(request)
        accept = request.headers.get("accept")
        body, content_type = (await asyncio.to_thread(metrics.exposition, accept) if in_thread
                              else metrics.exposition(accept))
        return Response(body, media_type=content_type)


def uvicorn_config(node: KMENode, *, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn configuration of a KME: its port, TLS 1.3, client certificates required."""
    cfg = node.config
    return uvicorn.Config(create_app(node), host=cfg.host, port=cfg.port, http=PeerCertProtocol, loop="uvloop",
                          ssl_certfile=str(cfg.tls.cert), ssl_keyfile=str(cfg.tls.key), ssl_ca_certs=str(cfg.tls.ca),
                          ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_context_factory=tls13, log_level=log_level,
                          access_log=False, timeout_keep_alive=30, timeout_graceful_shutdown=3)


def listen_socket(host: str, port: int, what: str, *, hint: str = "") -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, for a server to serve on.

    Binding here, before anything else starts, turns a port in use into one clear error (and no
    feeder or thread is left behind); uvicorn then serves on this very socket, so no other process
    can take the port in between.

    Raises:
        PortInUseError: if another process holds the port.
        QNetError: if the address cannot be bound for another reason (e.g. not an address of this host).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT is no conflict
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError([(host, port, what)], hint) from None
        raise QNetError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None
    return sock


def _interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def serve(node: KMENode, *, feeders: bool = True) -> None:
    """Run one KME until SIGINT or SIGTERM, then stop it cleanly (its feeders and threads too).

    Both signals get a handler here, SIGINT included (a shell starts background jobs with SIGINT
    ignored); uvicorn shuts down gracefully on either and then re-raises it, which lands in that
    handler as :class:`KeyboardInterrupt`, after which :meth:`KMENode.stop` runs, with further
    signals ignored so that nothing cuts it short.

    Raises:
        PortInUseError: if the KME's port is taken (before anything starts).
        KeyboardInterrupt: on SIGINT or SIGTERM, once the KME has stopped.
    """
    cfg = node.config
    sock = listen_socket(cfg.host, cfg.port, f"KME of {node.kme_id}",
                         hint="stop that process (a qnet network: qnet down --state-dir DIR), or make this "
                              "deployment on other ports (qnet pki init DIR --base-port N)")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    sys.setswitchinterval(0.0005)  # request threads hand the GIL on quickly: latency, not throughput, rules here
    try:
        node.start(feeders=feeders)
        uvicorn.Server(uvicorn_config(node)).run(sockets=[sock])
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        try:
            node.stop()
        finally:
            sock.close()
