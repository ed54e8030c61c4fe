"""The KM-to-KM client: sends signed envelopes to a peer key manager over mutual TLS (httpx, one
keep-alive connection pool per peer).
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx

from qnet.errors import PeerError

__all__ = ["KEEPALIVE_S", "AsyncKMClient", "KMClient", "PeerError", "tls_client_context"]

KEEPALIVE_S = 25.0
"""How long an idle connection to a peer is kept: under the KMEs' own keep-alive (30 s), so the
client never reuses a connection the server is closing; httpx's default keeps one 5 s only."""
_LIMITS = httpx.Limits(keepalive_expiry=KEEPALIVE_S)


def tls_client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.3 client context that trusts ``ca`` and presents ``cert``."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class KMClient:
    """Posts envelopes to one peer's ``/km/v1/messages``."""

    def __init__(self, base_url: str, context: ssl.SSLContext, *, timeout_s: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/km/v1/messages"
        self._http = httpx.Client(verify=context, timeout=timeout_s, limits=_LIMITS)

    def send(self, envelope: bytes) -> dict[str, Any]:
        """Deliver one envelope; returns the peer's reply body.

        Raises:
            PeerError: on a network error or a non-200 answer.
        """
        try:
            response = self._http.post(self.url, content=envelope, headers=_JSON, timeout=_timeout(envelope))
        except httpx.HTTPError as exc:
            raise PeerError(f"peer unreachable: {exc}") from None
        return _reply(response)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class AsyncKMClient:
    """The same, for an asyncio event loop (the KME sends ``assign`` messages from its loop)."""

    def __init__(self, base_url: str, context: ssl.SSLContext | None, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``transport``: httpx's seam, e.g. ``httpx.ASGITransport`` to reach a peer's app in-process."""
        self.url = base_url.rstrip("/") + "/km/v1/messages"
        self._ping = base_url.rstrip("/") + "/km/v1/ping"
        self._http = httpx.AsyncClient(verify=context or True, timeout=timeout_s, limits=_LIMITS,
                                       transport=transport)

    async def send(self, envelope: bytes) -> dict[str, Any]:
        """Deliver one envelope; returns the peer's reply body.

        Raises:
            PeerError: on a network error or a non-200 answer.
        """
        try:
            response = await self._http.post(self.url, content=envelope, headers=_JSON, timeout=_timeout(envelope))
        except httpx.HTTPError as exc:
            raise PeerError(f"peer unreachable: {exc}") from None
        return _reply(response)

    async def warm(self) -> bool:
        """Keep a connection to the peer open (a ping): the first relay over a route a cut moved
        traffic to then pays no TLS handshakes. True if the peer answered."""
        try:
            return (await self._http.get(self._ping)).status_code == 200
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


_JSON = {"content-type": "application/json"}


def _timeout(envelope: bytes, base_s: float = 5.0) -> float:
    """How long to wait for the peer's answer: ``base_s``, and a second more per 100 kB, since the
    peer applies a message's units in one transaction (an assign for 1024 keys of 8192 bits names
    32,768 units, 1.2 MB): a slow answer to a large message is not an unreachable peer."""
    return base_s + len(envelope) / 1e5


def _reply(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = {"message": response.text[:200]}
    if response.status_code != 200:
        raise PeerError(f"peer refused the message ({response.status_code}): {body.get('message')}",
                        response.status_code, body)
    return dict(body)
