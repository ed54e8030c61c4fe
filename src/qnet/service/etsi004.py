"""ETSI GS QKD 004 V2.1.1 (application interface) semantics at one KME, without HTTP.

The three calls of the standard (sec. 6), each answering one of its status values (Table 10):
``OPEN_CONNECT(source, destination, QoS, Key_stream_ID)``, ``GET_KEY(Key_stream_ID, index,
Metadata)`` and ``CLOSE(Key_stream_ID)``. The two applications of a key stream each call their own
KME; the key of index *i* is the same at both ends and each end gets it once.

How the two KMEs agree (DESIGN.md: one brain; this module decides, the server drives):

- **admission** is the controller's session control (:meth:`qnet.control.controller.Controller.open_session`):
  the stream's ``min_bps`` is the rate it reserves along its route, its ``priority`` may pre-empt;
  a refusal for capacity is QOS_NOT_MET (7) with the rate that is left as a counter-proposal, no
  route NO_QKD_CONNECTION_AVAILABLE (4). Either end may open first; the other end's OPEN_CONNECT
  with the same Key_stream_ID connects it (the first end's answer was SUCCESSFUL_PEER_NOT_CONNECTED).
- **keys**: the source application's KME hands the stream's keys out as ETSI 014 enc_keys would
  (from its link, or relayed) in batches, ahead of both ends' use (:meth:`KeyStream.wanted`, at most
  ``max_bps``), and posts their key_IDs by index to the controller; the destination's KME reads
  them there and takes the same keys by key_ID, as dec_keys would. Key material never leaves the
  two KMEs and their links; what is handed out is erased from the stores at once and kept here, in
  memory, until its application takes it (a crash loses it; nothing is served twice).

Written here: no library implements ETSI 004; the standard fixes the calls and statuses, not a wire
format, so the server's JSON (``qnet.servers.kme004``) follows the names of the standard's fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from typing import Any

from qnet.errors import InvalidRequestError, UnauthorizedError
from qnet.keys.store import DeliveredKey

__all__ = ["BATCH", "MAX_AHEAD", "MAX_WINDOW", "MIN_WINDOW", "READ_LIMIT", "Answer", "KeyStream", "QoS", "Status",
           "StreamBook"]

BATCH = 1024
"""The most keys the source's KME hands out for a stream at once (one enc_keys, one assign message
to the peer KME, one post of key_IDs to the controller): batches are what make a stream fast."""
MIN_WINDOW = 64
"""Keys a stream keeps handed out ahead of the slower end at the least (what a quiet stream holds,
and loses at CLOSE)."""
MAX_WINDOW = 2048
"""Keys a stream keeps handed out ahead at the most (about two seconds at its top speed here)."""
MAX_WINDOW_BITS = 1 << 21
"""And at most this much key (256 KiB), whatever the chunk size."""
MAX_AHEAD = 4096
"""How far ahead of the next undelivered index an application may ask for a key."""
READ_LIMIT = 1024
"""The most key_IDs the destination's KME reads from the controller at once."""
_PACE_S = 0.5
"""How often the source's KME measures how fast a stream's slower end takes keys."""


class Status(IntEnum):
    """ETSI GS QKD 004 V2.1.1 Table 10: the status a call returns."""

    SUCCESSFUL = 0
    SUCCESSFUL_PEER_NOT_CONNECTED = 1
    """OPEN_CONNECT: the stream is open and reserved, the peer application has not connected yet."""
    GET_KEY_INSUFFICIENT_KEY = 2
    """GET_KEY: not enough key (within the QoS timeout)."""
    GET_KEY_PEER_NOT_CONNECTED = 3
    """GET_KEY: the peer application is not connected (yet, or any more)."""
    NO_QKD_CONNECTION_AVAILABLE = 4
    """OPEN_CONNECT: no QKD connection joins the two applications' KMEs."""
    KSID_ALREADY_IN_USE = 5
    """OPEN_CONNECT: the Key_stream_ID is in use."""
    TIMEOUT_ERROR = 6
    """The call's timeout passed (waiting on the peer's KME or the controller)."""
    QOS_NOT_MET = 7
    """OPEN_CONNECT: the QoS cannot be met; the answer's QoS is a counter-proposal."""
    METADATA_SIZE_INSUFFICIENT = 8
    """GET_KEY: the Metadata buffer is too small; the answer says the size needed (no key is used)."""


@dataclass(frozen=True)
class QoS:
    """ETSI 004 sec. 6.1.2's QoS. Units: bytes (chunk), bit/s (rates), ms (jitter, timeout), s (TTL).

    ``max_bps`` 0 is no limit; ``ttl`` 0 is a stream that lives until CLOSE."""

    key_chunk_size: int = 32
    max_bps: float = 0.0
    min_bps: float = 0.0
    jitter: float = 0.0
    priority: int = 0
    timeout: int = 1000
    ttl: float = 0.0
    metadata_mimetype: str = "application/json"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> QoS:
        """The QoS of a request's JSON object (the standard's field names, any case).

        Raises:
            InvalidRequestError: naming a field that is unknown or out of range.
        """
        names = {f.name.lower(): f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in (data or {}).items():
            name = names.get(str(key).lower())
            if name is None:
                raise InvalidRequestError(f"QoS has no field {key!r}; it has {', '.join(names.values())}")
            values[name] = value
        qos = cls(**values)
        qos.check()
        return qos

    def check(self) -> None:
        """Raises InvalidRequestError naming the first field out of range."""
        def bad(name: str, rule: str) -> InvalidRequestError:
            return InvalidRequestError(f"QoS {name} must be {rule}, got {getattr(self, name)!r}",
                                       [{"field": f"QoS.{name}"}])
        if not _integer(self.key_chunk_size) or not 1 <= self.key_chunk_size <= 1024:
            raise bad("key_chunk_size", "an integer number of bytes from 1 to 1024")
        for name, top in (("max_bps", MAX_BPS), ("min_bps", MAX_BPS), ("jitter", MAX_SECONDS * 1000),
                          ("ttl", MAX_SECONDS)):
            if not _number(getattr(self, name), top):
                raise bad(name, f"a number from 0 to {top:g}")
        if self.max_bps and self.max_bps < self.min_bps:
            raise bad("max_bps", f"at least min_bps ({self.min_bps}) or 0 for no limit")
        if not _integer(self.priority) or not 0 <= self.priority <= 1000:
            raise bad("priority", "an integer from 0 to 1000")
        if not _integer(self.timeout) or not 0 <= self.timeout <= 60_000:
            raise bad("timeout", "an integer number of ms from 0 to 60000")
        if not isinstance(self.metadata_mimetype, str) or len(self.metadata_mimetype) > 100:
            raise bad("metadata_mimetype", "a MIME type")

    def as_dict(self) -> dict[str, Any]:
        """The standard's field names and values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def counter(self, available_bps: float) -> QoS:
        """The counter-proposal of QOS_NOT_MET: the same with the rate that is left."""
        floor = max(math.floor(available_bps), 0)
        return replace(self, min_bps=float(floor), max_bps=max(self.max_bps, float(floor)) if self.max_bps else 0.0)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_BPS = 1e12
"""The largest rate a QoS may name (1 Tbit/s)."""
MAX_SECONDS = 1e7
"""The longest TTL and jitter (about four months)."""


def _number(value: object, top: float) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and 0 <= value <= top
    except OverflowError:  # an integer beyond any float
        return False


@dataclass
class Answer:
    """What a call returns: its status, a message for a person, and the call's own fields."""

    status: Status
    message: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer: ``status`` (the number), ``status_name``, ``message`` and the fields."""
        return {"status": int(self.status), "status_name": self.status.name, "message": self.message, **self.body}


@dataclass
class KeyStream:
    """One key stream as this KME holds it: its application here (``sae``), both ends, its QoS, the
    keys it holds for the application by index, and what was delivered.

    At the source's KME ``next_handed`` is the next index it hands out; at the destination's
    ``next_read`` the next whose key_ID it reads from the controller.
    """

    ksid: str
    sae: str
    source: str
    destination: str
    qos: QoS
    opened_s: float
    peer_connected: bool = False
    keys: dict[int, DeliveredKey] = field(default_factory=dict, repr=False)
    delivered_below: int = 0
    """Every index below this is delivered (or skipped) here."""
    delivered: set[int] = field(default_factory=set)
    """Indices at or above ``delivered_below`` delivered here."""
    claimed: set[int] = field(default_factory=set)
    """Indices a GET_KEY in flight is waiting for (:meth:`claim`)."""
    next_handed: int = 0
    next_read: int = 0
    peer_read_upto: int = 0
    """At the source: what the destination's KME has read of the key_IDs (from the controller)."""
    key_bits_delivered: int = 0
    pace: tuple[float, int] | None = None
    """At the source: (when, the slower end's index) at the start of the pace measurement."""
    rate: float = 0.0
    """At the source: keys per second the slower end took, last measured."""

    @property
    def is_source(self) -> bool:
        """Whether this KME is the source application's (it hands the stream's keys out)."""
        return self.sae == self.source

    @property
    def peer(self) -> str:
        """The other application."""
        return self.destination if self.is_source else self.source

    def expired(self, now_s: float) -> bool:
        """Whether its TTL has passed."""
        return bool(self.qos.ttl) and now_s - self.opened_s > self.qos.ttl

    def next_index(self) -> int:
        """The lowest index not delivered here."""
        index = self.delivered_below
        while index in self.delivered:
            index += 1
        return index

    def claim(self, index: int | None) -> int:
        """The index a GET_KEY asks for (the next one neither delivered nor claimed if None), claimed
        for that call until it delivers or gives up (:meth:`release`): two calls in flight never
        wait for the same index.

        Raises:
            InvalidRequestError: as :meth:`check_index`, and for an index another call has claimed.
        """
        if index is None:
            index = self.next_index()
            while index in self.claimed or index in self.delivered:
                index += 1
        at = self.check_index(index)
        if at in self.claimed:
            raise InvalidRequestError(f"index {at} of key stream {self.ksid} is being delivered by another "
                                      "call", [{"index": at}])
        self.claimed.add(at)
        return at

    def release(self, index: int) -> None:
        """A call that claimed ``index`` is done with it (delivered or not)."""
        self.claimed.discard(index)

    def check_index(self, index: int | None) -> int:
        """The index a GET_KEY asks for (the next one if None).

        Raises:
            InvalidRequestError: for one delivered already, negative, or too far ahead.
        """
        if index is None:
            return self.next_index()
        if not _integer(index) or index < 0:
            raise InvalidRequestError(f"index must be an integer >= 0, got {index!r}", [{"field": "index"}])
        if index < self.delivered_below or index in self.delivered:
            raise InvalidRequestError(f"index {index} of key stream {self.ksid} was delivered already: each "
                                      "index is delivered once", [{"index": index}])
        if index >= self.next_index() + MAX_AHEAD:
            raise InvalidRequestError(f"index {index} is more than {MAX_AHEAD} ahead of the next undelivered "
                                      f"({self.next_index()})", [{"index": index}])
        return index

    def deliver(self, index: int) -> DeliveredKey:
        """Hand the key of ``index`` to the application (once) and forget it here."""
        key = self.keys.pop(index)
        self.delivered.add(index)
        while self.delivered_below in self.delivered:
            self.delivered.remove(self.delivered_below)
            self.delivered_below += 1
        self.key_bits_delivered += 8 * len(key.key)
        return key

    def wanted(self, now_s: float, up_to: int | None = None) -> int:
        """At the source: how many keys to hand out now (at most a batch of :data:`BATCH`).

        Enough to hold index ``up_to`` (an application waiting for it) and a window ahead of the
        faster end that follows the slower end's pace: four seconds of what it took over the last half second
        (between :data:`MIN_WINDOW` and :data:`MAX_WINDOW` keys, :data:`MAX_WINDOW_BITS` bits,
        and one second of ``max_bps`` if set), handed out in batches of half the window; never
        more than ``max_bps`` allows since the stream opened (with one window of burst). Nothing
        before the peer has connected."""
        if not self.peer_connected:
            return 0
        slower = min(self.next_index(), self.peer_read_upto)
        window = self._window(now_s, slower)
        faster = max(self.next_index(), self.peer_read_upto)
        goal = faster + window if up_to is None else max(faster + window, up_to + 1)
        bits = 8 * self.qos.key_chunk_size
        if self.qos.max_bps:
            goal = min(goal, int(self.qos.max_bps * max(now_s - self.opened_s, 0.0) / bits) + window)
        return max(0, min(goal - self.next_handed, max(window // 2, 1), BATCH))

    def _window(self, now_s: float, slower: int) -> int:
        if self.pace is None:
            self.pace = (now_s, slower)
        elif now_s - self.pace[0] >= _PACE_S:
            self.rate = (slower - self.pace[1]) / (now_s - self.pace[0])
            self.pace = (now_s, slower)
        bits = 8 * self.qos.key_chunk_size
        top = min(MAX_WINDOW, max(MAX_WINDOW_BITS // bits, MIN_WINDOW))
        if self.qos.max_bps:
            top = min(top, max(int(self.qos.max_bps // bits), MIN_WINDOW))
        return max(MIN_WINDOW, min(int(4 * self.rate), top))

    def handed(self, keys: list[DeliveredKey]) -> int:
        """At the source: keys handed out for the next indices; returns the first index."""
        first = self.next_handed
        for i, key in enumerate(keys):
            self.keys[first + i] = key
        self.next_handed += len(keys)
        return first

    def taken(self, first_index: int, keys: list[DeliveredKey]) -> None:
        """At the destination: keys taken by key_ID for indices ``first_index``..."""
        for i, key in enumerate(keys):
            if first_index + i >= self.delivered_below and first_index + i not in self.delivered:
                self.keys[first_index + i] = key
        self.next_read = max(self.next_read, first_index + len(keys))

    def metadata(self, index: int) -> bytes:
        """The Metadata of the key of ``index`` (JSON: its key_ID and index)."""
        key = self.keys[index]
        return (b'{"key_ID":"%s","index":%d,"Key_stream_ID":"%s"}'
                % (key.key_ID.encode(), index, self.ksid.encode()))


class StreamBook:
    """The key streams of one KME's applications, by Key_stream_ID."""

    def __init__(self, local_sae: Any) -> None:
        """``local_sae(sae_id) -> bool``: whether an SAE is attached to this KME."""
        self._local = local_sae
        self.streams: dict[str, KeyStream] = {}
        self.closed_bits: dict[str, int] = {}
        """Key bits delivered by each SAE's streams that are closed (accounting)."""

    def check_open(self, caller: str, source: str, destination: str) -> None:
        """An OPEN_CONNECT's caller must be one of its two ends, attached here.

        Raises:
            UnauthorizedError: if not.
        """
        if caller not in (source, destination):
            raise UnauthorizedError(f"{caller} may open key streams only as their source or destination",
                                    [{"SAE_ID": caller}])
        if not self._local(caller):
            raise UnauthorizedError("unknown SAE: no SAE with this certificate's SAE_ID is attached to this KME",
                                    [{"SAE_ID": caller}])

    def stream(self, caller: str, ksid: str) -> KeyStream:
        """The caller's stream.

        Raises:
            InvalidRequestError: for a Key_stream_ID unknown here (or closed).
            UnauthorizedError: for a stream of another application.
        """
        stream = self.streams.get(ksid)
        if stream is None:
            raise InvalidRequestError(f"no open key stream {ksid!r} at this KME (closed, or never opened here)",
                                      [{"Key_stream_ID": ksid}])
        if stream.sae != caller:
            raise UnauthorizedError(f"key stream {ksid} belongs to another application", [{"SAE_ID": caller}])
        return stream

    def add(self, stream: KeyStream) -> None:
        """A stream just opened or connected here."""
        self.streams[stream.ksid] = stream

    def drop(self, ksid: str) -> KeyStream | None:
        """Forget a stream and erase the keys it held."""
        stream = self.streams.pop(ksid, None)
        if stream is not None:
            stream.keys.clear()
            self.closed_bits[stream.sae] = self.closed_bits.get(stream.sae, 0) + stream.key_bits_delivered
        return stream

    def open_by_sae(self) -> dict[str, int]:
        """Open streams per application here."""
        out: dict[str, int] = {}
        for stream in self.streams.values():
            out[stream.sae] = out.get(stream.sae, 0) + 1
        return out

    def delivered_bits(self) -> dict[tuple[str, str], int]:
        """Key bits delivered, by (SAE, Key_stream_ID) of the open streams and (SAE, "closed")."""
        out = {(s.sae, s.ksid): s.key_bits_delivered for s in self.streams.values()}
        out.update({(sae, "closed"): bits for sae, bits in self.closed_bits.items()})
        return out
