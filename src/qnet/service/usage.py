"""Key handed to applications, counted as it is handed out (issue 14: accounting per application
and per channel): per (SAE, peer SAE, API), where the API is ``etsi014`` or ``etsi004`` (a key
stream); and, for ETSI 004, per open key stream.

The counts live in memory from the KME's start (``/metrics`` exposes them as counters, which
Prometheus reads as such across restarts); the audit log holds the durable record of every key,
with its Key_stream_ID when it went to a stream (:mod:`qnet.management.audit`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ETSI004", "ETSI014", "KeyUsage", "Served"]

ETSI014 = "etsi014"
ETSI004 = "etsi004"


@dataclass
class Served:
    """Keys and bits."""

    keys: int = 0
    bits: int = 0


class KeyUsage:
    """What one KME handed to its applications (thread-safe: request threads and the loop count).

    Examples:
        >>> usage = KeyUsage()
        >>> usage.served("SAE_A", "SAE_B", ETSI014, keys=2, bits=512)
        >>> usage.rows()
        [{'SAE_ID': 'SAE_A', 'peer_SAE_ID': 'SAE_B', 'api': 'etsi014', 'keys': 2, 'bits': 512}]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_pair: dict[tuple[str, str, str], Served] = {}

    def served(self, sae: str, peer: str, api: str, *, keys: int, bits: int) -> None:
        """``keys`` keys of ``bits`` in all handed to ``sae`` for use with ``peer`` over ``api``."""
        with self._lock:
            entry = self.by_pair.setdefault((sae, peer, api), Served())
            entry.keys += keys
            entry.bits += bits

    def rows(self) -> list[dict[str, Any]]:
        """One row per (SAE, peer, API), sorted."""
        with self._lock:
            return [{"SAE_ID": sae, "peer_SAE_ID": peer, "api": api, "keys": s.keys, "bits": s.bits}
                    for (sae, peer, api), s in sorted(self.by_pair.items())]
