"""Helpers shared by in-process and integration tests: deadlines scaled for slow machines, free
loopback ports, an ASGI app as reached by a client certificate's CN."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterable
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TIMEOUT_SCALE", "AsCaller", "asgi_request", "free_ports", "scaled"]

TIMEOUT_SCALE = float(os.environ.get("QNET_TEST_TIMEOUT_SCALE", "1") or 1)
"""``QNET_TEST_TIMEOUT_SCALE``: how much longer than usual a slow machine may take."""


def scaled(seconds: float) -> float:
    """A test deadline, scaled by ``QNET_TEST_TIMEOUT_SCALE`` (default 1)."""
    return seconds * TIMEOUT_SCALE


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free just now (bound and released)."""
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_base_port(offsets: Iterable[int]) -> int:
    """A port ``base`` such that every ``base + offset`` is free just now, below the ephemeral range
    (32768-60999 on Linux), where the outgoing connections of other tests would take them at random."""
    import random

    offsets = list(offsets)
    rng = random.Random()
    while True:
        base = rng.randrange(20000, 32000 - max(offsets))
        socks: list[socket.socket] = []
        try:
            for offset in offsets:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base


def role_of(cn: str | None) -> str | None:
    """The role the tests' certificates give a name: ``operator``, ``sae`` for names starting
    ``SAE``, else ``kme`` (the tests' KMEs are Alice, Bob, A, B...)."""
    if cn is None:
        return None
    return "operator" if cn == "operator" else "sae" if cn.upper().startswith("SAE") else "kme"


class AsCaller:
    """``app`` as reached by a client whose certificate names ``cn`` with ``role`` (what the
    servers' TLS protocol puts in the ASGI scope; the role :func:`role_of` the name by default);
    ``cn=None``: no client certificate."""

    def __init__(self, app: ASGIApp, cn: str | None, role: str | None = "") -> None:
        self.app, self.cn, self.role = app, cn, role_of(cn) if role == "" else role

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "extensions": {"tls": {"client_cert_cn": self.cn, "client_cert_role": self.role}}}
        await self.app(scope, receive, send)


def asgi_request(runner: asyncio.Runner, app: ASGIApp, caller: str | None, method: str, path: str,
                 *, role: str | None = "", **kwargs: Any) -> httpx.Response:
    """One request to ``app`` in-process, as a client whose certificate names ``caller`` with
    ``role`` (:class:`AsCaller`)."""
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=AsCaller(app, caller, role))
        async with httpx.AsyncClient(transport=transport, base_url="http://qnet") as http:
            return await http.request(method, path, **kwargs)
    return runner.run(go())
