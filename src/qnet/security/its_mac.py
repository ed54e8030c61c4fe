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
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["PAD_BITS", "PRIME", "MACKey", "Message", "authenticate", "forgery_probability", "poly_hash", "verify"]

PRIME = (1 << 127) - 1
"""The Mersenne prime 2^127 - 1: the field of the polynomial hash."""

PAD_BITS = 128
"""Key bits one tag consumes: its one-time pad, 16 bytes reduced mod P."""

_BLOCK_BYTES = 15  # 120-bit message blocks are always < PRIME

Message = bytes | bytearray | memoryview
"""What can be tagged: any bytes-like object (a memoryview of a frame needs no copy)."""


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


def _coefficients(message: Message) -> list[int]:
    """The message as polynomial coefficients: 15-byte blocks, each with a 0x01 byte above it
    (as Poly1305 pads), so that leading zero bytes and block lengths count and the map from
    messages to coefficient lists is one-to-one; every coefficient is nonzero and below P."""
    return [int.from_bytes(b"\x01" + message[i:i + _BLOCK_BYTES], "big")
            for i in range(0, len(message), _BLOCK_BYTES)]


def poly_hash(message: Message, k: int) -> int:
    """Evaluate the message's polynomial c_1 k^L + ... + c_L k at k over GF(2^127 - 1) (Horner).

    Two different messages of at most L blocks give different polynomials of degree at most L
    with no constant term (the encoding is injective and its coefficients are nonzero), so their
    hashes differ by a given value for at most L of the P points k.

    Long messages go in strides of S blocks (:func:`_strided`), with the same value as block-wise
    Horner (``tests/service/test_otp_channel.py`` checks them against each other).
    """
    if isinstance(message, memoryview) and (message.format != "B" or message.ndim != 1):
        message = message.cast("B")  # bytes, whatever the view's item type (its len() counts items)
    blocks = len(message) // _BLOCK_BYTES
    if blocks < 8 * _MIN_STRIDE:  # below about 2 kB block-wise Horner is faster
        return _horner(message, k, 0)
    stride = min(_MAX_STRIDE, max(_MIN_STRIDE, 1 << (math.isqrt(blocks).bit_length() - 1)))
    return _strided(message, k, stride)


def _horner(message: Message, k: int, acc: int) -> int:
    """Block-wise Horner from ``acc``: acc <- (acc + c) k mod P for each coefficient c."""
    for c in _coefficients(message):
        acc = (acc + c) * k % PRIME
    return acc


_MIN_STRIDE, _MAX_STRIDE = 16, 256
_ROW_BYTES = 1 << 16  # bytes of message converted to float64 at a time (stays in the cache)


def _strided(message: Message, k: int, stride: int) -> int:
    """Horner in strides of S blocks: acc <- acc k^S + d + e per row of S full blocks, where
    d = sum_j b_j k^(S+1-j) for the rows' 15-byte blocks b_j (the 0x01 markers give the constant
    e = 2^120 sum_j k^j), then block-wise Horner on the blocks left over.

    The d of many rows at once is one float64 matrix product: message bytes (rows x 15S) times
    :func:`_stride_matrix` (15S x 8), which holds each 256^u k^(S+1-j) mod P as 8 limbs of
    16 bits, folded once (2^128 = 2 mod P) so that every entry is below 3 * 2^16. A row's limb
    sum is then below 15S * 255 * 3 * 2^16 < 2^38 (S <= 256): integers, and every partial sum
    too, below the 2^53 to which float64 (IEEE 754 binary64, a 53-bit significand) holds every
    integer exactly, so the product is exact whatever order BLAS adds in. Evaluating with
    precomputed powers of the point is the "aggregated reduction" of GHASH implementations
    (Gueron & Kounavis, "Intel carry-less multiplication instruction and its usage for computing
    the GCM mode", Intel white paper 323640), here S blocks per reduction.
    """
    matrix, k_stride, marks = _stride_matrix(k, stride)
    row = stride * _BLOCK_BYTES
    rows = len(message) // row
    data = np.frombuffer(message, np.uint8, count=rows * row).reshape(rows, row)
    batch = max(1, _ROW_BYTES // row)
    buf = np.empty((min(batch, rows), row))
    acc = 0
    for start in range(0, rows, batch):
        part = buf[:min(rows - start, batch)]
        part[...] = data[start:start + batch]
        limbs = (part @ matrix).astype(np.int64)
        words = limbs[:, 0::2] + (limbs[:, 1::2] << 16)  # 4 words at 32-bit spacing, < 2^55
        for w0, w1, w2, w3 in words.tolist():
            acc = (acc * k_stride + w0 + (w1 << 32) + (w2 << 64) + (w3 << 96) + marks) % PRIME
    return _horner(memoryview(message)[rows * row:], k, acc)


def _stride_matrix(k: int, stride: int) -> tuple[npt.NDArray[np.float64], int, int]:
    """(the 15S x 8 matrix of :func:`_strided`, k^S mod P, the constant e of a row's markers).

    Row (j, at) holds 256^u k^(S - j) mod P, u = 14 - at, as 8 little-endian 16-bit limbs:
    for u = 2v, k^(S-j)'s limbs moved up v places, and for u = 2v + 1 those of 256 k^(S-j) (9 limbs),
    the limbs that pass the 8th wrapping round doubled (2^128 = 2 mod P): :data:`_MOVES` picks them.
    """
    powers = [0] * stride  # powers[j] = k^(S - j): the weight of the row's block j (0-based)
    p = 1
    for j in range(stride - 1, -1, -1):
        p = p * k % PRIME
        powers[j] = p
    raw = np.zeros((stride, 18), np.uint8)
    raw[:, 1:17] = np.frombuffer(b"".join(x.to_bytes(16, "little") for x in powers), np.uint8).reshape(stride, 16)
    even = raw[:, 1:17].copy().view("<u2").astype(np.int64)  # k^(S-j): 8 limbs
    odd = raw.view("<u2").astype(np.int64)  # 256 k^(S-j): 9 limbs
    ring = np.concatenate([2 * even, even, 2 * odd[:, :8], odd[:, :1] + 2 * odd[:, 8:], odd[:, 1:]], axis=1)
    return ring[:, _MOVES].reshape(-1, 8).astype(np.float64), powers[0], (sum(powers) << 120) % PRIME


def _moves() -> npt.NDArray[np.intp]:
    """Where :func:`_stride_matrix` finds each limb t of a block's byte ``at``: ``ring`` holds 2 x the
    8 limbs of k^(S-j), then those limbs, then 2 x the first 8 of 256 k^(S-j), then its limb 0 plus
    2 x its limb 8, then its limbs 1-8; limb t of a v-place move is then ring item 8 - v + t of that
    number's part (with limbs that wrapped round doubled)."""
    out = []
    for at in range(_BLOCK_BYTES):
        v, odd = divmod(_BLOCK_BYTES - 1 - at, 2)
        out += [16 * odd + 8 - v + t for t in range(8)]
    return np.array(out, np.intp)


_MOVES = _moves()


def authenticate(message: Message, key: MACKey) -> bytes:
    """The 16-byte tag of ``message``, consuming one one-time pad of ``key``."""
    tag = (poly_hash(message, key.k) + key.next_pad()) % PRIME
    return tag.to_bytes(16, "big")


def verify(message: Message, tag: bytes, key: MACKey) -> bool:
    """Whether ``tag`` authenticates ``message`` (consumes the same pad as the sender did).

    The comparison takes constant time; a failure says only that verification failed.
    """
    expected = authenticate(message, key)
    return hmac.compare_digest(expected, tag)


def forgery_probability(message_bytes: int) -> float:
    """Upper bound on a forger's success per attempt: (number of blocks) / P."""
    return max(1, -(-message_bytes // _BLOCK_BYTES)) / PRIME
