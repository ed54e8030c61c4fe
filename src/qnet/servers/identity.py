"""Who is calling, and how much they may send: the servers' mutual-TLS identity and body limits.

Uvicorn does not pass the client certificate to the application (the ASGI TLS extension is not
implemented there), so :class:`PeerCertProtocol` reads the peer certificate's subject CN and OU
once per connection and puts them in the request scope. The CN is the caller's name (its KME_ID or
SAE_ID, ETSI GS QKD 014 sec. 4.3), the OU its role, which the CA sets
(:func:`~qnet.security.pki.subject_role`). :func:`caller` grants a route to the roles it names:
rights come from the role and the name together, never the name alone.

:class:`BodyLimit` refuses a request body larger than its route's limit before any of it is
parsed: at once from ``Content-Length``, or as soon as a chunked body passes the limit (413, the
standard error body). Starlette and uvicorn have no such limit of their own.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable

import uvicorn
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from qnet.errors import ForbiddenError, UnauthorizedError
from qnet.security.names import ROLES
from qnet.security.pki import subject_cn, subject_role

__all__ = ["BodyLimit", "PeerCertProtocol", "caller", "role_of", "tls13"]


class PeerCertProtocol(HttpToolsProtocol):
    """HttpTools protocol that exposes the TLS client certificate's subject CN and role as
    ``scope["extensions"]["tls"]["client_cert_cn"]`` and ``["client_cert_role"]``."""

    _peer: tuple[str | None, str | None] = (None, None)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        self._peer = (subject_cn(cert), subject_role(cert))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": {"client_cert_cn": self._peer[0], "client_cert_role": self._peer[1]}}


def tls13(_: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """Uvicorn's TLS context, TLS 1.3 only."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def role_of(request: Request) -> str | None:
    """The role of the caller's certificate (None without one)."""
    role = request.scope.get("extensions", {}).get("tls", {}).get("client_cert_role")
    return str(role) if role else None


def caller(request: Request, *roles: str) -> str:
    """The name (certificate CN) of the caller, whose certificate must hold one of ``roles``
    (any role when none is named).

    Raises:
        UnauthorizedError: no client certificate, or one without a qnet role (subject OU).
        ForbiddenError: a certificate of another role.
    """
    tls = request.scope.get("extensions", {}).get("tls", {})
    name, role = tls.get("client_cert_cn"), tls.get("client_cert_role")
    if not name:
        raise UnauthorizedError("no client certificate: the caller's name comes from its certificate")
    if not role:
        raise UnauthorizedError(f"the certificate of {name!r} names no role (subject OU: {', '.join(ROLES)}); "
                                "have the CA issue it again (qnet pki init does)")
    if roles and role not in roles:
        raise ForbiddenError(f"{name!r} holds a certificate of role {role!r}, not {' or '.join(roles)}: "
                             "this is not its to call")
    return str(name)


class BodyLimit:
    """ASGI middleware: a request body over ``limit_of(scope)`` bytes gets 413 before it is parsed.

    A body within the limit is read here whole and handed on (a route's body parser then never
    sees more than the limit). Under the path prefixes in ``streamed`` the route reads the body
    itself, after its own checks (the KM-to-KM route refuses a caller that is no peer before it
    reads a byte): there the body is counted as the route reads it, and past the limit the caller
    gets 413 and the route a client disconnect (``ClientDisconnect``), which it must handle.

    Args:
        app: the app it guards.
        limit_of: the limit for a request (by its path, say).
        streamed: path prefixes whose routes read their bodies themselves.
    """

    def __init__(self, app: ASGIApp, limit_of: Callable[[Scope], int], streamed: tuple[str, ...] = ()) -> None:
        self.app, self.limit_of, self.streamed = app, limit_of, streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)  # refused before a byte of it is read
        elif scope["path"].startswith(self.streamed):
            await self._counted(scope, receive, send, limit)
        else:  # every other request is counted as it is read, whatever its headers say of its body
            await self._buffered(scope, receive, send, limit)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        messages: list[Message] = []
        seen, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await _too_large(send, limit)
                return
            more = message.get("more_body", False)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        seen, refused = 0, False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if seen > limit:
                refused = True
                await _too_large(send, limit)
                return {"type": "http.disconnect"}
            return message

        async def quiet(message: Message) -> None:
            if not refused:  # once the 413 is out, the route's own answer is dropped
                await send(message)

        await self.app(scope, counted, quiet)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"message": f"request body too large: at most {limit} bytes here"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
