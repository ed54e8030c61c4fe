"""Cascade: interactive error reconciliation, with the leaked parity bits counted exactly.

Brassard and Salvail (EUROCRYPT '93) Cascade as analysed and tuned by Martinez-Mateo, Pacher,
Peev, Ciurana and Martin, "Demystifying the information reconciliation protocol Cascade", Quantum
Inf. Comput. 15, 453 (2015): the key is shuffled and cut into blocks in each pass; Alice reveals
each block's parity; for every block whose parity differs, a binary search (one revealed parity per
halving) finds and corrects one error; correcting a bit flips the parity of the blocks holding it in
earlier passes, which are then searched in turn (the cascade). Block sizes follow their guidelines:
a first pass of 0.73/QBER bits, a second of three times that, a third of 32 times the second, then
many passes with two blocks (n/2 bits each), which cost only two parities apiece and mop up the last
errors. Fenwick trees keep
the parity of any range of a pass at O(log n), so a binary search in a huge block stays cheap.

Both parties are simulated in one process: the search runs on Alice's and Bob's bits, and the
result reports the number of parity bits Alice disclosed (``leak``), which privacy amplification
subtracts, and Alice's disclosed parities themselves (the transcript that authentication covers).

Pass permutations are pseudo-random affine maps i -> (a i + b) mod n with gcd(a, n) = 1: a
memory-free interleaver, invertible in O(1), that spreads neighbouring positions far apart. Written
by hand in numba: no maintained Python library implements Cascade at this speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from qnet.physics.entropy import reconciliation_efficiency

__all__ = ["CascadeResult", "cascade", "cascade_schedule"]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CascadeResult:
    """The outcome of Cascade on one frame.

    Attributes:
        corrected: Bob's bits after reconciliation.
        leak: parity bits Alice disclosed.
        passes: passes run.
        parities: Alice's disclosed parity bits, in order (what she sent).
        replies: Bob's answers, one per parity: 1 where his parity differed (what he sent).
    """

    corrected: U8 = field(repr=False)
    leak: int
    passes: int
    parities: U8 = field(repr=False)
    replies: U8 = field(repr=False)

    def efficiency(self, qber: float) -> float:
        """f = leak / (n h(QBER)): 1 is the Shannon limit."""
        return reconciliation_efficiency(self.leak, self.corrected.size, qber)


def cascade_schedule(n: int, qber: float, passes: int = 16) -> I64:
    """Block sizes per pass: k1 = ceil(0.73/Q) (Brassard-Salvail's first block), k2 = 3 k1,
    k3 = 32 k2, then n/2 for the remaining passes (the two-block passes of Martinez-Mateo et al.
    2015, sec. 5). The factors 3 and 32 were tuned here on 10^6-bit frames: f = 1.05 at QBER 1 % to
    1.075 at 5 %, with little spread between frames (docs/benchmarks.md)."""
    q = min(max(qber, 1e-4), 0.25)
    half = max((n + 1) // 2, 1)
    k1 = min(max(2, math.ceil(0.73 / q)), half)
    k2 = min(3 * k1, half)
    k3 = min(32 * k2, half)
    sizes = [k1, k2, k3] + [half] * max(passes - 3, 0)
    return np.array(sizes[:passes], dtype=np.int64)


def cascade(alice: U8, bob: U8, qber: float, *, seed: int, passes: int = 16,
            schedule: I64 | None = None) -> CascadeResult:
    """Reconcile Bob's bits with Alice's.

    Args:
        alice: Alice's bits (0/1).
        bob: Bob's bits, same length; not modified.
        qber: the estimated error rate, which sets the block sizes.
        seed: public randomness for the pass permutations (both parties know it).
        passes: number of passes (used when ``schedule`` is not given).
        schedule: block size of each pass, to override the default.
    """
    n = alice.size
    if bob.size != n:
        raise ValueError(f"alice and bob must have the same length, got {n} and {bob.size}")
    sizes = cascade_schedule(n, qber, passes) if schedule is None else np.asarray(schedule, dtype=np.int64)
    maps = _affine_maps(n, len(sizes), seed)
    corrected = bob.astype(np.uint8, copy=True)
    if n == 0:
        return CascadeResult(corrected, 0, 0, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.uint8))
    leak, messages = _cascade(alice.astype(np.uint8), corrected, sizes, maps)
    said = messages[:leak].astype(np.uint8)
    return CascadeResult(corrected, int(leak), len(sizes), said & np.uint8(1), said >> np.uint8(1))


def _affine_maps(n: int, count: int, seed: int) -> I64:
    """(a, b, a^-1 mod n) per pass; the first pass is the identity."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((count, 3), dtype=np.int64)
    maps[0] = (1, 0, 1)
    for j in range(1, count):
        while True:
            a = int(rng.integers(1, max(n, 2)))
            if math.gcd(a, n) == 1:
                break
        maps[j] = (a, int(rng.integers(0, max(n, 1))), pow(a, -1, n) if n > 1 else 0)
    return maps


@numba.njit(cache=True)
def _build(bits: npt.NDArray[np.uint8], a: int, b: int, prefix: npt.NDArray[np.uint8],
           tree: npt.NDArray[np.uint8], e: npt.NDArray[np.uint8]) -> None:
    """For one pass with map i -> (a i + b) mod n: Alice's prefix parities in permuted order, and a
    Fenwick (binary indexed) tree of the error pattern in permuted order, so that the parity of any
    range costs O(1) for Alice and O(log n) for the errors, however large the block."""
    n = bits.size
    v = b % n
    prefix[0] = 0
    for i in range(n):
        prefix[i + 1] = prefix[i] ^ bits[v]
        tree[i + 1] = e[v]
        v += a
        if v >= n:
            v -= n
    for i in range(1, n + 1):  # linear-time Fenwick build
        parent = i + (i & -i)
        if parent <= n:
            tree[parent] ^= tree[i]


@numba.njit(cache=True)
def _prefix(tree: npt.NDArray[np.uint8], t: int) -> int:
    """XOR of the first t entries of a Fenwick tree."""
    acc = 0
    while t > 0:
        acc ^= tree[t]
        t -= t & -t
    return acc


@numba.njit(cache=True)
def _toggle(tree: npt.NDArray[np.uint8], t: int) -> None:
    """Flip entry t (0-based) of a Fenwick tree."""
    i = t + 1
    while i < tree.size:
        tree[i] ^= 1
        i += i & -i


@numba.njit(cache=True)
def _grow(arr: npt.NDArray[Any], used: int) -> npt.NDArray[Any]:
    """The array (any dtype: numba compiles one version per type), doubled when index ``used``
    would not fit."""
    if used < arr.size:
        return arr
    bigger = np.empty(2 * arr.size + 64, dtype=arr.dtype)
    bigger[: arr.size] = arr
    return bigger


@numba.njit(cache=True)
def _open_pass(j: int, k: int, n: int, prefix: npt.NDArray[np.uint8], tree: npt.NDArray[np.uint8],
               odd: npt.NDArray[np.uint8], offset: int, parities: npt.NDArray[np.uint8], leak: int,
               stack: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint8], int, npt.NDArray[np.int64], int]:
    """Alice discloses the parity of every block of pass j; blocks whose error parity is odd go on
    the stack. Returns the (possibly grown) parity array, the leak, the stack and its top."""
    top = 0
    for blk in range((n + k - 1) // k):
        lo, hi = blk * k, min(n, (blk + 1) * k)
        odd[offset + blk] = _prefix(tree, hi) ^ _prefix(tree, lo)
        parities = _grow(parities, leak + 1)
        parities[leak] = (prefix[hi] ^ prefix[lo]) | (odd[offset + blk] << 1)  # Alice's parity, Bob's reply
        leak += 1
        if odd[offset + blk]:
            stack = _grow(stack, top + 2)
            stack[top] = j
            stack[top + 1] = blk
            top += 2
    return parities, leak, stack, top


@numba.njit(cache=True)
def _cascade(alice: npt.NDArray[np.uint8], bob: npt.NDArray[np.uint8], sizes: npt.NDArray[np.int64],
             maps: npt.NDArray[np.int64]) -> tuple[int, npt.NDArray[np.uint8]]:
    n = alice.size
    e = alice ^ bob  # the error pattern; Bob corrects it bit by bit
    passes = sizes.size
    offsets = np.zeros(passes + 1, dtype=np.int64)
    for j in range(passes):
        offsets[j + 1] = offsets[j] + (n + sizes[j] - 1) // sizes[j]
    odd = np.zeros(offsets[passes], dtype=np.uint8)  # error parity of every block of every pass
    prefix = np.zeros((passes, n + 1), dtype=np.uint8)
    trees = np.zeros((passes, n + 1), dtype=np.uint8)
    stack = np.empty(2 * offsets[passes] + 64, dtype=np.int64)
    parities = np.empty(offsets[passes] + 1024, dtype=np.uint8)
    leak = 0
    for j in range(passes):
        _build(alice, maps[j, 0], maps[j, 1], prefix[j], trees[j], e)
        parities, leak, stack, top = _open_pass(j, sizes[j], n, prefix[j], trees[j], odd, offsets[j],
                                                parities, leak, stack)
        while top > 0:
            top -= 2
            i, blk = stack[top], stack[top + 1]
            if not odd[offsets[i] + blk]:
                continue
            lo, hi = blk * sizes[i], min(n, (blk + 1) * sizes[i])
            while hi - lo > 1:  # binary search: one disclosed parity per halving
                mid = (lo + hi) // 2
                differs = _prefix(trees[i], mid) ^ _prefix(trees[i], lo)
                parities = _grow(parities, leak + 1)
                parities[leak] = (prefix[i, mid] ^ prefix[i, lo]) | (differs << 1)
                leak += 1
                if differs:
                    hi = mid
                else:
                    lo = mid
            pos = (maps[i, 0] * lo + maps[i, 1]) % n
            e[pos] ^= 1
            bob[pos] ^= 1
            for p in range(j + 1):  # the corrected bit flips its block's parity in every pass so far
                t = (pos - maps[p, 1]) % n * maps[p, 2] % n
                _toggle(trees[p], t)
                owner = t // sizes[p]
                odd[offsets[p] + owner] ^= 1
                if odd[offsets[p] + owner]:
                    stack = _grow(stack, top + 2)
                    stack[top] = p
                    stack[top + 1] = owner
                    top += 2
    return leak, parities
