"""Verification: a universal hash of both corrected keys, compared before privacy amplification.

Alice sends a tag of her key; Bob compares it with the tag of his corrected key. Tags are two
independent polynomial hashes over GF(2^61 - 1) of the key packed in 32-bit words (Carter-Wegman
polynomial hashing), so two different keys of L words collide with probability at most
(L / (2^61 - 1))^2; a frame that fails is discarded. The hash keys are public random numbers chosen
after error correction. Written by hand in numba: a Mersenne-prime multiply needs 128-bit
arithmetic, which numpy lacks, and speed matters here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["MERSENNE61", "TAG_BITS", "fresh_hash_keys", "key_tag", "keys_match"]

MERSENNE61 = (1 << 61) - 1
TAG_BITS = 122
"""Bits a verification tag discloses (two 61-bit hashes): counted as leaked."""


@numba.njit(cache=True)
def _mulmod61(a: np.uint64, b: np.uint64) -> np.uint64:
    """a * b mod 2^61 - 1 for a, b < 2^61, with 32-bit halves (no 128-bit integers needed)."""
    mask32 = np.uint64(0xFFFFFFFF)
    a_hi, a_lo = a >> np.uint64(32), a & mask32
    b_hi, b_lo = b >> np.uint64(32), b & mask32
    mid = a_hi * b_lo + a_lo * b_hi  # < 2^62
    lo = a_lo * b_lo  # < 2^64
    hi = a_hi * b_hi  # < 2^58
    p = np.uint64(MERSENNE61)
    # a*b = hi 2^64 + mid 2^32 + lo; 2^61 = 1 (mod p)
    r = (hi << np.uint64(3)) + (mid >> np.uint64(29)) + ((mid & np.uint64((1 << 29) - 1)) << np.uint64(32))
    r = (r & p) + (r >> np.uint64(61))
    r += (lo & p) + (lo >> np.uint64(61))
    r = (r & p) + (r >> np.uint64(61))
    r = (r & p) + (r >> np.uint64(61))
    return r if r < p else r - p


@numba.njit(cache=True)
def _poly(words: npt.NDArray[np.uint32], k: np.uint64) -> np.uint64:
    p = np.uint64(MERSENNE61)
    acc = np.uint64(0)
    for w in words:
        acc = _mulmod61(acc, k) + np.uint64(w)
        if acc >= p:
            acc -= p
    return _mulmod61(acc, k)


def _words(bits: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    packed = np.packbits(bits)
    pad = (-packed.size) % 4
    return np.frombuffer(np.concatenate([packed, np.zeros(pad, np.uint8)]).tobytes(), dtype=">u4").astype(np.uint32)


def key_tag(bits: npt.NDArray[np.uint8], hash_keys: tuple[int, int]) -> tuple[int, int]:
    """The verification tag of a key: two polynomial hashes, with the bit length mixed in."""
    words = np.concatenate([_words(bits), np.array([bits.size & 0xFFFFFFFF], dtype=np.uint32)])
    return tuple(int(_poly(words, np.uint64(k % MERSENNE61))) for k in hash_keys)  # type: ignore[return-value]


def fresh_hash_keys(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> tuple[int, int]:
    """Two hash keys in [1, 2^61 - 1) from the OS CSPRNG (or ``random_bytes``), drawn after error
    correction so that no error pattern can be chosen to collide."""
    return tuple(int.from_bytes(random_bytes(8), "big") % (MERSENNE61 - 1) + 1 for _ in "ab")  # type: ignore[return-value]


def keys_match(alice: npt.NDArray[np.uint8], bob: npt.NDArray[np.uint8]) -> bool:
    """Whether Bob's corrected key passes verification against Alice's (fresh hash keys)."""
    hash_keys = fresh_hash_keys()
    return alice.size == bob.size and key_tag(alice, hash_keys) == key_tag(bob, hash_keys)
