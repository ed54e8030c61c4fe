"""Authentication of the classical channel, with the key it consumes accounted.

Every message of a block's post-processing (sifting, test bits, reconciliation parities, the
verification tag, the privacy-amplification seed) is recorded per direction; at the end of the block
each side tags its whole transcript with a Wegman-Carter MAC (:mod:`qnet.security.its_mac`) and the
other side verifies it before any key is released. Each tag consumes a one-time pad of 128 bits from
the key pool; the hash point is drawn once from the pool and reused. The pool starts with a
pre-shared secret and is refilled from each block's final key, so the net key a link delivers is its
final key minus what authentication used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qnet.errors import UnauthorizedError
from qnet.security.its_mac import PAD_BITS, MACKey, authenticate, verify

__all__ = ["AuthKeyPool", "AuthenticationFailed", "Transcript", "authenticate_block"]


class AuthenticationFailed(UnauthorizedError):  # noqa: N818 - the name says what happened
    """A transcript's tag did not verify: the block is discarded."""


@dataclass
class Transcript:
    """The public messages of one block, per direction."""

    alice_to_bob: list[bytes] = field(default_factory=list)
    bob_to_alice: list[bytes] = field(default_factory=list)

    def send(self, sender: str, message: bytes) -> None:
        """Record a message from ``"alice"`` or ``"bob"``."""
        (self.alice_to_bob if sender == "alice" else self.bob_to_alice).append(message)

    def payload(self, sender: str) -> bytes:
        """Everything one side sent, length-prefixed so that message boundaries are authenticated."""
        messages = self.alice_to_bob if sender == "alice" else self.bob_to_alice
        return b"".join(len(m).to_bytes(8, "big") + m for m in messages)


class AuthKeyPool:
    """Secret key reserved for authentication, shared by both ends of a link.

    Args:
        initial: a pre-shared secret (at least 32 bytes), used until QKD key refills the pool.
    """

    def __init__(self, initial: bytes) -> None:
        if len(initial) < 32:
            raise ValueError("the pre-shared authentication secret needs at least 32 bytes")
        self._bits = bytearray(initial[16:])
        self._k = initial[:16]
        self.consumed_bits = 128  # the hash point
        self.refilled_bits = 0

    def mac_keys(self, tags: int) -> tuple[MACKey, MACKey]:
        """Two identical keys (one per side) with ``tags`` fresh one-time pads.

        Raises:
            LookupError: if the pool holds too little key.
        """
        need = 16 * tags
        if len(self._bits) < need:
            raise LookupError(f"authentication key pool empty: need {need} bytes, have {len(self._bits)}")
        pads = [bytes(self._bits[16 * i:16 * i + 16]) for i in range(tags)]
        del self._bits[:need]
        self.consumed_bits += PAD_BITS * tags
        return MACKey.from_bytes(self._k, pads), MACKey.from_bytes(self._k, pads)

    def refill(self, key: bytes) -> None:
        """Add fresh QKD key to the pool."""
        self._bits.extend(key)
        self.refilled_bits += 8 * len(key)

    @property
    def available_bits(self) -> int:
        """Key bits left in the pool."""
        return 8 * len(self._bits)


def authenticate_block(sent: Transcript, pool: AuthKeyPool, received: Transcript | None = None) -> int:
    """Tag both directions of a block's transcript and verify each tag at the other end.

    Args:
        sent: the messages as their senders sent them.
        pool: the shared authentication key pool.
        received: the messages as they arrived, if the channel could have altered them (in-process
            they are the same object).

    Returns:
        Key bits consumed (one pad per direction).

    Raises:
        AuthenticationFailed: if a tag does not verify.
    """
    received = sent if received is None else received
    sender_keys, receiver_keys = pool.mac_keys(2)
    for side in ("alice", "bob"):
        tag = authenticate(sent.payload(side), sender_keys)
        if not verify(received.payload(side), tag, receiver_keys):
            raise AuthenticationFailed("authentication failed")
    return 2 * PAD_BITS

