"""Information-theoretically secure message authentication (Wegman-Carter).

The tag of a message m is ``(h_k(m) + r) mod P`` where h_k is polynomial evaluation over the prime
field GF(P), P = 2^127 - 1, at a secret point k, and r is a fresh one-time pad (Wegman & Carter,
J. Comput. Syst. Sci. 22, 265 (1981); the polynomial family is den Boer's / Bierbrauer et al.'s
"evaluation hash", e.g. Stinson, *Cryptography: Theory and Practice*, sec. 4.6). The hash is
eps-almost-Delta-universal with eps = L/P for messages of at most L blocks, so the pad makes the MAC
eps-almost strongly universal: a forger succeeds with probability at most L/P per try, whatever his
computing power. The key k may be reused for many messages; each tag consumes a fresh r (16 bytes of
key, reduced mod P) from the key pool, which is the cost QKD post-processing pays for authenticating its classical
channel.

Written by hand: the `cryptography` package offers Poly1305, whose key schedule is not meant for
key reuse with separately supplied one-time pads, and no maintained library offers an ITS MAC with
explicit key accounting.

Examples:
    >>> key = MACKey(k=12345, pads=[99, 7])
    >>> tag = authenticate(b"parities of block 1", key)
    >>> verify(b"parities of block 1", tag, MACKey(k=12345, pads=[99, 7]))
    True
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["PAD_BITS", "PRIME", "MACKey", "authenticate", "forgery_probability", "poly_hash", "verify"]

PRIME = (1 << 127) - 1
"""The Mersenne prime 2^127 - 1: the field of the polynomial hash."""

PAD_BITS = 128
"""Key bits one tag consumes: its one-time pad, 16 bytes reduced mod P."""

_BLOCK_BYTES = 15  # 120-bit message blocks are always < PRIME


@dataclass
class MACKey:
    """Key material for Wegman-Carter tags: the hash point ``k`` and a queue of one-time pads.

    Attributes:
        k: the secret evaluation point in [0, P).
        pads: unused one-time pads, each in [0, P); each tag consumes one.
        pads_used: how many pads have been consumed (for key accounting).
    """

    k: int
    pads: list[int] = field(default_factory=list)
    pads_used: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.k < PRIME or any(not 0 <= r < PRIME for r in self.pads):
            raise ValueError("MAC key values must lie in [0, 2^127 - 1)")

    def __repr__(self) -> str:  # key material never appears in logs
        return f"MACKey(<secret>, pads={len(self.pads)}, pads_used={self.pads_used})"

    @classmethod
    def from_bytes(cls, k_bytes: bytes, pad_bytes: Iterable[bytes] = ()) -> MACKey:
        """Build a key from 16-byte strings (reduced mod P)."""
        return cls(int.from_bytes(k_bytes, "big") % PRIME,
                   [int.from_bytes(p, "big") % PRIME for p in pad_bytes])

    def next_pad(self) -> int:
        """Take the next one-time pad.

        Raises:
            LookupError: if no pad is left (the key pool must be refilled first).
        """
        if not self.pads:
            raise LookupError("no one-time pad left for authentication")
        self.pads_used += 1
        return self.pads.pop(0)


def _coefficients(message: bytes) -> list[int]:
    """The message as polynomial coefficients: 15-byte blocks, each with a 0x01 byte above it
    (as Poly1305 pads), so that leading zero bytes and block lengths count and the map from
    messages to coefficient lists is one-to-one; every coefficient is nonzero and below P."""
    return [int.from_bytes(b"\x01" + message[i:i + _BLOCK_BYTES], "big")
            for i in range(0, len(message), _BLOCK_BYTES)]


def poly_hash(message: bytes, k: int) -> int:
    """Evaluate the message's polynomial c_1 k^L + ... + c_L k at k over GF(2^127 - 1) (Horner).

    Two different messages of at most L blocks give different polynomials of degree at most L
    with no constant term (the encoding is injective and its coefficients are nonzero), so their
    hashes differ by a given value for at most L of the P points k.
    """
    acc = 0
    for c in _coefficients(message):
        acc = (acc + c) * k % PRIME
    return acc


def authenticate(message: bytes, key: MACKey) -> bytes:
    """The 16-byte tag of ``message``, consuming one one-time pad of ``key``."""
    tag = (poly_hash(message, key.k) + key.next_pad()) % PRIME
    return tag.to_bytes(16, "big")


def verify(message: bytes, tag: bytes, key: MACKey) -> bool:
    """Whether ``tag`` authenticates ``message`` (consumes the same pad as the sender did).

    The comparison takes constant time; a failure says only that verification failed.
    """
    expected = authenticate(message, key)
    return hmac.compare_digest(expected, tag)


def forgery_probability(message_bytes: int) -> float:
    """Upper bound on a forger's success per attempt: (number of blocks) / P."""
    return max(1, -(-message_bytes // _BLOCK_BYTES)) / PRIME
