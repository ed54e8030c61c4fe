"""A typed ETSI GS QKD 004 V2.1.1 client for applications, over mutual TLS (qnet's JSON binding of
the standard's calls: :mod:`qnet.servers.kme004`).

Both applications of a key stream call their own KME; the key of each index is the same at both::

    with ETSI004Client(alice_kme, ca="ca.pem", cert="SAE_A.pem", key="SAE_A.key") as kme:
        stream = kme.open_connect("SAE_A", "SAE_B", {"key_chunk_size": 32, "min_bps": 10_000})
        key = kme.get_key(stream.key_stream_id)          # index 0, 1, 2... as they come
    # at SAE_B, told the Key_stream_ID (or choosing it beforehand and passing it to both):
    with ETSI004Client(bob_kme, ca=..., cert="SAE_B.pem", key=...) as kme:
        kme.open_connect("SAE_A", "SAE_B", key_stream_id=stream.key_stream_id)
        kme.get_key(stream.key_stream_id, index=0).key   # the same bytes

A status other than success is :class:`~qnet.errors.KeyStreamError` with the standard's
:class:`~qnet.service.etsi004.Status`, the KME's message and, for QOS_NOT_MET, the counter-proposal;
a malformed request or a refusal (400, 401) the error of its status, as for ETSI 014
(:mod:`qnet.clients.etsi014`); a KME that cannot be reached :class:`~qnet.errors.UnavailableError`.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from qnet.clients.etsi014 import STATUS_ERRORS, _context, _error_body, _kme_url, _transport_reason
from qnet.clients.km import KEEPALIVE_S
from qnet.errors import InvalidRequestError, KeyStreamError, UnavailableError
from qnet.service.etsi004 import QoS, Status

__all__ = ["API004", "ETSI004Client", "KeyStream", "StreamKey"]

API004 = "/api/v2/qkd004"
_LIMITS = httpx.Limits(keepalive_expiry=KEEPALIVE_S)


@dataclass(frozen=True)
class KeyStream:
    """An opened key stream: its Key_stream_ID, its QoS, and whether the peer had connected."""

    key_stream_id: str
    qos: QoS
    peer_connected: bool
    route: list[str] | None = None


@dataclass(frozen=True)
class StreamKey:
    """One key of a stream: its index, the key bytes and the KME's Metadata (its key_ID)."""

    index: int
    key: bytes = field(repr=False)
    metadata: str = ""


class ETSI004Client:
    """An application's client of one KME's ETSI 004 calls (a keep-alive pool; a context manager).

    Args:
        kme_url: the KME's base URL, ``https://host:port``.
        ca, cert, key: the CA certificate and this application's certificate and key (PEM).
        timeout_s: how long one call may take beyond its QoS timeout.
    """

    def __init__(self, kme_url: str, *, ca: str | Path, cert: str | Path, key: str | Path,
                 timeout_s: float = 10.0) -> None:
        self._open(_kme_url(kme_url, tls=True), timeout_s, _context(ca, cert, key), None)

    @classmethod
    def from_context(cls, kme_url: str, context: ssl.SSLContext, *, timeout_s: float = 10.0) -> Self:
        """A client presenting the certificate already loaded in ``context``."""
        client = cls.__new__(cls)
        client._open(_kme_url(kme_url, tls=True), timeout_s, context, None)
        return client

    @classmethod
    def from_transport(cls, kme_url: str, transport: httpx.BaseTransport, *, timeout_s: float = 10.0) -> Self:
        """A client whose requests go through ``transport`` (a KME's app in process, a mock)."""
        client = cls.__new__(cls)
        client._open(_kme_url(kme_url, tls=False), timeout_s, None, transport)
        return client

    def _open(self, url: str, timeout_s: float, context: ssl.SSLContext | None,
              transport: httpx.BaseTransport | None) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._http = httpx.Client(verify=context or True, timeout=timeout_s + 60.0, limits=_LIMITS,
                                  transport=transport)

    def open_connect(self, source: str, destination: str, qos: QoS | Mapping[str, Any] | None = None, *,
                     key_stream_id: str | None = None) -> KeyStream:
        """OPEN_CONNECT (sec. 6.1): open a stream, or connect to the one the other end opened.

        Raises:
            KeyStreamError: for a status other than SUCCESSFUL or SUCCESSFUL_PEER_NOT_CONNECTED (its
                ``status``; for QOS_NOT_MET its ``qos`` is the KME's counter-proposal).
        """
        asked = qos if isinstance(qos, QoS) else QoS.from_dict(qos)
        body = self._call("open_connect", {"source": source, "destination": destination, "QoS": asked.as_dict(),
                                           "Key_stream_ID": key_stream_id},
                          ok=(Status.SUCCESSFUL, Status.SUCCESSFUL_PEER_NOT_CONNECTED))
        return KeyStream(str(body["Key_stream_ID"]), QoS.from_dict(body.get("QoS")),
                         body["status"] == Status.SUCCESSFUL, body.get("route"))

    def get_key(self, key_stream_id: str, index: int | None = None, *, metadata_size: int = 1024) -> StreamKey:
        """GET_KEY (sec. 6.2): the key of ``index`` (the next one if None).

        Raises:
            KeyStreamError: for a status other than SUCCESSFUL (not enough key, the peer not
                connected, a timeout, a Metadata buffer too small).
        """
        body = self._call("get_key", {"Key_stream_ID": key_stream_id, "index": index,
                                      "Metadata": {"size": metadata_size}}, ok=(Status.SUCCESSFUL,))
        try:
            key = base64.b64decode(body["key_buffer"], validate=True)
            return StreamKey(int(body["index"]), key, str((body.get("Metadata") or {}).get("buffer", "")))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise UnavailableError(f"the KME at {self.url} gave a malformed GET_KEY answer: {exc!r}") from None

    def close(self, key_stream_id: str) -> None:
        """CLOSE (sec. 6.3): end the stream at both ends; its capacity is freed."""
        self._call("close", {"Key_stream_ID": key_stream_id}, ok=(Status.SUCCESSFUL,))

    def shutdown(self) -> None:
        """Close the connection pool (not a stream: that is :meth:`close`)."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown()

    def _call(self, method: str, body: dict[str, Any], *, ok: tuple[Status, ...]) -> dict[str, Any]:
        url = f"{self.url}{API004}/{method}"
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"cannot reach the KME at {self.url} ({method}): "
                                   f"{_transport_reason(exc, self.url, self.timeout_s)}",
                                   [{"kme_url": self.url}]) from None
        if response.status_code != 200:
            error = _error_body(response)
            message, details = error if error else (response.text[:200], [])
            cls = STATUS_ERRORS.get(response.status_code, InvalidRequestError if response.status_code < 500
                                    else UnavailableError)
            raise cls(f"the KME at {self.url} refused {method} ({response.status_code}): {message}", details)
        try:
            answer = response.json()
            status = Status(answer["status"])
        except (ValueError, KeyError, TypeError):
            raise UnavailableError(f"the KME at {self.url} gave an answer to {method} that is not ETSI 004's: "
                                   f"{response.text[:200]}") from None
        if status not in ok:
            counter = answer.get("QoS") if status == Status.QOS_NOT_MET else None
            raise KeyStreamError(status, f"{method}: {status.name} ({int(status)}): {answer.get('message', '')}",
                                 qos=QoS.from_dict(counter) if counter else None)
        return dict(answer)
