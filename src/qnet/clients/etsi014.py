"""A typed ETSI GS QKD 014 v1.1.1 client for applications (SAEs), over mutual TLS.

The three methods of the standard, for any KME that serves them (qnet's own, :mod:`qnet.servers.kme`,
or another vendor's)::

    with ETSI014Client("https://127.0.0.1:8443", ca="ca.pem", cert="sae/SAE_A.pem", key="sae/SAE_A.key") as kme:
        kme.status("SAE_B").stored_key_count          # Get status (sec. 5.1)
        keys = kme.enc_keys("SAE_B", number=2)        # Get key (sec. 5.2): list[Key]
    # at the slave, told the key_IDs by its master:
    with ETSI014Client(bob_url, ca=..., cert="sae/SAE_B.pem", key=...) as kme:
        kme.dec_keys("SAE_A", [k.key_ID for k in keys])   # Get key with key IDs (sec. 5.3): the same bytes

:class:`AsyncETSI014Client` is the same for an asyncio event loop. Both build each request and read
each answer with the same code (:class:`_Call`); only the send differs.

Every failure is an error of :mod:`qnet.errors` with a message for a person, never a traceback of
httpx's: the input is checked first (``number`` >= 1, SAE_IDs that are names:
:func:`~qnet.security.names.name_problem`), :class:`~qnet.errors.InvalidRequestError` naming the
field; the standard's error body becomes the error of its status (:data:`STATUS_ERRORS`: 400
:class:`~qnet.errors.InvalidRequestError`, 401 :class:`~qnet.errors.UnauthorizedError`, 503
:class:`~qnet.errors.UnavailableError`) with the KME's ``message`` (after the KME's URL and the
method) and its ``details``; a KME that cannot be reached (connection refused, TLS handshake, time
out) or answers what the standard does not (not JSON, a field missing, too few keys, a key_ID twice,
bad base64) is :class:`~qnet.errors.UnavailableError` naming its URL and what happened.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit

import httpx

from qnet.clients.km import KEEPALIVE_S, tls_client_context
from qnet.errors import ForbiddenError, InvalidRequestError, QNetError, UnauthorizedError, UnavailableError
from qnet.security.names import name_problem
from qnet.service.otp_channel import Key

__all__ = ["API", "DEFAULT_TIMEOUT_S", "STATUS_ERRORS", "AsyncETSI014Client", "ETSI014Client", "Key", "Status"]

API = "/api/v1/keys"
"""The standard's path under the KME's URL (sec. 5: ``https://{KME_hostname}/api/v1/keys/...``)."""
DEFAULT_TIMEOUT_S = 10.0
"""How long a request may take (connect, send, answer): a KME answers a large enc_keys once its
peer KME has the assign message, a few seconds at most."""
STATUS_ERRORS: Mapping[int, type[QNetError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,  # not ETSI 014's, but what a KME's other routes answer
    503: UnavailableError,
}
"""The error a KME's answer becomes, by its status (ETSI GS QKD 014 sec. 5: 400, 401, 503); any other
4xx is :class:`~qnet.errors.InvalidRequestError`, any other status
:class:`~qnet.errors.UnavailableError`."""

_LIMITS = httpx.Limits(keepalive_expiry=KEEPALIVE_S)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Status:
    """Status data format (ETSI GS QKD 014 sec. 6.1): the key supply between the caller (master)
    and one slave SAE."""

    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int
    """The default key size, in bits."""
    stored_key_count: int
    """Keys of ``key_size`` bits the KME holds for this pair now."""
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int
    """How many additional slave SAEs one enc_keys may name."""
    status_extension: Mapping[str, Any] | None = field(default=None, compare=False)


class _MalformedError(Exception):
    """An answer the standard does not allow (turned into UnavailableError with the KME's URL)."""


# -- input checks (InvalidRequestError naming the field) -------------------------------------------

def _bad(field_name: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"{field_name} {problem}", [{"field": field_name, "problem": problem}])


def _sae_id(value: object, field_name: str) -> str:
    # the name rule of qnet's SAE_IDs without its reserved words (another KME may allow them): it
    # keeps the ID one safe path segment of the URL
    problem = name_problem(value, reserved=False)
    if problem is not None:
        raise _bad(field_name, problem)
    return str(value)


def _positive(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field_name, f"must be an integer (got {value!r})")
    if value < 1:
        raise _bad(field_name, f"must be at least 1 (got {value})")
    return value


def _strings(values: object, field_name: str) -> list[str]:
    """A list of strings given as any iterable but a single string (which would be its letters)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _bad(field_name, f"must be a list of strings, not {type(values).__name__} {values!r:.60}")
    items = list(values)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise _bad(f"{field_name}[{i}]", f"must be a string (got {item!r:.60})")
    return items


def _kme_url(url: object, *, tls: bool) -> str:
    text = url if isinstance(url, str) else ""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise _bad("kme_url", f"must be the KME's base URL, such as https://kme.example:8443 (got {url!r})")
    if tls and parts.scheme != "https":
        raise _bad("kme_url", f"must start with https:// (ETSI GS QKD 014 runs over TLS; got {url!r})")
    base = text.strip().rstrip("/")
    return base.removesuffix(API).rstrip("/")  # the standard's path is added here; tolerate it given


def _context(ca: str | Path, cert: str | Path, key: str | Path) -> ssl.SSLContext:
    for field_name, path in (("ca", ca), ("cert", cert), ("key", key)):
        if not Path(path).is_file():
            raise _bad(field_name, f"is not a readable file: {str(path)!r}")
    try:
        return tls_client_context(Path(ca), Path(cert), Path(key))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidRequestError(f"cannot load the TLS files (ca {str(ca)!r}, cert {str(cert)!r}, key "
                                  f"{str(key)!r}): {_ssl_reason(exc)}",
                                  [{"field": "ca/cert/key", "problem": _ssl_reason(exc)}]) from None


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


# -- answers ---------------------------------------------------------------------------------------

def _object(body: object, what: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise _MalformedError(f"{what} is not a JSON object (got {type(body).__name__})")
    return body


def _typed(body: Mapping[str, Any], name: str, kind: type, what: str) -> Any:
    if name not in body:
        raise _MalformedError(f"{what} has no {name!r}")
    value = body[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        kind_name = "a string" if kind is str else "an integer"
        raise _MalformedError(f"{what}'s {name!r} is not {kind_name} (got {value!r:.60})")
    return value


_STATUS_TEXT = ("source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID")
_STATUS_INTEGERS = ("key_size", "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size",
                    "min_key_size", "max_SAE_ID_count")


def _read_status(body: object, slave: str) -> Status:
    data = _object(body, "the Status")
    values = {n: _typed(data, n, str, "the Status") for n in _STATUS_TEXT}
    values |= {n: _typed(data, n, int, "the Status") for n in _STATUS_INTEGERS}
    if values["slave_SAE_ID"] != slave:
        raise _MalformedError(f"the Status is for slave_SAE_ID {values['slave_SAE_ID']!r}, not {slave!r}")
    extension = data.get("status_extension")
    return Status(**values, status_extension=dict(extension) if isinstance(extension, dict) else None)


def _read_keys(body: object, expected: int, key_bytes: int | None, *, uniform: bool) -> list[Key]:
    """The Key container's keys: ``expected`` of them, unique key_IDs in UUID form, key bytes in
    base64, not empty: ``key_bytes`` each if given, else all of one length if ``uniform`` (keys of
    the default size; dec_keys may return keys of several enc_keys calls, of different sizes)."""
    data = _object(body, "the Key container")
    items = data.get("keys")
    if not isinstance(items, list):
        raise _MalformedError("the Key container has no list 'keys'")
    if len(items) != expected:
        raise _MalformedError(f"the Key container holds {len(items)} keys, not the {expected} asked for")
    keys: list[Key] = []
    for i, item in enumerate(items):
        what = f"keys[{i}]"
        key_id = _typed(_object(item, what), "key_ID", str, what)
        if not _UUID.fullmatch(key_id):
            raise _MalformedError(f"{what}'s key_ID is not a UUID (got {key_id!r:.60})")
        try:
            key = base64.b64decode(_typed(item, "key", str, what), validate=True)
        except (binascii.Error, ValueError):
            raise _MalformedError(f"{what} (key_ID {key_id}) is not valid base64") from None
        if not key or (key_bytes is not None and len(key) != key_bytes):
            raise _MalformedError(f"{what} (key_ID {key_id}) holds {len(key)} bytes, not "
                             f"{key_bytes if key_bytes is not None else 'at least 1'}")
        keys.append(Key(key_id, key))
    if len({k.key_ID for k in keys}) != len(keys):
        raise _MalformedError("the Key container names the same key_ID twice")
    if uniform and len({len(k.key) for k in keys}) > 1:
        raise _MalformedError("the Key container's keys differ in size, though all are of the default size")
    return keys


def _read_dec(body: object, key_ids: list[str]) -> list[Key]:
    """dec_keys' keys, exactly those asked for, in the order asked."""
    keys = {k.key_ID.lower(): k for k in _read_keys(body, len(key_ids), None, uniform=False)}
    missing = [k for k in key_ids if k.lower() not in keys]
    if missing:
        raise _MalformedError(f"the Key container lacks key_ID {missing[0]} asked for (and has others instead)")
    return [keys[k.lower()] for k in key_ids]


def _error_body(response: httpx.Response) -> tuple[str, list[dict[str, Any]]] | None:
    """The standard's Error data format (sec. 6.5), if the answer is one: message, details."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return None
    details = body.get("details")
    return body["message"], [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _transport_reason(exc: httpx.HTTPError, url: str, timeout_s: float) -> str:
    """What went wrong on the way, in words: connection refused, the TLS handshake, no answer."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError) and "disconnected" in str(exc):
        # TLS 1.3: a KME that refuses the client's certificate says so after the handshake, by closing
        return ("the KME closed the connection without answering (does it accept this client certificate, "
                "from the CA it trusts?)" if url.startswith("https:") else
                "the KME closed the connection without answering (does it expect https://?)")
    cause: BaseException | None = exc
    while cause is not None:  # the ssl or socket error under httpx's (and httpcore's)
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {_ssl_reason(cause)}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the KME running, on this port?)"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the KME's host name ({cause.strerror or cause})"
        if isinstance(cause, OSError) and cause.strerror:
            return _ssl_reason(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "SSL" in text or "TLS" in text:
        return f"TLS failed: {text}"
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused (is the KME running, on this port?)"
    return text or type(exc).__name__


@dataclass(frozen=True)
class _Call(Generic[_T]):
    """One request of the standard and how to read its answer: the logic both clients share."""

    what: str
    """The method and its SAE, for messages: ``enc_keys for SAE_B``."""
    method: str
    path: str
    read: Callable[[object], _T]
    body: dict[str, Any] | None = None

    def answer(self, url: str, response: httpx.Response) -> _T:
        """The answer's value.

        Raises:
            QNetError: the error of a refusal's status (:data:`STATUS_ERRORS`) with the KME's message
                and details; UnavailableError for an answer the standard does not allow.
        """
        if response.status_code != 200:
            raise self._refusal(url, response)
        try:
            body = response.json()
        except ValueError:
            problem = f"the answer is not JSON ({response.headers.get('content-type', 'no content type')})"
        else:
            try:
                return self.read(body)
            except _MalformedError as exc:
                problem = str(exc)
        raise UnavailableError(f"the KME at {url} gave a malformed answer to {self.what}: {problem}",
                               [{"kme_url": url, "problem": problem}])

    def _refusal(self, url: str, response: httpx.Response) -> QNetError:
        status = response.status_code
        cls = STATUS_ERRORS.get(status, InvalidRequestError if 400 <= status < 500 else UnavailableError)
        body = _error_body(response)
        if body is None:
            text = response.text.strip()[:200]
            return cls(f"the KME at {url} refused {self.what} ({status}) without an ETSI 014 error body"
                       f"{': ' + repr(text) if text else ''}", [{"kme_url": url, "status": status}])
        message, details = body
        return cls(f"the KME at {url} refused {self.what} ({status}): {message}", details)

    def unreachable(self, url: str, exc: httpx.HTTPError, timeout_s: float) -> UnavailableError:
        """The error for a request that got no answer."""
        reason = _transport_reason(exc, url, timeout_s)
        return UnavailableError(f"cannot reach the KME at {url} ({self.what}): {reason}",
                                [{"kme_url": url, "problem": reason}])


class _Base:
    """What both clients share: the KME's URL and the requests of the standard."""

    url: str
    timeout_s: float

    def _setup(self, kme_url: str, timeout_s: float, *, tls: bool) -> None:
        self.url = _kme_url(kme_url, tls=tls)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise _bad("timeout_s", f"must be a positive number of seconds (got {timeout_s!r})")
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _status(self, slave_SAE_ID: str) -> _Call[Status]:
        slave = _sae_id(slave_SAE_ID, "slave_SAE_ID")
        return _Call(f"status for {slave}", "GET", f"{API}/{slave}/status", lambda body: _read_status(body, slave))

    def _enc(self, slave_SAE_ID: str, number: int, size: int | None,
             additional_slave_SAE_IDs: Iterable[str]) -> _Call[list[Key]]:
        slave = _sae_id(slave_SAE_ID, "slave_SAE_ID")
        number = _positive(number, "number")
        body: dict[str, Any] = {"number": number}
        if size is not None:
            body["size"] = _positive(size, "size")
        extra = _strings(additional_slave_SAE_IDs, "additional_slave_SAE_IDs")
        if extra:
            body["additional_slave_SAE_IDs"] = [_sae_id(s, f"additional_slave_SAE_IDs[{i}]")
                                                for i, s in enumerate(extra)]
        key_bytes = None if size is None else -(-size // 8)
        return _Call(f"enc_keys for {slave}", "POST", f"{API}/{slave}/enc_keys",
                     lambda answer: _read_keys(answer, number, key_bytes, uniform=True), body)

    def _dec(self, master_SAE_ID: str, key_IDs: Iterable[str]) -> _Call[list[Key]]:
        master = _sae_id(master_SAE_ID, "master_SAE_ID")
        ids = _strings(key_IDs, "key_IDs")
        if not ids:
            raise _bad("key_IDs", "must name at least one key_ID")
        for i, key_id in enumerate(ids):
            if not _UUID.fullmatch(key_id):
                raise _bad(f"key_IDs[{i}]", f"is not a key_ID: not a UUID (got {key_id!r:.60})")
        if len({k.lower() for k in ids}) != len(ids):
            raise _bad("key_IDs", "names the same key_ID twice")
        return _Call(f"dec_keys from {master}", "POST", f"{API}/{master}/dec_keys",
                     lambda answer: _read_dec(answer, ids), {"key_IDs": [{"key_ID": k} for k in ids]})


class ETSI014Client(_Base):
    """An SAE's client of one KME's ETSI GS QKD 014 API, over mutual TLS (one keep-alive
    connection pool; use it as a context manager, or :meth:`close` it).

    Args:
        kme_url: the KME's base URL, ``https://host:port`` (the standard's ``/api/v1/keys`` is added).
        ca: the CA certificate (PEM) that signed the KME's certificate.
        cert: this SAE's certificate (PEM), whose subject CN is its SAE_ID.
        key: this SAE's private key (PEM).
        timeout_s: how long one request may take.

    Raises:
        InvalidRequestError: naming the argument that is wrong (a URL, a file missing or unreadable).
    """

    def __init__(self, kme_url: str, *, ca: str | Path, cert: str | Path, key: str | Path,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._setup(kme_url, timeout_s, tls=True)
        self._open(_context(ca, cert, key), None)

    @classmethod
    def from_context(cls, kme_url: str, context: ssl.SSLContext, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Self:
        """A client presenting the certificate already loaded in ``context`` (a TLS client context
        that trusts the KME's CA: :func:`qnet.clients.km.tls_client_context`)."""
        client = cls.__new__(cls)
        client._setup(kme_url, timeout_s, tls=True)
        client._open(context, None)
        return client

    @classmethod
    def from_transport(cls, kme_url: str, transport: httpx.BaseTransport, *,
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> Self:
        """A client whose requests go through ``transport`` (httpx's seam: a mock, or a KME's app in
        process); TLS, if any, is the transport's."""
        client = cls.__new__(cls)
        client._setup(kme_url, timeout_s, tls=False)
        client._open(None, transport)
        return client

    def _open(self, context: ssl.SSLContext | None, transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(verify=context or True, timeout=self.timeout_s, limits=_LIMITS,
                                  transport=transport)

    def status(self, slave_SAE_ID: str) -> Status:
        """Get status (sec. 5.1) of the key supply from this SAE (master) to ``slave_SAE_ID``.

        Raises:
            InvalidRequestError: a bad SAE_ID, or the KME's 400.
            UnauthorizedError: the KME's 401 (an SAE it does not know or serve for this pair).
            UnavailableError: the KME's 503, no answer, or a malformed one.
        """
        return self._send(self._status(slave_SAE_ID))

    def enc_keys(self, slave_SAE_ID: str, number: int = 1, size: int | None = None,
                 additional_slave_SAE_IDs: Iterable[str] = ()) -> list[Key]:
        """Get key (sec. 5.2): ``number`` new keys of ``size`` bits (the KME's default size if None)
        shared with ``slave_SAE_ID`` (and the additional slaves), each once.

        Raises:
            InvalidRequestError: a bad argument (named), or the KME's 400 (a size it does not serve).
            UnauthorizedError: the KME's 401.
            UnavailableError: the KME's 503 (not enough key), no answer, or a malformed one.
        """
        return self._send(self._enc(slave_SAE_ID, number, size, additional_slave_SAE_IDs))

    def dec_keys(self, master_SAE_ID: str, key_IDs: Iterable[str]) -> list[Key]:
        """Get key with key IDs (sec. 5.3): the keys ``master_SAE_ID`` got for this SAE (a slave),
        in the order of ``key_IDs``.

        Raises:
            InvalidRequestError: a bad argument (named), or the KME's 400 (a key_ID it does not hold).
            UnauthorizedError: the KME's 401 (keys not given for this SAE).
            UnavailableError: the KME's 503, no answer, or a malformed one.
        """
        return self._send(self._dec(master_SAE_ID, key_IDs))

    def _send(self, call: _Call[_T]) -> _T:
        try:
            response = self._http.request(call.method, self.url + call.path, json=call.body)
        except httpx.HTTPError as exc:
            raise call.unreachable(self.url, exc, self.timeout_s) from None
        return call.answer(self.url, response)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncETSI014Client(_Base):
    """:class:`ETSI014Client` for an asyncio event loop: the same arguments, methods and errors,
    awaited (``async with``, or :meth:`aclose`)."""

    def __init__(self, kme_url: str, *, ca: str | Path, cert: str | Path, key: str | Path,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._setup(kme_url, timeout_s, tls=True)
        self._open(_context(ca, cert, key), None)

    @classmethod
    def from_context(cls, kme_url: str, context: ssl.SSLContext, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Self:
        """As :meth:`ETSI014Client.from_context`."""
        client = cls.__new__(cls)
        client._setup(kme_url, timeout_s, tls=True)
        client._open(context, None)
        return client

    @classmethod
    def from_transport(cls, kme_url: str, transport: httpx.AsyncBaseTransport, *,
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> Self:
        """As :meth:`ETSI014Client.from_transport`, e.g. ``httpx.ASGITransport`` to a KME's app."""
        client = cls.__new__(cls)
        client._setup(kme_url, timeout_s, tls=False)
        client._open(None, transport)
        return client

    def _open(self, context: ssl.SSLContext | None, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(verify=context or True, timeout=self.timeout_s, limits=_LIMITS,
                                       transport=transport)

    async def status(self, slave_SAE_ID: str) -> Status:
        """As :meth:`ETSI014Client.status`."""
        return await self._send(self._status(slave_SAE_ID))

    async def enc_keys(self, slave_SAE_ID: str, number: int = 1, size: int | None = None,
                       additional_slave_SAE_IDs: Iterable[str] = ()) -> list[Key]:
        """As :meth:`ETSI014Client.enc_keys`."""
        return await self._send(self._enc(slave_SAE_ID, number, size, additional_slave_SAE_IDs))

    async def dec_keys(self, master_SAE_ID: str, key_IDs: Iterable[str]) -> list[Key]:
        """As :meth:`ETSI014Client.dec_keys`."""
        return await self._send(self._dec(master_SAE_ID, key_IDs))

    async def _send(self, call: _Call[_T]) -> _T:
        try:
            response = await self._http.request(call.method, self.url + call.path, json=call.body)
        except httpx.HTTPError as exc:
            raise call.unreachable(self.url, exc, self.timeout_s) from None
        return call.answer(self.url, response)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
