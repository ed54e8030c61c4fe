"""Helpers shared by in-process and integration tests: deadlines scaled for slow machines, free
loopback ports."""

from __future__ import annotations

import os
import socket

__all__ = ["TIMEOUT_SCALE", "free_ports", "scaled"]

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
