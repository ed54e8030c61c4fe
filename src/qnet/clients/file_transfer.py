"""A file from one SAE to another over a QKD-keyed channel: the protocol of ``qnet send`` and
``qnet receive``.

The conversation, in records of :mod:`qnet.clients.records` over mutual TLS::

    sender                                                       receiver
    HEADER {protocol, sender, receiver, channel, name, size,  ->
            chunk_bytes, wait_s}
                                                             <-  READY {} | ERROR {message, kind}
    DATA (one channel frame per chunk of the file) x N       ->
    TRAILER {frames, bytes, sha256}                          ->
                                                             <-  ACK {bytes, sha256, key} | ERROR

The channel is :class:`~qnet.service.aead_channel.AESGCMSender` (``aes``: 32 key bytes per re-key)
or :class:`~qnet.service.otp_channel.OTPSender` (``otp``: one key byte per file byte, and 32 per
frame for its MAC); the frames name the ETSI GS QKD 014 keys they use, so the header needs to say
only the channel and the sender (the master SAE whose keys the receiver asks its KME for). The
sender's keys come from ``enc_keys`` at its KME (:class:`KMESupply`: keys of the KME's largest size,
up to ``max_key_per_request`` a call), the receiver's from ``dec_keys`` at its own (:class:`KMELookup`).

The receiver writes into a hidden part file beside the target and renames it to the target only
when the file is whole: as many bytes as the header announced, the SHA-256 of the trailer. Then it
acknowledges with the SHA-256 it computed, and the sender reports success only on that
acknowledgement. Whatever fails (a frame refused, the key exhausted, the connection lost) leaves no
file behind, and the side that noticed tells the other why (an ERROR record). Everything the
receiver reads is bounded: control records by :data:`~qnet.clients.records.CONTROL_LIMIT`, a frame
by the header's ``chunk_bytes`` (at most :data:`MAX_CHUNK_BYTES`) and :data:`FRAME_OVERHEAD`, the
file by its announced size.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qnet.clients.etsi014 import ETSI014Client
from qnet.clients.records import Kind, RecordSocket
from qnet.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    QNetError,
    UnauthorizedError,
    UnavailableError,
)
from qnet.security.names import name_problem
from qnet.service._frames import unpack_refs
from qnet.service.aead_channel import REKEY_S, AESGCMReceiver, AESGCMSender
from qnet.service.otp_channel import MAC_KEY_BYTES, FrameError, Key, KeyExhaustedError, OTPReceiver, OTPSender

__all__ = ["AES_PREFETCH_KEYS", "CHUNK_BYTES", "FRAME_OVERHEAD", "MAX_CHUNK_BYTES", "PROTOCOL", "REKEY_BYTES",
           "REKEY_S", "Channel", "FileReceiver", "Header", "KMELookup", "KMESupply", "KeyUsage", "TransferReport",
           "send_file"]

PROTOCOL = "qnet-send/1"
CHUNK_BYTES = 1 << 20
"""File bytes per frame (1 MiB; an OTP frame takes 32 bytes less, so that its key is one enc_keys
call of 1024 keys of 8192 bits)."""
MAX_CHUNK_BYTES = 16 << 20
"""The largest ``chunk_bytes`` a receiver accepts in a header."""
FRAME_OVERHEAD = 4 << 20
"""What a frame may hold beyond its chunk: header, key references (an OTP frame names each key it
uses: 45 bytes per ETSI 014 key), tag."""
MAX_FILE_BYTES = 1 << 40
"""The largest file a receiver accepts (1 TiB)."""
REKEY_BYTES = 16 << 20
"""``qnet send``'s default: file bytes under one AES key (16 MiB), besides :data:`REKEY_S` seconds."""
UNIT_BYTES = 32
"""qnet's KMEs hand out keys in whole 256-bit units: a key size of a multiple of this wastes none."""
IDLE_TIMEOUT_S = 60.0
"""How long either end waits for the other's next record (more while the sender may wait for key)."""
AES_PREFETCH_KEYS = 8
"""The AES keys ``qnet send`` fetches in one enc_keys call (:class:`KMESupply`'s ``min_request_bytes``)."""
_LINGER_S = 2.0

Progress = Callable[[int, int], None]
"""``(file bytes done, key bytes used)`` after each frame."""


class Channel(enum.StrEnum):
    """The QKD-keyed channel a file travels in."""

    aes = "aes"
    """AES-256-GCM re-keyed from QKD keys (:mod:`qnet.service.aead_channel`): 32 key bytes per key."""
    otp = "otp"
    """One-time pad with a Wegman-Carter MAC (:mod:`qnet.service.otp_channel`): a key byte per file byte."""


@dataclass(frozen=True)
class Header:
    """What the sender announces before the data."""

    sender: str
    """The master SAE_ID (the sender's certificate names the same)."""
    receiver: str
    channel: Channel
    name: str
    """The file's name, without any directory."""
    size: int
    """The file's length in bytes."""
    chunk_bytes: int
    """File bytes per frame, at most (the receiver bounds each frame by it)."""
    wait_s: float = 0.0
    """How long the sender may wait for key between frames (the receiver waits that much longer)."""

    def as_json(self) -> dict[str, Any]:
        """The HEADER record's body."""
        return {"protocol": PROTOCOL, **asdict(self), "channel": self.channel.value}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Header:
        """The header of a HEADER record's body.

        Raises:
            FrameError: naming the field that is missing or wrong.
        """
        if body.get("protocol") != PROTOCOL:
            raise FrameError(f"the sender speaks {str(body.get('protocol'))[:40]!r}, not {PROTOCOL!r}")
        for field in ("sender", "receiver"):
            problem = name_problem(body.get(field), reserved=False)
            if problem:
                raise FrameError(f"the header's {field} {problem}")
        if body.get("channel") not in tuple(Channel):
            raise FrameError(f"the header's channel must be {' or '.join(Channel)} (got {body.get('channel')!r:.40})")
        name = body.get("name")
        if not isinstance(name, str) or not _safe_name(name):
            raise FrameError(f"the header's file name {str(name)[:80]!r} is not a plain file name")
        size, chunk, wait = body.get("size"), body.get("chunk_bytes"), body.get("wait_s", 0.0)
        if not _integer(size, 0, MAX_FILE_BYTES):
            raise FrameError(f"the header's size must be 0 to {MAX_FILE_BYTES} bytes (got {size!r:.40})")
        if not _integer(chunk, 1, MAX_CHUNK_BYTES):
            raise FrameError(f"the header's chunk_bytes must be 1 to {MAX_CHUNK_BYTES} (got {chunk!r:.40})")
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 3600:
            raise FrameError(f"the header's wait_s must be 0 to 3600 seconds (got {wait!r:.40})")
        return cls(body["sender"], body["receiver"], Channel(body["channel"]), name, int(body["size"]),
                   int(body["chunk_bytes"]), float(wait))


def _integer(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _safe_name(name: str) -> bool:
    """A file name to write in a directory: no path, no dot names, no control characters."""
    return (0 < len(name) <= 255 and name not in (".", "..") and not name.startswith(".") and "/" not in name
            and "\\" not in name and name.isprintable())


@dataclass(frozen=True)
class KeyUsage:
    """The key a transfer consumed, as one end counts it."""

    key_bytes: int
    """Key bytes the channel used (OTP: the file's bytes and 32 per frame; AES: 32 per key)."""
    key_IDs: int
    """Distinct ETSI 014 keys (key_IDs) the frames took bytes from."""
    etsi014_keys: int
    """Keys this end got from its KME: enc_keys at the sender, dec_keys at the receiver."""
    etsi014_bytes: int
    """Their bytes (the sender's last key may be partly unused: those bytes are lost)."""
    requests: int
    """enc_keys or dec_keys calls."""
    aes_keys: int | None
    """AES keys used, the first and each re-key (None for the OTP channel)."""

    @property
    def rekeys(self) -> int | None:
        """Key changes after the first key (None for the OTP channel)."""
        return None if self.aes_keys is None else max(self.aes_keys - 1, 0)


@dataclass(frozen=True)
class TransferReport:
    """One transfer, as one end saw it."""

    role: str
    """``sent`` or ``received``."""
    sender: str
    receiver: str
    address: str
    """The peer's host:port."""
    path: str
    """The file sent, or where the received file was written."""
    size: int
    sha256: str
    channel: Channel
    frames: int
    seconds: float
    key: KeyUsage

    @property
    def mb_per_s(self) -> float:
        """File bytes per second, in MB (10^6 bytes)."""
        return self.size / 1e6 / self.seconds if self.seconds > 0 else float("inf")

    def as_json(self) -> dict[str, Any]:
        """The report for ``--json``."""
        body = asdict(self)
        body["channel"] = self.channel.value
        body["mb_per_s"] = round(self.mb_per_s, 3)
        body["seconds"] = round(self.seconds, 4)
        body["key"]["rekeys"] = self.key.rekeys
        return body


# -- keys from the KMEs ----------------------------------------------------------------------------

class KMESupply:
    """The sender's ``fetch(n)``: ETSI 014 ``enc_keys`` at its KME for ``slave``, as few calls as
    the KME allows (keys of its largest size, in multiples of 256 bits, up to
    ``max_key_per_request`` a call). When the KME has too little key it returns what the KME can
    still give (maybe nothing), and the channel decides whether to wait. Each call asks for at least
    ``min_request_bytes`` (the AES channel's next few keys at once: one round trip to the KME, and
    the peer KME, per few re-keys instead of each; what is left at the end is lost).

    Raises:
        UnauthorizedError: (at construction) when the KME does not serve this pair of SAEs.
        UnavailableError: when the KME cannot be reached.
    """

    def __init__(self, kme: ETSI014Client, slave: str, *, min_request_bytes: int = 0) -> None:
        self._kme, self.slave, self.min_request_bytes = kme, slave, min_request_bytes
        status = kme.status(slave)
        largest = max(status.max_key_size // 8, 1)
        self._unit = min(UNIT_BYTES, largest)
        self.max_key_bytes = largest // self._unit * self._unit
        self.max_per_request = max(status.max_key_per_request, 1)
        self.requests = self.keys = self.bytes = 0

    def available_bytes(self) -> int:
        """About how many key bytes the KME holds for this pair now (its status)."""
        status = self._kme.status(self.slave)
        return status.stored_key_count * status.key_size // 8

    def __call__(self, n: int) -> list[Key]:
        """Keys of at least ``n`` bytes in all, or fewer if the KME has no more."""
        got: list[Key] = []
        need = max(n, self.min_request_bytes)
        while need > 0:
            batch = self._request(need)
            if not batch:
                break
            got += batch
            need -= sum(len(k.key) for k in batch)
        return got

    def _request(self, need: int) -> list[Key]:
        size = min(self.max_key_bytes, -(-need // self._unit) * self._unit)
        number = min(self.max_per_request, -(-need // size))
        try:
            return self._enc(number, size)
        except UnavailableError:
            pass  # not enough key for so much (or the KME is gone: its status says which)
        available = self.available_bytes() // self._unit * self._unit
        size = min(size, available)
        number = min(number, available // size) if size else 0
        if number < 1:
            return []
        try:
            return self._enc(number, size)
        except UnavailableError:
            return []

    def _enc(self, number: int, size: int) -> list[Key]:
        keys = self._kme.enc_keys(self.slave, number, size * 8)
        self.requests += 1
        self.keys += len(keys)
        self.bytes += sum(len(k.key) for k in keys)
        return keys


class KMELookup:
    """The receiver's ``lookup(key_IDs)``: ETSI 014 ``dec_keys`` at its KME for the keys ``master``
    got, at most ``max_per_request`` key_IDs a call."""

    def __init__(self, kme: ETSI014Client, master: str, *, max_per_request: int = 1024) -> None:
        self._kme, self.master, self.max_per_request = kme, master, max(max_per_request, 1)
        self.requests = self.keys = self.bytes = 0

    def __call__(self, key_IDs: list[str]) -> dict[str, bytes]:
        """key_ID -> key bytes for every key_ID (the KME's error if it does not hold one)."""
        found: dict[str, bytes] = {}
        for start in range(0, len(key_IDs), self.max_per_request):
            batch = key_IDs[start:start + self.max_per_request]
            keys = self._kme.dec_keys(self.master, batch)
            self.requests += 1
            self.keys += len(keys)
            self.bytes += sum(len(k.key) for k in keys)
            found.update(zip(batch, (k.key for k in keys), strict=True))
        return found


class _Tally:
    """The key a channel's frames name: each key's references counted once (an AES key's repeat
    on every frame under it)."""

    def __init__(self) -> None:
        self.key_IDs: set[str] = set()
        self.key_bytes = 0
        self.keys = 0
        self._last: tuple[tuple[str, int, int], ...] = ()

    def add(self, frame: bytes) -> None:
        refs = tuple(unpack_refs(frame, 12)[0])  # after magic and seq, in both channels' frames
        if refs != self._last:
            self._last = refs
            self.keys += 1
            self.key_IDs.update(r[0] for r in refs)
            self.key_bytes += sum(r[2] for r in refs)


# -- errors across the connection ------------------------------------------------------------------

_ERROR_KINDS: dict[str, type[QNetError]] = {
    "key_exhausted": KeyExhaustedError, "unauthorized": UnauthorizedError, "not_found": NotFoundError,
    "conflict": ConflictError, "invalid": InvalidRequestError, "unavailable": UnavailableError,
}


def _error_body(exc: QNetError) -> dict[str, str]:
    kind = next((k for k, cls in _ERROR_KINDS.items() if isinstance(exc, cls)), "unavailable")
    return {"message": str(exc)[:4000], "kind": kind}


def _remote(body: Mapping[str, Any], who: str) -> QNetError:
    """The error an ERROR record stands for, its message after ``who`` ("the receiver refused")."""
    cls = _ERROR_KINDS.get(str(body.get("kind")), UnavailableError)
    return cls(f"{who}: {str(body.get('message', 'no reason given'))[:4000]}")


def _tell(conn: RecordSocket, exc: QNetError) -> None:
    """Send the peer an ERROR for ``exc`` and give it a moment to read it (best effort)."""
    try:
        conn.send_json(Kind.ERROR, _error_body(exc))
    except QNetError:
        return
    conn.drain(_LINGER_S)  # what the peer still sends, until it reads the ERROR and closes


# -- the two ends ----------------------------------------------------------------------------------

def send_file(path: Path, conn: RecordSocket, *, sender: str, channel: Channel, supply: KMESupply,
              rekey_bytes: int = REKEY_BYTES, rekey_s: float = REKEY_S, wait_s: float = 0.0,
              chunk_bytes: int = CHUNK_BYTES, on_progress: Progress | None = None,
              clock: Callable[[], float] = time.monotonic) -> TransferReport:
    """Send the file at ``path`` to the receiver at the other end of ``conn``, as ``sender``.

    Raises:
        KeyExhaustedError: when the KME runs out of key (after ``wait_s``); the receiver discards
            what came.
        QNetError: the receiver's refusal (its message), a lost connection, or an acknowledgement
            with another SHA-256.
    """
    size = path.stat().st_size
    if channel is Channel.otp:
        chunk_bytes -= MAC_KEY_BYTES
    else:
        chunk_bytes = min(chunk_bytes, rekey_bytes)
    framer: OTPSender | AESGCMSender = (
        OTPSender(supply, wait_s=wait_s) if channel is Channel.otp else
        AESGCMSender(supply, rekey_bytes=rekey_bytes, rekey_s=rekey_s, wait_s=wait_s))
    header = Header(sender, conn.peer, channel, path.name, size, chunk_bytes, wait_s)
    conn.settimeout(IDLE_TIMEOUT_S + wait_s)
    conn.send_json(Kind.HEADER, header.as_json())
    kind, body = conn.recv_json(Kind.READY)
    if kind is Kind.ERROR:
        raise _remote(body, f"{conn.peer} refused the file")
    start = clock()
    tally, digest, done, frames = _Tally(), hashlib.sha256(), 0, 0
    with path.open("rb") as file:
        while chunk := file.read(chunk_bytes):
            frame = _frame(conn, framer, chunk, done, size)
            _send(conn, Kind.DATA, frame)
            digest.update(chunk)
            tally.add(frame)
            done, frames = done + len(chunk), frames + 1
            if on_progress is not None:
                on_progress(done, framer.key_bytes_used)
            if conn.waiting():  # the receiver stopped us: say why
                raise _why_stopped(conn)
    if done != size:
        error = InvalidRequestError(f"{path} changed while it was sent ({done} bytes read, {size} announced)")
        _tell(conn, error)
        raise error
    _send_json(conn, Kind.TRAILER, {"frames": frames, "bytes": done, "sha256": digest.hexdigest()})
    kind, body = conn.recv_json(Kind.ACK)
    seconds = clock() - start
    if kind is Kind.ERROR:
        raise _remote(body, f"{conn.peer} did not accept the file")
    if body.get("sha256") != digest.hexdigest() or body.get("bytes") != done:
        raise UnavailableError(f"{conn.peer} acknowledged {body.get('bytes')!r:.20} bytes with SHA-256 "
                               f"{str(body.get('sha256'))[:64]}, not the {done} bytes with {digest.hexdigest()} sent")
    aes_keys = len(framer.key_log) if isinstance(framer, AESGCMSender) else None
    usage = KeyUsage(framer.key_bytes_used, len(tally.key_IDs), supply.keys, supply.bytes, supply.requests, aes_keys)
    return TransferReport("sent", sender, conn.peer, conn.address, str(path), done, digest.hexdigest(), channel,
                          frames, seconds, usage)


def _frame(conn: RecordSocket, framer: OTPSender | AESGCMSender, chunk: bytes, done: int, size: int) -> bytes:
    try:
        return framer.frame(chunk)
    except KeyExhaustedError as exc:
        error = KeyExhaustedError(f"the key ran out after {done:,} of {size:,} bytes "
                                  f"({str(exc).removesuffix('; nothing was sent')}); the receiver discards what came")
        _tell(conn, error)
        raise error from None


def _send(conn: RecordSocket, kind: Kind, body: bytes) -> None:
    try:
        conn.send(kind, body)
    except UnavailableError:
        raise _why_stopped(conn) from None


def _send_json(conn: RecordSocket, kind: Kind, value: Mapping[str, Any]) -> None:
    try:
        conn.send_json(kind, value)
    except UnavailableError:
        raise _why_stopped(conn) from None


def _why_stopped(conn: RecordSocket) -> QNetError:
    """The receiver's ERROR, if it sent one before it stopped reading, else a lost connection."""
    try:
        conn.settimeout(_LINGER_S)
        kind, body = conn.recv_json()
    except QNetError as exc:
        return exc
    return _remote(body, f"{conn.peer} stopped the transfer") if kind is Kind.ERROR else FrameError(
        f"{conn.peer} sent {kind.name} in the middle of the transfer")


class FileReceiver:
    """Receives files for ``me`` into ``out``: a directory (the sender's file name in it), a file
    path, or None (the current directory). Keys come from ``lookup_for(master_SAE_ID)``.

    An existing file is not replaced unless ``overwrite``.
    """

    def __init__(self, me: str, out: Path | None, lookup_for: Callable[[str], KMELookup], *,
                 overwrite: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.me, self.out, self._lookup_for, self.overwrite, self._clock = me, out, lookup_for, overwrite, clock

    def receive(self, conn: RecordSocket,
                on_start: Callable[[Header, Path], Progress | None] = lambda _h, _p: None) -> TransferReport:
        """Receive one file over ``conn`` (a sender's connection, its SAE_ID ``conn.peer``).

        Raises:
            QNetError: why the file was refused or lost (the sender was told); no file is left.
        """
        conn.settimeout(IDLE_TIMEOUT_S)
        try:
            _, body = conn.recv_json(Kind.HEADER)
            header = self._check(Header.from_json(body), conn)
            target = self._target(header)
            lookup = self._lookup_for(header.sender)
        except QNetError as exc:
            _tell(conn, exc)
            raise
        conn.settimeout(IDLE_TIMEOUT_S + header.wait_s)
        part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            conn.send_json(Kind.READY, {})
            report = self._data(conn, header, part, target, lookup, on_start(header, target))
        except _PeerStopped as stop:
            part.unlink(missing_ok=True)
            raise stop.error from None
        except QNetError as exc:
            part.unlink(missing_ok=True)
            _tell(conn, exc)
            raise
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return report

    def _check(self, header: Header, conn: RecordSocket) -> Header:
        if header.sender != conn.peer:
            raise UnauthorizedError(f"the header names sender {header.sender}, but the certificate is {conn.peer}'s")
        if header.receiver != self.me:
            raise NotFoundError(f"this receiver is {self.me}, not {header.receiver}")
        return header

    def _target(self, header: Header) -> Path:
        out = self.out if self.out is not None else Path.cwd()
        target = out / header.name if out.is_dir() else out
        if not target.parent.is_dir():
            raise NotFoundError(f"the receiver's directory {target.parent} does not exist")
        if target.exists() and (not self.overwrite or target.is_dir()):
            raise ConflictError(f"{target} exists at the receiver (it receives with --overwrite to replace it)")
        free = shutil.disk_usage(target.parent).free
        if free < header.size:
            raise UnavailableError(f"the receiver has {free} bytes free in {target.parent}, fewer than the "
                                   f"{header.size} of {header.name}")
        return target

    def _data(self, conn: RecordSocket, header: Header, part: Path, target: Path, lookup: KMELookup,
              on_progress: Progress | None) -> TransferReport:
        opener = OTPReceiver(lookup) if header.channel is Channel.otp else AESGCMReceiver(lookup)
        tally, digest, done, frames = _Tally(), hashlib.sha256(), 0, 0
        start = self._clock()
        with part.open("xb") as file:
            while True:
                kind, body = conn.recv(header.chunk_bytes + FRAME_OVERHEAD)
                if kind is not Kind.DATA:
                    break
                message = opener.open(body)
                done, frames = done + len(message), frames + 1
                if len(message) > header.chunk_bytes or done > header.size:
                    raise FrameError(f"{conn.peer} sent more than the {header.size} bytes it announced")
                file.write(message)
                digest.update(message)
                tally.add(body)
                if on_progress is not None:
                    on_progress(done, tally.key_bytes)
            trailer = _control(conn, kind, body, Kind.TRAILER)
            if done != header.size or trailer.get("sha256") != digest.hexdigest() or trailer.get("frames") != frames:
                raise FrameError(f"the file is not whole: {done} of {header.size} bytes in {frames} frames, SHA-256 "
                                 f"{digest.hexdigest()} (the sender's trailer says {str(trailer.get('sha256'))[:64]})")
            file.flush()
            os.fsync(file.fileno())
        os.replace(part, target)
        aes_keys = tally.keys if header.channel is Channel.aes else None
        usage = KeyUsage(tally.key_bytes, len(tally.key_IDs), lookup.keys, lookup.bytes, lookup.requests, aes_keys)
        conn.send_json(Kind.ACK, {"bytes": done, "sha256": digest.hexdigest(), "key": asdict(usage)})
        return TransferReport("received", header.sender, self.me, conn.address, str(target), done,
                              digest.hexdigest(), header.channel, frames, self._clock() - start, usage)


class _PeerStopped(Exception):  # noqa: N818 (not an error of ours: the peer's, carried out of the loop)
    """The peer's ERROR record in the middle of the data: nothing to tell it back."""

    def __init__(self, error: QNetError) -> None:
        super().__init__(str(error))
        self.error = error


def _control(conn: RecordSocket, kind: Kind, body: bytes, expected: Kind) -> dict[str, Any]:
    """The JSON body of a control record read as raw (the record after the data)."""
    if kind is Kind.ERROR:
        try:
            value = json.loads(body)
        except ValueError:
            value = {}
        raise _PeerStopped(_remote(value if isinstance(value, dict) else {}, f"{conn.peer} aborted the transfer"))
    try:
        value = json.loads(body) if kind is expected else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise FrameError(f"{conn.peer} sent {kind.name} where DATA or {expected.name} was due")
    return value
