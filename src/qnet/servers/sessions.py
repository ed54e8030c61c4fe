"""The controller's session routes: ETSI GS QKD 004 key streams' admission, connection, key_IDs, CLOSE.

An adapter over :class:`qnet.control.controller.Controller` (admission, routes) and
:class:`qnet.control.streams.StreamKeys` (key_IDs by index). Who may act for an SAE: the SAE itself,
the KME of its node (a KME serving ETSI 004 acts for its applications), or an operator.

=============================================  ==========================  ===================================
endpoint                                        caller                      what
=============================================  ==========================  ===================================
``POST /control/v1/sessions``                   for the opener              OPEN_CONNECT: admit a key stream
``POST /control/v1/sessions/{ksid}/connect``    for the SAE connecting      OPEN_CONNECT at the other end
``GET  /control/v1/sessions[/{ksid}]``          anyone                      open sessions and their routes
``POST /control/v1/sessions/{ksid}/keys``       the source's KME            key_IDs handed out, by index
``GET  /control/v1/sessions/{ksid}/keys``       the destination's KME       those key_IDs (long poll)
``DELETE /control/v1/sessions/{ksid}``          for either end              CLOSE: the capacity is freed
=============================================  ==========================  ===================================

A refused admission answers 503 with one detail saying why: ``{"reason": "capacity", "hop",
"requested_bps", "available_bps"}`` or ``{"reason": "no_route"}``, so a KME can answer ETSI 004's
QOS_NOT_MET (with the rate that is left as its counter-proposal) or NO_QKD_CONNECTION_AVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from qnet.control.controller import Controller, Session
from qnet.errors import CapacityError, ForbiddenError, NoRouteError
from qnet.servers.identity import caller, role_of

__all__ = ["MAX_KEYS_WAIT_S", "OpenConnect", "QoSIn", "add_session_routes"]

API = "/control/v1"
MAX_KEYS_WAIT_S = 30.0
"""The longest a destination's KME may wait for a stream's key_IDs in one request."""
MAX_BPS = 1e12
"""The largest key rate a QoS may name (1 Tbit/s: far beyond any QKD link)."""
MAX_SECONDS = 1e7
"""The longest TTL (about four months)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QoSIn(_Model):
    """A session's quality of service: the rate admission reserves and its priority, and the rest of
    ETSI 004's QoS (kept with the session, applied by the KMEs)."""

    key_rate_bps: float = Field(default=0.0, ge=0, le=MAX_BPS, allow_inf_nan=False)
    priority: int = Field(default=0, ge=0, le=1000)
    key_chunk_size: int | None = Field(default=None, ge=1, le=1024)
    max_bps: float | None = Field(default=None, ge=0, le=MAX_BPS, allow_inf_nan=False)
    min_bps: float | None = Field(default=None, ge=0, le=MAX_BPS, allow_inf_nan=False)
    jitter: float | None = Field(default=None, ge=0, le=MAX_SECONDS * 1000, allow_inf_nan=False)
    timeout: int | None = Field(default=None, ge=0, le=60_000)
    ttl: float | None = Field(default=None, ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    metadata_mimetype: str | None = Field(default=None, max_length=100)


class OpenConnect(_Model):
    """OPEN_CONNECT (ETSI GS QKD 004 sec. 6.1): source and destination SAEs, QoS, optional
    Key_stream_ID, and which end is opening (the source unless said)."""

    source: str = Field(max_length=64)
    destination: str = Field(max_length=64)
    QoS: QoSIn = QoSIn()
    Key_stream_ID: str | None = Field(default=None, min_length=1, max_length=64)
    opener: str | None = Field(default=None, max_length=64)


class ConnectIn(_Model):
    """OPEN_CONNECT at a stream's other end (with the pair it expects the stream to join)."""

    SAE_ID: str = Field(max_length=64)
    source: str | None = Field(default=None, max_length=64)
    destination: str | None = Field(default=None, max_length=64)


class KeyIDsIn(_Model):
    """Key_IDs the source's KME handed out for a stream, from ``first_index`` on."""

    first_index: int = Field(ge=0)
    key_IDs: list[str] = Field(max_length=4096)


def add_session_routes(app: FastAPI, ctl: Controller, operator: Callable[[Request], str],
                       clock: Callable[[], float]) -> None:
    """Add the session routes to the controller's ``app`` (``operator`` checks an operator caller)."""
    posted = _Posted()

    def acts_for(request: Request, sae: str) -> None:
        who = caller(request, "sae", "kme", "operator")
        role = role_of(request)
        if role == "operator":
            operator(request)
        elif role == "kme" and ctl.saes.get(sae) != who:
            raise ForbiddenError(f"the KME {who!r} does not serve {sae!r}")
        elif role == "sae" and who != sae:
            raise ForbiddenError(f"{who!r} may open and close only its own sessions, not {sae!r}'s")

    @app.post(f"{API}/sessions")
    async def open_connect(body: OpenConnect, request: Request) -> JSONResponse:
        opener = body.opener or body.source
        acts_for(request, opener)
        qos = body.QoS.model_dump(exclude_none=True, exclude={"key_rate_bps", "priority"})
        try:
            session = ctl.open_session(body.source, body.destination, clock(), key_rate_bps=body.QoS.key_rate_bps,
                                       priority=body.QoS.priority, key_stream_id=body.Key_stream_ID,
                                       opener=opener, qos=qos)
        except CapacityError as exc:
            exc.details = [{"reason": "capacity", "hop": list(exc.hop), "requested_bps": exc.requested_bps,
                            "available_bps": exc.available_bps}]
            raise
        except NoRouteError as exc:
            exc.details = [{"reason": "no_route"}]
            raise
        return JSONResponse({"status": "SUCCESS", **session.as_dict()})

    @app.post(f"{API}/sessions/{{ksid}}/connect")
    async def connect(ksid: str, body: ConnectIn, request: Request) -> JSONResponse:
        acts_for(request, body.SAE_ID)
        session = ctl.connect_session(ksid, body.SAE_ID, clock(), source=body.source, destination=body.destination)
        return JSONResponse({"status": "SUCCESS", **session.as_dict()})

    @app.get(f"{API}/sessions")
    async def sessions(request: Request) -> JSONResponse:
        caller(request)
        return JSONResponse({"sessions": [s.as_dict() for s in ctl.sessions.values()]})

    @app.get(f"{API}/sessions/{{ksid}}")
    async def session(ksid: str, request: Request) -> JSONResponse:
        caller(request)
        return JSONResponse(ctl.session(ksid).as_dict())

    @app.post(f"{API}/sessions/{{ksid}}/keys")
    async def post_keys(ksid: str, body: KeyIDsIn, request: Request) -> JSONResponse:
        stream = _stream(ctl, ksid, request, acts_for, end="source")
        stream.keys.post(body.first_index, body.key_IDs)
        posted.fire(ksid)
        return JSONResponse({"next_index": stream.keys.next_index, "read_upto": stream.keys.read_upto,
                             "connected": sorted(stream.connected)})

    @app.get(f"{API}/sessions/{{ksid}}/keys")
    async def get_keys(ksid: str, request: Request, start: int = Query(..., ge=0),
                       limit: int = Query(1024, ge=1, le=4096),
                       wait_s: float = Query(0.0, ge=0.0, le=MAX_KEYS_WAIT_S)) -> JSONResponse:
        """The stream's key_IDs from ``start``; waits up to ``wait_s`` for the first of them."""
        stream = _stream(ctl, ksid, request, acts_for, end="destination")
        deadline = asyncio.get_running_loop().time() + wait_s
        while stream.keys.next_index <= start and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await posted.wait(ksid, left)
            stream = ctl.session(ksid)  # closed meanwhile: 404
        return JSONResponse({"first_index": start, "key_IDs": stream.keys.read(start, limit)})

    @app.delete(f"{API}/sessions/{{ksid}}")
    async def close(ksid: str, request: Request) -> JSONResponse:
        found = ctl.session(ksid)
        try:
            acts_for(request, found.source)
        except ForbiddenError:
            acts_for(request, found.destination)
        ctl.close_session(ksid, clock())
        posted.fire(ksid)
        return JSONResponse({"status": "SUCCESS", "Key_stream_ID": ksid})


def _stream(ctl: Controller, ksid: str, request: Request, acts_for: Callable[[Request, str], None], *,
            end: str) -> Session:
    """A stream's session, for its ``end``'s KME only (the key_IDs are the KMEs' business)."""
    if caller(request, "kme") and role_of(request) != "kme":
        raise ForbiddenError("only the KMEs of a stream's ends read and post its key_IDs")
    session = ctl.session(ksid)
    acts_for(request, session.source if end == "source" else session.destination)
    return session


class _Posted:
    """Wakes the requests waiting on a stream's key_IDs (on the server's one event loop)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def fire(self, ksid: str) -> None:
        event = self._events.pop(ksid, None)
        if event is not None:
            event.set()

    async def wait(self, ksid: str, timeout_s: float) -> None:
        event = self._events.setdefault(ksid, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
