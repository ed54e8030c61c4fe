"""The controller's management routes (ITU-T Y.3804 FCAPS): alarms, the event stream, inventory.

=========================================  =============  ==============================================
endpoint                                    caller         what
=========================================  =============  ==============================================
``GET  /control/v1/alarms[?active=true]``   anyone         alarms, newest first (time, place, severity,
                                                           cleared-at)
``POST /control/v1/alarms/{id}/clear``      an operator    clear an alarm by hand
``GET  /control/v1/events/stream``          anyone         server-sent events: every event as it happens
``GET  /control/v1/inventory``              anyone         every node in ETSI GS QKD 015 shapes
``POST|DELETE /control/v1/links/{id}/eavesdropper``  operator  start / stop a simulated eavesdropper
``POST|DELETE /control/v1/nodes/{node}/drain``       operator  drain a node (no relays through it) / undrain

Each KME serves its own ``qkd_node`` at ``/restconf/data/etsi-qkd-sdn-node:qkd_node``
(:func:`add_kme_inventory_route`): its links as it sees them (stock from its store, state from the
controller's last answer), and the sessions that start there.
``GET  /restconf/data/etsi-qkd-sdn-node:qkd_node?node=N``  anyone  one node's ``qkd_node``
=========================================  =============  ==============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from qnet.control.controller import Controller, Session
from qnet.control.events import ControlEvent
from qnet.control.routing import LinkState
from qnet.errors import NotFoundError
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.management.inventory import network_inventory, qkd_node

if TYPE_CHECKING:
    from qnet.servers.node import KMENode

__all__ = ["KMEView", "add_kme_inventory_route", "add_management_routes", "add_operator_actions", "sse_stream",
           "stream_closing", "wire"]

API = "/control/v1"
KEEPALIVE_S = 15.0


def wire(ctl: Controller, store: AlarmStore, broker: EventBroker) -> None:
    """Every controller event goes to the alarm store and to the stream's subscribers."""
    def on_event(event: ControlEvent) -> None:
        alarm = store.record(event.time_s, event.kind, event.place, event.severity, event.detail)
        broker.publish({"type": "event", **event.as_dict(), "alarm": alarm.as_dict() if alarm else None})
    ctl.listeners.append(on_event)


def add_management_routes(app: FastAPI, ctl: Controller, store: AlarmStore, broker: EventBroker, *,
                          caller: Callable[[Request], str], operator: Callable[[Request], str],
                          clock: Callable[[], float]) -> None:
    """Mount the alarm, stream, inventory and operator-action routes on the controller's app."""
    add_operator_actions(app, API, ctl, clock, operator)

    @app.get(f"{API}/alarms")
    async def alarms(request: Request, active: bool = Query(False)) -> JSONResponse:
        caller(request)
        return JSONResponse({"alarms": [a.as_dict() for a in store.alarms(active_only=active)]})

    @app.post(f"{API}/alarms/{{alarm_id}}/clear")
    async def clear(alarm_id: int, request: Request) -> JSONResponse:
        operator(request)
        alarm = store.clear(alarm_id, clock())
        if alarm is None:
            raise NotFoundError(f"no alarm {alarm_id}")
        broker.publish({"type": "alarm-cleared", "alarm": alarm.as_dict()})
        return JSONResponse(alarm.as_dict())

    @app.get(f"{API}/events/stream")
    async def stream(request: Request) -> StreamingResponse:
        caller(request)
        return StreamingResponse(sse_stream(broker, request, closing=stream_closing(app)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get(f"{API}/inventory")
    async def inventory(request: Request) -> JSONResponse:
        caller(request)
        return JSONResponse(network_inventory(ctl, now_s=clock()))

    @app.get("/restconf/data/etsi-qkd-sdn-node:qkd_node")
    async def node(request: Request, node: str = Query(...)) -> JSONResponse:
        caller(request)
        if node not in ctl.topology.nodes:
            raise NotFoundError(f"no node {node!r} in this network")
        return JSONResponse(qkd_node(ctl, node, now_s=clock()))


def add_operator_actions(app: FastAPI, prefix: str, ctl: Controller, clock: Callable[[], float],
                         operator: Callable[[Request], str]) -> None:
    """The operator's actions under ``prefix`` (the controller's API and the dashboard both mount
    them; ``operator`` says who acts, or raises): cut / restore a link, start / stop a simulated
    eavesdropper on it, drain / undrain a node."""

    @app.post(f"{prefix}/links/{{link_id}}/cut")
    async def cut(link_id: str, request: Request) -> JSONResponse:
        ctl.cut(link_id, clock(), reason=f"by {operator(request)}")
        return JSONResponse({"link_id": link_id, "cut": True})

    @app.post(f"{prefix}/links/{{link_id}}/restore")
    async def restore(link_id: str, request: Request) -> JSONResponse:
        operator(request)
        ctl.restore(link_id, clock())
        return JSONResponse({"link_id": link_id, "cut": False})

    def eavesdrop(link_id: str, *, on: bool) -> JSONResponse:
        ctl.eavesdrop(link_id, on, clock())
        return JSONResponse({"link_id": link_id, "eavesdropper": on})

    def drain(node: str, *, on: bool) -> JSONResponse:
        ctl.drain(node, on, clock())
        return JSONResponse({"node": node, "drained": on})

    # one handler per method: a route serving two methods gets one OpenAPI operation ID for both,
    # and FastAPI warns "Duplicate Operation ID" when it builds the document
    @app.post(f"{prefix}/links/{{link_id}}/eavesdropper")
    async def eavesdropper_on(link_id: str, request: Request) -> JSONResponse:
        operator(request)
        return eavesdrop(link_id, on=True)

    @app.delete(f"{prefix}/links/{{link_id}}/eavesdropper")
    async def eavesdropper_off(link_id: str, request: Request) -> JSONResponse:
        operator(request)
        return eavesdrop(link_id, on=False)

    @app.post(f"{prefix}/nodes/{{node}}/drain")
    async def drain_node(node: str, request: Request) -> JSONResponse:
        operator(request)
        return drain(node, on=True)

    @app.delete(f"{prefix}/nodes/{{node}}/drain")
    async def undrain_node(node: str, request: Request) -> JSONResponse:
        operator(request)
        return drain(node, on=False)


def stream_closing(app: FastAPI) -> asyncio.Event:
    """The event that ends every event stream of ``app``: its server sets it when it starts to shut
    down (:class:`qnet.servers.controller.EventStreamServer`), so that each stream sends a last
    ``closing`` event and ends its response, instead of being cut off mid-stream."""
    closing = getattr(app.state, "sse_closing", None)
    if closing is None:
        closing = app.state.sse_closing = asyncio.Event()
    return closing


async def sse_stream(broker: EventBroker, request: Request, hello: str = "qnet controller events", *,
                     closing: asyncio.Event | None = None) -> AsyncIterator[str]:
    """Server-sent events: ``event: TYPE`` / ``data: {json}`` per event, a comment every 15 s to keep
    the line open (the controller's API and the dashboard share it). When ``closing`` is set (the
    server is stopping) it sends ``event: closing`` and ends: the response then ends with its last
    chunk, and a browser sees a finished stream rather than ERR_INCOMPLETE_CHUNKED_ENCODING.

    One read of the subscription stays pending across keep-alives: cancelling it (as a timeout
    around each read would) would end the subscription after the first quiet 15 s.
    """
    events = broker.subscribe()
    stop = closing if closing is not None else asyncio.Event()
    stopping = asyncio.ensure_future(stop.wait())
    following: asyncio.Task[dict[str, Any]] | None = None
    try:
        yield f": {hello}\n\n"
        while not stop.is_set() and not await request.is_disconnected():
            following = following or asyncio.ensure_future(_next(events))
            done, _ = await asyncio.wait({following, stopping}, timeout=KEEPALIVE_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if following in done:
                event, following = following.result(), None
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            elif not done:
                yield ": keep-alive\n\n"
        if stop.is_set():
            yield 'event: closing\ndata: {"reason": "the server is stopping"}\n\n'
    finally:
        stopping.cancel()
        if following is not None:
            following.cancel()
            await asyncio.wait({following})
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]


async def _next(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await anext(events)


@dataclass(frozen=True)
class _OwnLink:
    ends: tuple[str, str]
    cut: bool


class KMEView:
    """What one KME knows, in the shape the inventory reads (:class:`qnet.management.inventory.NetworkView`)."""

    def __init__(self, node: KMENode) -> None:
        self.node = node
        self.topology = node.routing.router.topology
        self.links = {lk.link_id: _OwnLink((lk.ends[0], lk.ends[1]), lk.link_id in node.manager.out_of_service)
                      for lk in node.config.links}
        self.sessions = {str(s["Key_stream_ID"]): _session(s) for s in node.sessions}

    def states(self, now_s: float) -> dict[str, LinkState]:
        """Each own link: the controller's view if there is one, this end's stock in any case."""
        out = {}
        for lk in self.node.config.links:
            known = self.node.control_states.get(lk.link_id, LinkState())
            out[lk.link_id] = replace(known, stored_units=self.node.store.stock(lk.link_id),
                                      up=known.up and self.node.manager.peer_ok(lk.peer))
        return out


def _session(raw: dict[str, Any]) -> Session:
    qos = raw.get("QoS") or {}
    route = [str(n) for n in raw.get("route") or []]
    return Session(str(raw["Key_stream_ID"]), str(raw.get("source")), str(raw.get("destination")),
                   (route[0], route[-1]), float(qos.get("key_rate_bps", 0.0)), int(qos.get("priority", 0)), route,
                   float(raw.get("opened_s", 0.0)), int(raw.get("reroutes", 0)))


def add_kme_inventory_route(app: FastAPI, node: KMENode, caller: Callable[[Request], str]) -> None:
    """A KME's own ``qkd_node`` (ETSI GS QKD 015), to any caller with a certificate."""

    @app.get("/restconf/data/etsi-qkd-sdn-node:qkd_node", include_in_schema=False)  # not ETSI 014's
    async def own_node(request: Request) -> JSONResponse:
        caller(request)
        view = KMEView(node)
        return JSONResponse(await asyncio.to_thread(qkd_node, view, node.kme_id, now_s=node.clock()))
