"""Verification, privacy amplification and authentication, step by step."""

from __future__ import annotations

import random

import numpy as np
import pytest

from qnet.quantum.postprocess import clmul
from qnet.quantum.postprocess.amplification import (
    modified_toeplitz_hash_pair,
    toeplitz_hash,
    toeplitz_hash_direct,
)
from qnet.quantum.postprocess.authentication import AuthenticationFailed, AuthKeyPool, Transcript, authenticate_block
from qnet.quantum.postprocess.verification import MERSENNE61, _mulmod61, key_tag, keys_match


def test_mulmod61_matches_python_integers() -> None:
    """The 32-bit-halves multiplication mod 2^61 - 1 agrees with exact integers."""
    rng = random.Random(1)
    for _ in range(2000):
        a, b = rng.randrange(MERSENNE61), rng.randrange(MERSENNE61)
        assert int(_mulmod61(np.uint64(a), np.uint64(b))) == a * b % MERSENNE61


def test_verification_detects_any_single_bit_error() -> None:
    """Equal keys match; a key differing in one random bit never matches (1000 trials)."""
    rng = np.random.default_rng(2)
    key = rng.integers(0, 2, 10_000, dtype=np.uint8)
    assert keys_match(key, key.copy())
    for _ in range(1000):
        other = key.copy()
        other[rng.integers(0, key.size)] ^= 1
        assert not keys_match(key, other)


def test_tag_depends_on_length() -> None:
    """A key and the same key with a trailing zero hash differently."""
    key = np.array([1, 0, 1], np.uint8)
    assert key_tag(key, (5, 7)) != key_tag(np.append(key, 0).astype(np.uint8), (5, 7))


ENGINES = [
    "fft",
    pytest.param("clmul", marks=pytest.mark.skipif(not clmul.available(), reason="no carry-less multiply here")),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("n", "m"), [(1, 1), (8, 3), (64, 40), (257, 100), (1000, 1), (1500, 700)])
def test_toeplitz_equals_the_definition(n: int, m: int, engine: str) -> None:
    """Each engine's product is exactly T x over GF(2) (checked against the O(nm) definition)."""
    rng = np.random.default_rng(n + m)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(key, seed, m, engine=engine), toeplitz_hash_direct(key, seed, m))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("n", "m"), [(2, 1), (64, 63), (1000, 300), (4097, 2048)])
def test_modified_toeplitz_equals_identity_then_toeplitz(n: int, m: int, engine: str) -> None:
    """(I | T') x is x[:m] xor T' x[m:], T' by the definition; both keys of a pair get the same matrix."""
    rng = np.random.default_rng(n * m)
    a, b = rng.integers(0, 2, (2, n), dtype=np.uint8)
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    ha, hb = modified_toeplitz_hash_pair(a, b, seed, m, engine=engine)
    assert np.array_equal(ha, a[:m] ^ toeplitz_hash_direct(a[m:], seed, m))
    assert np.array_equal(hb, b[:m] ^ toeplitz_hash_direct(b[m:], seed, m))


def test_modified_toeplitz_collisions_are_rare() -> None:
    """2-universality in practice: two fixed distinct inputs collide with probability 2^-m (m = 4 here:
    about 1/16 of 4000 random seeds, within 5 sigma)."""
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 2, (2, 40), dtype=np.uint8)
    hits = sum(np.array_equal(*modified_toeplitz_hash_pair(x, y, rng.integers(0, 2, 39, dtype=np.uint8), 4))
               for _ in range(4000))
    assert abs(hits - 250) < 5 * (4000 * (1 / 16) * (15 / 16)) ** 0.5


@pytest.mark.parametrize("engine", ENGINES)
def test_toeplitz_hash_is_linear(engine: str) -> None:
    """T(x xor y) = Tx xor Ty: the family is a linear 2-universal hash."""
    rng = np.random.default_rng(9)
    x, y = rng.integers(0, 2, (2, 5000), dtype=np.uint8)
    seed = rng.integers(0, 2, 5000 + 2000 - 1, dtype=np.uint8)

    def h(v: np.ndarray) -> np.ndarray:
        return toeplitz_hash(v, seed, 2000, engine=engine)

    assert np.array_equal(h(x ^ y), h(x) ^ h(y))


def test_toeplitz_rejects_bad_lengths() -> None:
    """m larger than n, or a seed of the wrong size, is refused."""
    with pytest.raises(ValueError, match="n \\+ m - 1"):
        toeplitz_hash(np.zeros(10, np.uint8), np.zeros(5, np.uint8), 3)
    with pytest.raises(ValueError, match="n - 1"):
        modified_toeplitz_hash_pair(np.zeros(10, np.uint8), None, np.zeros(10, np.uint8), 3)
    with pytest.raises(ValueError, match="m < n"):
        modified_toeplitz_hash_pair(np.zeros(10, np.uint8), None, np.zeros(9, np.uint8), 10)


def test_block_authentication_accounts_key_and_catches_tampering() -> None:
    """Two tags per block cost 256 bits of the pool; a transcript altered in transit fails."""
    pool = AuthKeyPool(bytes(range(256)))
    before = pool.available_bits
    sent = Transcript()
    sent.send("alice", b"sifting")
    sent.send("bob", b"bases")
    assert authenticate_block(sent, pool) == 256
    assert pool.available_bits == before - 256  # two 16-byte pads
    altered = Transcript(alice_to_bob=[b"siftinG"], bob_to_alice=[b"bases"])
    with pytest.raises(AuthenticationFailed):
        authenticate_block(sent, pool, received=altered)


def test_pool_runs_dry_without_refills() -> None:
    """Authentication needs key: an empty pool stops the link until it is refilled."""
    pool = AuthKeyPool(bytes(48))
    authenticate_block(Transcript(), pool)
    with pytest.raises(LookupError, match="pool empty"):
        authenticate_block(Transcript(), pool)
    pool.refill(bytes(32))
    assert authenticate_block(Transcript(), pool) == 256


def test_qber_from_a_revealed_sample() -> None:
    """Revealing 10 % of 10^6 bits estimates a 3 % QBER to within 5 sigma and keeps the rest secret."""
    from qnet.quantum.postprocess.estimation import sample_qber

    rng = np.random.default_rng(4)
    alice = rng.integers(0, 2, 10**6, dtype=np.uint8)
    bob = alice ^ (rng.random(10**6) < 0.03).astype(np.uint8)
    qber, secret = sample_qber(alice, bob, 0.1, rng)
    assert abs(qber - 0.03) < 5 * (0.03 * 0.97 / 1e5) ** 0.5
    assert secret.mean() == pytest.approx(0.9, abs=0.005)
    with pytest.raises(ValueError, match="fraction"):
        sample_qber(alice, bob, 1.5, rng)
