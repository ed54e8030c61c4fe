"""Signed envelopes for KM-to-KM messages: every message is signed with the sender's ML-DSA-65 key
(FIPS 204, through ``cryptography``), names its sender and receiver, and carries a fresh nonce and
its time, so that a forged, tampered, misdirected, stale or replayed message is refused.

Mutual TLS already authenticates the connection; the signature authenticates the message itself,
end to end, so that a relayed message (multi-hop relay) can be checked by the node it is for. The
receiver records each nonce in the same transaction as the message's effect (``KeyStore``), so a
replay is refused even after a restart.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from qnet.errors import UnauthorizedError

__all__ = ["EnvelopeError", "Opened", "open_envelope", "seal"]

WINDOW_S = 300.0
"""How far a message's time may be from the receiver's clock (s); nonces are kept this long."""


class EnvelopeError(UnauthorizedError):
    """A KM-to-KM message that must be refused; ``reason`` says why (for the alarm)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Opened:
    """A verified message."""

    sender: str
    nonce: str
    time_s: float
    body: dict[str, Any]


def _signed_bytes(head: Mapping[str, Any]) -> bytes:
    return json.dumps(head, sort_keys=True, separators=(",", ":")).encode()


def seal(body: dict[str, Any], *, sender: str, receiver: str, key: mldsa.MLDSA65PrivateKey, now_s: float) -> bytes:
    """The signed envelope of ``body`` from ``sender`` to ``receiver``."""
    head = {"sender": sender, "receiver": receiver, "nonce": secrets.token_hex(16), "time": now_s, "body": body}
    return json.dumps({**head, "sig": base64.b64encode(key.sign(_signed_bytes(head))).decode()}).encode()


def open_envelope(data: bytes, *, receiver: str, verify_keys: Mapping[str, mldsa.MLDSA65PublicKey],
                  now_s: float, tls_peer: str | None = None) -> Opened:
    """Check an envelope: well formed, for ``receiver``, from a known sender (the TLS peer, when
    given), signed by it, and within ``WINDOW_S`` of ``now_s``. Replay is checked by the caller.

    Raises:
        EnvelopeError: naming the first check that failed.
    """
    try:
        msg = json.loads(data)
        head = {k: msg[k] for k in ("sender", "receiver", "nonce", "time", "body")}
        sig = base64.b64decode(msg["sig"], validate=True)
        sender, time_s = str(head["sender"]), float(head["time"])
        if not isinstance(head["body"], dict) or not isinstance(head["nonce"], str):
            raise TypeError("body must be an object and nonce a string")
    except (ValueError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"malformed message: {exc}") from None
    if head["receiver"] != receiver:
        raise EnvelopeError(f"message for {head['receiver']!r}, not for {receiver!r}")
    if tls_peer is not None and sender != tls_peer:
        raise EnvelopeError(f"message claims sender {sender!r} but came from {tls_peer!r}")
    verify_key = verify_keys.get(sender)
    if verify_key is None:
        raise EnvelopeError(f"unknown sender {sender!r}")
    try:
        verify_key.verify(sig, _signed_bytes(head))
    except InvalidSignature:
        raise EnvelopeError(f"bad signature on a message from {sender!r} (forged or tampered)") from None
    if abs(now_s - time_s) > WINDOW_S:
        raise EnvelopeError(f"stale message from {sender!r}: {now_s - time_s:.0f} s old")
    return Opened(sender, head["nonce"], time_s, head["body"])
