"""The session client a KME uses to reach its network's controller (ETSI GS QKD 004 streams).

httpx over mutual TLS with the KME's own certificate (role ``kme``): the controller lets a KME act
for the SAEs of its node (:mod:`qnet.servers.sessions`). Answers other than 200 become the error the
controller raised (:data:`qnet.servers.errors.CONTROL_STATUS` read backwards), carrying its message
and details; a controller that cannot be reached is a :class:`~qnet.errors.PeerError`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from qnet.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PeerError,
    QNetError,
    UnauthorizedError,
    UnavailableError,
)

__all__ = ["AsyncSessionClient"]

_ERRORS: Mapping[int, type[QNetError]] = {400: InvalidRequestError, 401: UnauthorizedError, 403: ForbiddenError,
                                          404: NotFoundError, 409: ConflictError, 503: UnavailableError}


class AsyncSessionClient:
    """The controller's session routes, for an asyncio event loop."""

    def __init__(self, base_url: str, context: ssl.SSLContext | None, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = base_url.rstrip("/") + "/control/v1/sessions"
        self._http = httpx.AsyncClient(verify=context or True, timeout=timeout_s, transport=transport,
                                       limits=httpx.Limits(keepalive_expiry=25.0))

    async def open(self, source: str, destination: str, qos: Mapping[str, Any], *, opener: str,
                   key_stream_id: str | None = None) -> dict[str, Any]:
        """Admit a key stream (OPEN_CONNECT by its first end); the session."""
        body = {"source": source, "destination": destination, "QoS": dict(qos), "opener": opener,
                "Key_stream_ID": key_stream_id}
        return await self._call("POST", self.url, json=body)

    async def connect(self, ksid: str, sae: str, *, source: str, destination: str) -> dict[str, Any]:
        """OPEN_CONNECT by a stream's second end, to a stream between ``source`` and ``destination``
        (a stream between others is a ConflictError, and nothing changes); the session."""
        return await self._call("POST", f"{self.url}/{ksid}/connect",
                                json={"SAE_ID": sae, "source": source, "destination": destination})

    async def session(self, ksid: str) -> dict[str, Any]:
        """An open session."""
        return await self._call("GET", f"{self.url}/{ksid}")

    async def close(self, ksid: str) -> dict[str, Any]:
        """CLOSE: the session ends and its capacity is freed."""
        return await self._call("DELETE", f"{self.url}/{ksid}")

    async def post_keys(self, ksid: str, first_index: int, key_ids: list[str]) -> dict[str, Any]:
        """At the source's KME: the key_IDs handed out for indices ``first_index``..."""
        return await self._call("POST", f"{self.url}/{ksid}/keys",
                                json={"first_index": first_index, "key_IDs": key_ids})

    async def read_keys(self, ksid: str, start: int, limit: int, wait_s: float) -> list[str]:
        """At the destination's KME: the key_IDs from index ``start``, waiting up to ``wait_s``."""
        body = await self._call("GET", f"{self.url}/{ksid}/keys",
                                params={"start": start, "limit": limit, "wait_s": round(wait_s, 3)},
                                timeout=wait_s + 5.0)
        return [str(k) for k in body["key_IDs"]]

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise PeerError(f"the controller is unreachable: {type(exc).__name__}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:200]}
        if not isinstance(body, dict):
            raise PeerError(f"the controller answered {response.status_code} with no JSON object", response.status_code)
        if response.status_code != 200:
            error = _ERRORS.get(response.status_code, PeerError)
            message = f"the controller refused: {body.get('message', response.status_code)}"
            if error is PeerError:
                raise PeerError(message, response.status_code, body)
            raise error(message, [d for d in body.get("details") or [] if isinstance(d, dict)])
        return body
