"""ETSI GS QKD 004 V2.1.1 at a KME, beside ETSI 014: OPEN_CONNECT, GET_KEY, CLOSE over HTTPS + JSON.

The standard fixes the calls, their fields and their status values, not a wire format; here each
call is a ``POST`` with a JSON body named after the standard's fields, answered ``200`` with the
call's ``status`` (:class:`qnet.service.etsi004.Status`), its name and a message, or with the ETSI 014
error body for a request that is malformed (400) or not the caller's (401)::

    POST /api/v2/qkd004/open_connect  {"source", "destination", "QoS": {...}, "Key_stream_ID"?}
         -> {"status": 0|1|4|5|6|7, "Key_stream_ID", "QoS"}
    POST /api/v2/qkd004/get_key       {"Key_stream_ID", "index"?, "Metadata": {"size"}?}
         -> {"status": 0|2|3|6|8, "index", "key_buffer" (base64), "Metadata": {"size", "buffer"}}
    POST /api/v2/qkd004/close         {"Key_stream_ID"} -> {"status": 0}

The caller is its client certificate's SAE (as for ETSI 014). The decisions are
:mod:`qnet.service.etsi004`'s; this module drives them: it asks the controller to admit and connect
streams (:class:`qnet.clients.controller.AsyncSessionClient`), hands the source's keys out with the
KME's own ETSI 014 path (link or relay) in a task per stream, and takes the destination's by key_ID.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from qnet.clients.controller import AsyncSessionClient
from qnet.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PeerError,
    QNetError,
    UnavailableError,
)
from qnet.keys.store import DeliveredKey
from qnet.service.etsi004 import READ_LIMIT, Answer, KeyStream, QoS, Status, StreamBook
from qnet.service.etsi014 import ETSI014Service

__all__ = ["API004", "MAX_STREAMS_PER_SAE", "ETSI004Driver", "add_etsi004_routes"]

log = logging.getLogger("qnet.kme004")

API004 = "/api/v2/qkd004"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_IDLE_S = 0.2
"""How often a stream's task looks again when nothing wakes it (the destination's progress, TTL)."""
_GONE_KEPT = 1024
"""Streams closed by their peer that a KME remembers (to answer GET_KEY_PEER_NOT_CONNECTED)."""
MAX_STREAMS_PER_SAE = 16
"""The most key streams one application may have open at its KME (each holds key and a task)."""
_UNCONNECTED_S = 0.25
"""How often a source's task asks the controller whether the destination has connected."""
_DESTINATION_WAIT_S = 5.0
"""How long a destination's task waits on the controller for key_IDs in one request."""

Dec = Callable[[str, str, list[str], str], Awaitable[dict[str, Any]]]
"""dec_keys (slave, master, key_IDs, Key_stream_ID), waiting for an assign message on its way."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenConnectIn(_Model):
    """OPEN_CONNECT (sec. 6.1)."""

    source: str = Field(max_length=64)
    destination: str = Field(max_length=64)
    QoS: dict[str, Any] | None = None
    Key_stream_ID: str | None = Field(default=None, pattern=UUID_PATTERN)


class MetadataIn(_Model):
    """The Metadata buffer the application offers (its size in bytes)."""

    size: int = Field(default=1024, ge=0, le=65536)
    buffer: str | None = None


class GetKeyIn(_Model):
    """GET_KEY (sec. 6.2)."""

    Key_stream_ID: str = Field(max_length=64)
    index: int | None = Field(default=None, ge=0)
    Metadata: MetadataIn = MetadataIn()


class CloseIn(_Model):
    """CLOSE (sec. 6.3)."""

    Key_stream_ID: str = Field(max_length=64)


class ETSI004Driver:
    """Drives one KME's ETSI 004 streams: the controller, the key supply, the source's tasks."""

    def __init__(self, svc: ETSI014Service, local_sae: Callable[[str], bool], control: AsyncSessionClient | None,
                 *, relay: Callable[[Any], Awaitable[list[DeliveredKey]]], assigns_sent: Callable[..., Awaitable[None]],
                 dec: Dec, clock: Callable[[], float]) -> None:
        self.svc, self.control, self.clock = svc, control, clock
        self._relay, self._assigns_sent, self._dec = relay, assigns_sent, dec
        self.book = StreamBook(local_sae)
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._gone: dict[str, None] = {}  # streams the peer closed (the latest): GET_KEY answers 3
        self._opening: dict[str, int] = {}  # OPEN_CONNECTs in flight, per application

    # -- OPEN_CONNECT ---------------------------------------------------------------------------------

    async def open_connect(self, caller: str, source: str, destination: str, qos_in: dict[str, Any] | None,
                           ksid: str | None) -> Answer:
        """OPEN_CONNECT: admit a new stream, or connect to one the other end opened."""
        self.book.check_open(caller, source, destination)
        qos = QoS.from_dict(qos_in)
        if self.control is None:
            return Answer(Status.NO_QKD_CONNECTION_AVAILABLE, "this KME has no controller to admit key streams "
                          "(a network started by qnet up has one)")
        if ksid is not None and ksid in self.book.streams:
            return Answer(Status.KSID_ALREADY_IN_USE, f"Key_stream_ID {ksid} is open at this KME already")
        if self.book.open_by_sae().get(caller, 0) + self._opening.get(caller, 0) >= MAX_STREAMS_PER_SAE:
            raise UnavailableError(f"{caller} has {MAX_STREAMS_PER_SAE} key streams open at this KME, the most "
                                   "one application may; CLOSE one first")
        self._opening[caller] = self._opening.get(caller, 0) + 1  # the slot is held while the controller answers
        try:
            session = await self._admit(caller, source, destination, qos, ksid)
        except _RefusedError as refused:
            return refused.answer
        finally:
            self._opening[caller] -= 1
        if session["Key_stream_ID"] in self.book.streams:
            return Answer(Status.KSID_ALREADY_IN_USE, f"Key_stream_ID {ksid} is open at this KME already")
        ours = session["source"] == source and session["destination"] == destination
        if not ours:
            return Answer(Status.KSID_ALREADY_IN_USE, f"Key_stream_ID {ksid} is a stream between other applications")
        stream = KeyStream(session["Key_stream_ID"], caller, source, destination, qos, self.clock(),
                           peer_connected=len(session.get("connected", [])) == 2)
        self.book.add(stream)
        self._gone.pop(stream.ksid, None)
        self._start(stream)
        body = {"Key_stream_ID": stream.ksid, "QoS": qos.as_dict(), "route": session.get("route")}
        if stream.peer_connected:
            return Answer(Status.SUCCESSFUL, f"key stream {stream.ksid} is connected at both ends", body)
        return Answer(Status.SUCCESSFUL_PEER_NOT_CONNECTED,
                      f"key stream {stream.ksid} is open; {stream.peer} has not connected yet", body)

    async def _admit(self, caller: str, source: str, destination: str, qos: QoS, ksid: str | None) -> dict[str, Any]:
        assert self.control is not None
        timeout_s = max(qos.timeout / 1000, 0.5)
        try:
            async with asyncio.timeout(timeout_s):
                if ksid is not None:
                    with contextlib.suppress(NotFoundError):
                        return await self.control.connect(ksid, caller, source=source, destination=destination)
                control_qos = {**{k: v for k, v in qos.as_dict().items() if k not in ("min_bps", "priority")},
                               "key_rate_bps": qos.min_bps, "priority": qos.priority}
                return await self.control.open(source, destination, control_qos, opener=caller, key_stream_id=ksid)
        except TimeoutError:
            why = f"the controller did not answer within {timeout_s:g} s"
            raise _RefusedError(Answer(Status.TIMEOUT_ERROR, why)) from None
        except ConflictError as exc:
            raise _RefusedError(Answer(Status.KSID_ALREADY_IN_USE, exc.message)) from None
        except PeerError as exc:
            raise _RefusedError(Answer(Status.TIMEOUT_ERROR, exc.message)) from None
        except UnavailableError as exc:
            reason = next((d for d in exc.details if "reason" in d), {})
            if reason.get("reason") == "capacity":
                counter = qos.counter(float(reason.get("available_bps", 0.0)))
                raise _RefusedError(Answer(Status.QOS_NOT_MET, exc.message, {"QoS": counter.as_dict()})) from None
            raise _RefusedError(Answer(Status.NO_QKD_CONNECTION_AVAILABLE, exc.message)) from None
        except InvalidRequestError as exc:  # e.g. both SAEs at this node: no QKD connection joins them
            raise _RefusedError(Answer(Status.NO_QKD_CONNECTION_AVAILABLE, exc.message)) from None

    # -- GET_KEY --------------------------------------------------------------------------------------

    async def get_key(self, caller: str, ksid: str, index: int | None, metadata_size: int) -> Answer:
        """GET_KEY: the key of ``index`` (the next one if None), once."""
        if ksid in self._gone and ksid not in self.book.streams:
            return Answer(Status.GET_KEY_PEER_NOT_CONNECTED, f"the peer closed key stream {ksid}")
        stream = self.book.stream(caller, ksid)
        if stream.expired(self.clock()):
            await self._end(stream, "its TTL passed")
            raise InvalidRequestError(f"key stream {ksid} has ended: its TTL ({stream.qos.ttl:g} s) passed")
        at = stream.claim(index)
        try:
            return await self._get_claimed(stream, at, metadata_size)
        finally:
            stream.release(at)

    async def _get_claimed(self, stream: KeyStream, at: int, metadata_size: int) -> Answer:
        deadline = asyncio.get_running_loop().time() + stream.qos.timeout / 1000
        if not await self._peer_connected(stream):
            return Answer(Status.GET_KEY_PEER_NOT_CONNECTED, f"{stream.peer} has not connected to {stream.ksid} yet")
        missing = await (self._hand_until(stream, at, deadline) if stream.is_source
                         else self._take_until(stream, at, deadline))
        if missing is not None:
            return missing
        needed = len(stream.metadata(at))
        if metadata_size < needed:
            return Answer(Status.METADATA_SIZE_INSUFFICIENT, f"the key's Metadata needs {needed} bytes, the "
                          f"buffer offered has {metadata_size}; no key was used", {"Metadata": {"size": needed}})
        meta = stream.metadata(at).decode()
        key = stream.deliver(at)
        if not stream.is_source and stream.next_read - stream.next_index() < READ_LIMIT // 2:
            self._kick(stream)  # the stream's task reads the next keys meanwhile
        return Answer(Status.SUCCESSFUL, "", {"index": at, "key_buffer": base64.b64encode(key.key).decode(),
                                              "Metadata": {"size": len(meta), "buffer": meta}})

    async def _peer_connected(self, stream: KeyStream) -> bool:
        if stream.peer_connected:
            return True
        assert self.control is not None
        try:
            session = await self.control.session(stream.ksid)
        except NotFoundError:
            self._peer_closed(stream)
            return False
        except QNetError:
            return False
        stream.peer_connected = len(session.get("connected", [])) == 2
        if stream.peer_connected:
            self._kick(stream)
        return stream.peer_connected

    async def _hand_until(self, stream: KeyStream, index: int, deadline: float) -> Answer | None:
        """At the source: hand keys out until ``index`` is held, or the timeout passes."""
        loop = asyncio.get_running_loop()
        while index not in stream.keys:
            short = await self._hand(stream, up_to=index)
            if index in stream.keys:
                break
            if stream.ksid not in self.book.streams:
                return Answer(Status.GET_KEY_PEER_NOT_CONNECTED, f"the peer closed key stream {stream.ksid}")
            if loop.time() >= deadline:
                if short is not None:
                    return Answer(Status.GET_KEY_INSUFFICIENT_KEY, short)
                return Answer(Status.TIMEOUT_ERROR, f"index {index} was not ready within {stream.qos.timeout} ms")
            await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
        return None

    async def _take_until(self, stream: KeyStream, index: int, deadline: float) -> Answer | None:
        """At the destination: read key_IDs from the controller and take their keys until ``index``
        is held, or the timeout passes."""
        loop = asyncio.get_running_loop()
        while index not in stream.keys:
            if stream.ksid not in self.book.streams:
                return Answer(Status.GET_KEY_PEER_NOT_CONNECTED, f"the peer closed key stream {stream.ksid}")
            try:
                got = await self._read(stream, max(deadline - loop.time(), 0.0))
            except NotFoundError:
                return Answer(Status.GET_KEY_PEER_NOT_CONNECTED, f"the peer closed key stream {stream.ksid}")
            except QNetError as exc:
                return Answer(Status.TIMEOUT_ERROR, exc.message)
            if not got and index not in stream.keys and loop.time() >= deadline:
                return Answer(Status.TIMEOUT_ERROR, f"the source's KME handed out no key for index {index} "
                              f"within {stream.qos.timeout} ms")
        return None

    async def _read(self, stream: KeyStream, wait_s: float) -> int:
        """At the destination: read the next key_IDs (waiting up to ``wait_s`` for some) and take
        their keys; how many it took. Readers may overlap (the application's GET_KEY and the
        stream's task): each takes only what no other took meanwhile.

        Raises:
            NotFoundError: if the stream is closed (it is dropped here).
        """
        assert self.control is not None
        start = stream.next_read
        try:
            ids = await self.control.read_keys(stream.ksid, start, READ_LIMIT, wait_s)
        except NotFoundError:
            self._peer_closed(stream)
            raise
        async with self._lock(stream):
            skip = stream.next_read - start
            if skip >= len(ids) or stream.ksid not in self.book.streams:
                return 0
            await self._take(stream, ids[skip:])
            return len(ids) - skip

    async def _take(self, stream: KeyStream, ids: list[str]) -> None:
        first = stream.next_read
        for at in range(0, len(ids), 1024):
            body = await self._dec(stream.destination, stream.source, ids[at:at + 1024], stream.ksid)
            keys = [DeliveredKey(k["key_ID"], base64.b64decode(k["key"])) for k in body["keys"]]
            stream.taken(first + at, keys)

    async def _run_destination(self, stream: KeyStream) -> None:
        """At the destination, while the stream is open: take its keys as the source hands them out
        (reading again once fewer than half of :data:`~qnet.service.etsi004.READ_LIMIT` are left in
        hand), and hear at once when it is closed."""
        while stream.ksid in self.book.streams:
            if stream.expired(self.clock()):
                await self._end(stream, "its TTL passed")
                return
            if stream.next_read - stream.next_index() >= READ_LIMIT // 2:  # enough in hand: read in big steps
                await self._idle(stream)
                continue
            try:
                await self._read(stream, _DESTINATION_WAIT_S)
            except NotFoundError:
                return
            except QNetError as exc:
                log.warning("key stream %s: key_IDs not read: %s", stream.ksid, exc.message)
                await self._idle(stream)

    async def _idle(self, stream: KeyStream) -> None:
        event = self._wake.setdefault(stream.ksid, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), _IDLE_S)
        event.clear()

    # -- the source's keys ----------------------------------------------------------------------------

    def _start(self, stream: KeyStream) -> None:
        self._wake[stream.ksid] = asyncio.Event()
        run = self._run(stream) if stream.is_source else self._run_destination(stream)
        task = asyncio.get_running_loop().create_task(self._guarded(stream, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kick(self, stream: KeyStream) -> None:
        event = self._wake.get(stream.ksid)
        if event is not None:
            event.set()

    async def _guarded(self, stream: KeyStream, run: Any) -> None:
        """A stream's task: should it fail unexpectedly, the stream ends (logged), never silently."""
        try:
            await run
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("key stream %s: its task failed; the stream is closed", stream.ksid)
            await self._end(stream, "its task failed")

    async def _run(self, stream: KeyStream) -> None:
        """At the source, while the stream is open: keep its keys handed out ahead of both ends."""
        while stream.ksid in self.book.streams:
            if stream.expired(self.clock()):
                await self._end(stream, "its TTL passed")
                return
            if not stream.peer_connected and not await self._peer_connected(stream):
                await asyncio.sleep(_UNCONNECTED_S)
                continue
            busy = stream.peer_connected and stream.wanted(self.clock()) > 0
            if busy and await self._hand(stream) is None:
                continue
            await self._idle(stream)
            if stream.peer_connected and stream.ksid in self.book.streams:
                await self._post(stream, stream.next_handed, [])  # hear how far the destination has read

    async def _hand(self, stream: KeyStream, up_to: int | None = None) -> str | None:
        """Hand out the keys :meth:`KeyStream.wanted` asks for and post their key_IDs; None if done,
        else why not (the pool is short, or the controller did not take the key_IDs)."""
        async with self._lock(stream):
            number = stream.wanted(self.clock(), up_to)
            if number == 0:
                return None
            try:
                keys = await self._enc(stream, number)
            except UnavailableError as exc:
                need = 0 if up_to is None else up_to + 1 - stream.next_handed
                if not 0 < need < number:
                    return f"not enough key for key stream {stream.ksid}: {exc.message}"
                try:  # a whole batch is short: what the waiting application needs may not be
                    keys = await self._enc(stream, need)
                except UnavailableError as again:
                    return f"not enough key for key stream {stream.ksid}: {again.message}"
            first = stream.handed(keys)
            return await self._post(stream, first, [k.key_ID for k in keys])

    async def _enc(self, stream: KeyStream, number: int) -> list[DeliveredKey]:
        """Keys for the stream as ETSI 014's enc_keys hands them out (from the link, or relayed)."""
        plan = replace(self.svc.enc_plan(stream.source, stream.destination, number, 8 * stream.qos.key_chunk_size),
                       stream=stream.ksid)
        return await self._relay(plan) if plan.relayed else await self._direct(plan)

    async def _direct(self, plan: Any) -> list[DeliveredKey]:
        body = self.svc.deliver(plan)
        await self._assigns_sent(timeout_s=2.0)
        return [DeliveredKey(k["key_ID"], base64.b64decode(k["key"])) for k in body["keys"]]

    async def _post(self, stream: KeyStream, first: int, ids: list[str]) -> str | None:
        assert self.control is not None
        for _ in range(3):
            try:
                answer = await self.control.post_keys(stream.ksid, first, ids)
            except NotFoundError:
                self._peer_closed(stream)
                return "the peer closed the stream"
            except QNetError as exc:
                log.warning("key stream %s: key_IDs %d.. not posted: %s", stream.ksid, first, exc.message)
                await asyncio.sleep(0.1)
                continue
            stream.peer_read_upto = int(answer.get("read_upto", stream.peer_read_upto))
            stream.peer_connected = len(answer.get("connected", [])) == 2
            return None
        await self._end(stream, "the controller did not take its key_IDs")  # the destination could never have them
        return "the controller did not take the stream's key_IDs; the stream is closed"

    def _lock(self, stream: KeyStream) -> asyncio.Lock:
        return self._locks.setdefault(stream.ksid, asyncio.Lock())

    # -- CLOSE ----------------------------------------------------------------------------------------

    async def close(self, caller: str, ksid: str) -> Answer:
        """CLOSE: the stream ends at both ends and its capacity is freed; the keys it held are erased."""
        stream = self.book.stream(caller, ksid)
        await self._end(stream, "closed by its application")
        return Answer(Status.SUCCESSFUL, f"key stream {ksid} is closed", {"Key_stream_ID": ksid})

    async def _end(self, stream: KeyStream, why: str) -> None:
        self.book.drop(stream.ksid)
        self._kick(stream)
        self._wake.pop(stream.ksid, None)
        self._locks.pop(stream.ksid, None)
        if self.control is not None:
            with contextlib.suppress(QNetError):
                await self.control.close(stream.ksid)
        log.info("key stream %s ended: %s", stream.ksid, why)

    def _peer_closed(self, stream: KeyStream) -> None:
        self.book.drop(stream.ksid)
        self._gone[stream.ksid] = None
        while len(self._gone) > _GONE_KEPT:
            self._gone.pop(next(iter(self._gone)))
        self._kick(stream)
        self._wake.pop(stream.ksid, None)
        self._locks.pop(stream.ksid, None)


class _RefusedError(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


def add_etsi004_routes(app: FastAPI, driver: ETSI004Driver, sae: Callable[[Request], str]) -> None:
    """The three calls, for callers ``sae`` names (their certificates' SAE_IDs)."""

    @app.post(f"{API004}/open_connect", summary="OPEN_CONNECT (ETSI GS QKD 004)")
    async def open_connect(body: OpenConnectIn, request: Request) -> JSONResponse:
        answer = await driver.open_connect(sae(request), body.source, body.destination, body.QoS, body.Key_stream_ID)
        return JSONResponse(answer.as_dict())

    @app.post(f"{API004}/get_key", summary="GET_KEY (ETSI GS QKD 004)")
    async def get_key(body: GetKeyIn, request: Request) -> JSONResponse:
        answer = await driver.get_key(sae(request), body.Key_stream_ID, body.index, body.Metadata.size)
        return JSONResponse(answer.as_dict())

    @app.post(f"{API004}/close", summary="CLOSE (ETSI GS QKD 004)")
    async def close(body: CloseIn, request: Request) -> JSONResponse:
        return JSONResponse((await driver.close(sae(request), body.Key_stream_ID)).as_dict())

