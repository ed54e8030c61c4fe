"""Length-prefixed records between two SAEs over mutual TLS: the transport of ``qnet send`` and
``qnet receive`` (:mod:`qnet.clients.file_transfer`), no HTTP.

A record on the wire (big-endian)::

    kind u8 | length u32 | body (length bytes)

The kinds are :class:`Kind`: a control record's body is a JSON object, a data record's body is one
frame of a QKD-keyed channel (:mod:`qnet.service.otp_channel`, :mod:`qnet.service.aead_channel`).
Every read is bounded by the caller (``limit``): a length prefix over it, say a hostile peer's
4 GB, is refused with :class:`~qnet.service.otp_channel.FrameError` before a byte of the body is
read or any memory is taken for it, and the connection is closed.

TLS 1.3 with both ends' SAE certificates (those ``qnet up`` or ``qnet pki init`` issued, from the
deployment's CA): TLS proves who the peer is, the channel's QKD keys keep the content secret. The
connecting side (the sender) is the TLS client, the listening side (the receiver) the TLS server,
which requires a client certificate of the CA with the role ``sae`` (subject OU) and takes the
sender's SAE_ID from its subject CN. The SAE certificates are issued for client authentication only
(they are no servers' certificates), which OpenSSL refuses in a server's certificate; so the sender
checks the receiver's certificate itself, after the handshake has proved the receiver holds its
key: issued by the CA (signature and issuer), valid now, a client-authentication certificate with
role ``sae``, and its CN the SAE_ID the sender meant (:func:`check_peer`).

Written here: the standard library's ``ssl`` and ``socket`` under it; one record in flight at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import errno
import json
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qnet.errors import InvalidRequestError, PortInUseError, QNetError, UnauthorizedError, UnavailableError
from qnet.security.pki import subject_cn, subject_role
from qnet.service.otp_channel import FrameError

__all__ = ["CONTROL_LIMIT", "HANDSHAKE_TIMEOUT_S", "Kind", "Listener", "RecordSocket", "SAEIdentity", "check_peer",
           "connect", "parse_address"]

CONTROL_LIMIT = 64 * 1024
"""The largest control record (a JSON object) either end reads."""
HANDSHAKE_TIMEOUT_S = 10.0
"""How long a TLS handshake may take before the connection is dropped."""
_PREFIX = struct.Struct(">BI")


class Kind(enum.IntEnum):
    """What a record holds."""

    HEADER = 1
    """Sender -> receiver: who sends what, over which channel (JSON)."""
    READY = 2
    """Receiver -> sender: the header is accepted; send the data (JSON)."""
    DATA = 3
    """Sender -> receiver: one channel frame (bytes)."""
    TRAILER = 4
    """Sender -> receiver: the end of the data and its SHA-256 (JSON)."""
    ACK = 5
    """Receiver -> sender: the file is whole, with the SHA-256 the receiver computed (JSON)."""
    ERROR = 6
    """Either way: the transfer is refused or aborted, and why (JSON ``{"message", "kind"}``)."""


@dataclass(frozen=True)
class SAEIdentity:
    """An SAE's TLS files: the deployment's CA, the SAE's certificate and private key (PEM)."""

    sae_id: str
    ca: Path
    cert: Path
    key: Path


def parse_address(text: str, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port).

    Raises:
        InvalidRequestError: naming ``what`` when it is not such an address.

    Examples:
        >>> parse_address("127.0.0.1:9000"), parse_address("[::1]:9000")
        (('127.0.0.1', 9000), ('::1', 9000))
    """
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidRequestError(f"{what} must be HOST:PORT, such as 127.0.0.1:9000 (got {text!r})",
                                  [{"field": what, "problem": "not HOST:PORT"}])
    return host, int(port)


def _context(identity: SAEIdentity, *, server: bool) -> ssl.SSLContext:
    for name, path in (("CA", identity.ca), ("certificate", identity.cert), ("private key", identity.key)):
        if not Path(path).is_file():
            raise InvalidRequestError(f"{identity.sae_id}'s {name} is not a readable file: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(str(identity.cert), str(identity.key))
        if server:
            ctx.load_verify_locations(str(identity.ca))
    except (ssl.SSLError, OSError) as exc:
        raise InvalidRequestError(f"cannot load {identity.sae_id}'s TLS files ({identity.cert}, {identity.key}): "
                                  f"{exc}") from None
    if server:
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:  # the receiver's certificate is checked by check_peer (an SAE's is no server certificate)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_peer(der: bytes | None, ca: Path, expected: str, *, now: dt.datetime | None = None) -> None:
    """Check the receiver's certificate (DER, as the TLS handshake presented it): issued by ``ca``,
    valid ``now``, for client authentication with role ``sae``, and for the SAE ``expected``.

    Raises:
        UnauthorizedError: "verification failed" for a certificate not of this network's SAEs (which
            check failed is not said), or naming the SAE the peer is when it is another.
    """
    failed = UnauthorizedError(f"the receiver's certificate failed verification: it is not {expected}'s "
                               "certificate from this network's CA")
    try:
        cert = x509.load_der_x509_certificate(der or b"")
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(Path(ca).read_bytes()))
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature, OSError):
        raise failed from None
    when = now or dt.datetime.now(dt.UTC)
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    units = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if (not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc
            or ExtendedKeyUsageOID.CLIENT_AUTH not in usage or units != ["sae"] or len(names) != 1):
        raise failed
    if names[0] != expected:
        raise UnauthorizedError(f"the receiver is {names[0]}, not {expected}: is the address right?")


class RecordSocket:
    """One TLS connection between two SAEs, read and written as records (:class:`Kind`).

    ``peer`` is the other end's SAE_ID (its certificate's CN), ``address`` its ``host:port``.
    """

    def __init__(self, sock: ssl.SSLSocket, *, peer: str, address: str) -> None:
        self._sock, self.peer, self.address = sock, peer, address

    def send(self, kind: Kind, body: bytes | bytearray | memoryview = b"") -> None:
        """Write one record.

        Raises:
            UnavailableError: when the connection is lost.
        """
        try:
            if len(body) < 65536:
                self._sock.sendall(_PREFIX.pack(kind, len(body)) + bytes(body))
            else:  # a frame: no copy of it
                self._sock.sendall(_PREFIX.pack(kind, len(body)))
                self._sock.sendall(body)
        except (OSError, ssl.SSLError) as exc:
            raise self._lost(exc) from None

    def send_json(self, kind: Kind, value: Mapping[str, Any]) -> None:
        """Write one control record."""
        self.send(kind, json.dumps(value, separators=(",", ":")).encode())

    def recv(self, limit: int) -> tuple[Kind, bytes]:
        """Read one record whose body is at most ``limit`` bytes.

        Raises:
            FrameError: for an unknown kind, or a length over ``limit`` (nothing of the body is read).
            UnavailableError: when the connection is lost or closed, or the peer is silent past the
                socket's timeout.
        """
        head = self._exactly(_PREFIX.size, "closed the connection")
        kind, length = _PREFIX.unpack(head)
        if kind not in Kind._value2member_map_:
            raise FrameError(f"{self.peer} at {self.address} sent a record of unknown kind {kind}")
        if length > limit:
            raise FrameError(f"{self.peer} at {self.address} sent a {Kind(kind).name} record of {length} bytes, over "
                             f"the {limit} accepted here; the connection is closed")
        return Kind(kind), self._exactly(length, f"closed the connection in the middle of a {Kind(kind).name} record")

    def recv_json(self, *kinds: Kind) -> tuple[Kind, dict[str, Any]]:
        """Read one control record of one of ``kinds`` (or ERROR) as a JSON object.

        Raises:
            FrameError: for another kind, a body that is no JSON object, or one over :data:`CONTROL_LIMIT`.
        """
        kind, body = self.recv(CONTROL_LIMIT)
        if kind not in (*kinds, Kind.ERROR):
            raise FrameError(f"{self.peer} at {self.address} sent {kind.name} where "
                             f"{' or '.join(k.name for k in kinds)} was due")
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            value = None
        if not isinstance(value, dict):
            raise FrameError(f"{self.peer} at {self.address} sent a {kind.name} record that is not a JSON object")
        return kind, value

    def waiting(self) -> bool:
        """Whether a record (or the end of the connection) is waiting to be read, without blocking."""
        if self._sock.pending():
            return True
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def drain(self, seconds: float) -> None:
        """Read and drop whatever the peer sends for up to ``seconds`` or until it closes (so that a
        record just sent to it is not lost to a reset while it is still writing)."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                if not self._sock.recv(1 << 16):
                    return
        except (OSError, ssl.SSLError):
            return

    def settimeout(self, seconds: float | None) -> None:
        """How long a read or write may block (None: forever)."""
        self._sock.settimeout(seconds)

    def close(self) -> None:
        """Close the connection (no error if it is gone already)."""
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _exactly(self, n: int, closed: str) -> bytes:
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        try:
            while got < n:
                count = self._sock.recv_into(view[got:], n - got)
                if count == 0:
                    raise UnavailableError(f"{self.peer} at {self.address} {closed}")
                got += count
        except (OSError, ssl.SSLError) as exc:
            raise self._lost(exc) from None
        return bytes(buffer)

    def _lost(self, exc: BaseException) -> QNetError:
        if isinstance(exc, TimeoutError | socket.timeout):
            return UnavailableError(f"{self.peer} at {self.address} went silent (no data within "
                                    f"{self._sock.gettimeout() or 0:g} s)")
        if isinstance(exc, ssl.SSLError) and "CERTIFICATE" in str(exc).upper():
            return UnauthorizedError(f"{self.peer} at {self.address} refused this SAE's certificate (is it of "
                                     "the same network's CA?)")
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return UnavailableError(f"the connection to {self.peer} at {self.address} was lost: {reason}")


def connect(address: tuple[str, int], identity: SAEIdentity, peer: str, *,
            timeout_s: float = HANDSHAKE_TIMEOUT_S) -> RecordSocket:
    """Connect to the receiver ``peer`` listening at ``address`` as ``identity``, over mutual TLS.

    Raises:
        UnavailableError: when nothing listens there, or it does not answer.
        UnauthorizedError: when the peer's certificate is not ``peer``'s from the same CA.
        InvalidRequestError: when ``identity``'s files cannot be loaded.
    """
    where = f"{address[0]}:{address[1]}"
    ctx = _context(identity, server=False)
    try:
        raw = socket.create_connection(address, timeout=timeout_s)
    except ConnectionRefusedError:
        raise UnavailableError(f"no receiver listens at {where} (connection refused; is `qnet receive "
                               f"--listen {where}` running?)") from None
    except OSError as exc:
        raise UnavailableError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    try:
        sock = ctx.wrap_socket(raw)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise UnavailableError(f"the TLS handshake with {where} failed: {getattr(exc, 'reason', None) or exc} "
                               "(is a `qnet receive` listening there?)") from None
    try:
        check_peer(sock.getpeercert(binary_form=True), identity.ca, peer)
    except QNetError:
        sock.close()
        raise
    sock.settimeout(None)
    return RecordSocket(sock, peer=peer, address=where)


class Listener:
    """A receiver's listening socket at ``address`` (``port`` 0: one the system picks; see
    :attr:`address`), accepting senders that present an SAE certificate of ``identity``'s CA.

    Raises:
        PortInUseError: when another process holds the port.
        UnavailableError: when the address cannot be bound for another reason.
    """

    def __init__(self, address: tuple[str, int], identity: SAEIdentity) -> None:
        self._ctx = _context(identity, server=True)
        host, port = address
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError([(host, port, "qnet receive")], "choose another --listen port") from None
            raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]

    def accept(self, on_refused: Callable[[str, str], None] = lambda _where, _why: None) -> RecordSocket:
        """The next sender whose TLS handshake succeeds with an SAE certificate; every other
        connection is closed and reported to ``on_refused(address, why)``."""
        while True:
            raw, peer_address = self._sock.accept()
            where = f"{peer_address[0]}:{peer_address[1]}"
            raw.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                sock = self._ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                on_refused(where, f"TLS handshake failed ({getattr(exc, 'reason', None) or exc})")
                continue
            cert = sock.getpeercert()
            name, role = subject_cn(cert), subject_role(cert)  # type: ignore[arg-type]
            if role != "sae" or not name:
                sock.close()
                on_refused(where, "its certificate is not an SAE's")
                continue
            sock.settimeout(None)
            return RecordSocket(sock, peer=name, address=where)

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
