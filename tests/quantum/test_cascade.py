"""Cascade: every error corrected (frame error rate measured), efficiency f <= 1.10 for QBER 1-5 %
on 10^6-bit blocks, and the leak counted exactly as the parities Alice disclosed."""

from __future__ import annotations

import numpy as np
import pytest

from qnet.physics.entropy import binary_entropy
from qnet.quantum.postprocess.cascade import cascade, cascade_schedule


def _pair(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    errors = (rng.random(n) < qber).astype(np.uint8)
    return alice, alice ^ errors


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.03, 0.04, 0.05])
def test_efficiency_on_million_bit_blocks(qber: float) -> None:
    """f = leak / (n h(QBER)) <= 1.10 on 10^6 bits, and Bob ends with Alice's key."""
    alice, bob = _pair(10**6, qber, seed=int(qber * 1000))
    result = cascade(alice, bob, qber, seed=1)
    actual = float(np.mean(alice != bob))
    assert np.array_equal(result.corrected, alice)
    assert result.leak / (alice.size * float(binary_entropy(actual))) <= 1.10


def test_frame_error_rate_is_measured_and_small() -> None:
    """Over 200 frames of 10^5 bits at QBER 3 % no frame keeps an error (FER < 1/200)."""
    failures = 0
    for seed in range(200):
        alice, bob = _pair(10**5, 0.03, seed)
        failures += int(not np.array_equal(cascade(alice, bob, 0.03, seed=seed).corrected, alice))
    assert failures == 0


def test_leak_is_the_parities_alice_disclosed() -> None:
    """The leak equals the number of disclosed parities, the first n/k1 of which are the parities of
    Alice's first-pass blocks."""
    alice, bob = _pair(10_000, 0.02, seed=3)
    result = cascade(alice, bob, 0.02, seed=9)
    k1 = int(cascade_schedule(10_000, 0.02)[0])
    first = [int(alice[lo:lo + k1].sum() % 2) for lo in range(0, 10_000, k1)]
    assert result.leak == result.parities.size
    assert result.parities[: len(first)].tolist() == first
    errors = int(np.sum(alice != bob))
    assert result.leak >= len(first) + errors  # at least one parity per error found


def test_no_errors_costs_only_block_parities() -> None:
    """Identical keys: Alice discloses one parity per block and nothing else."""
    alice, _ = _pair(4096, 0.0, seed=1)
    result = cascade(alice, alice.copy(), 0.02, seed=2)
    assert result.leak == sum(-(-4096 // int(k)) for k in cascade_schedule(4096, 0.02))


def test_inputs_are_not_modified_and_lengths_checked() -> None:
    """Bob's array is left alone; mismatched lengths are refused."""
    alice, bob = _pair(1000, 0.05, seed=5)
    before = bob.copy()
    cascade(alice, bob, 0.05, seed=1)
    assert np.array_equal(bob, before)
    with pytest.raises(ValueError, match="same length"):
        cascade(alice, bob[:-1], 0.05, seed=1)
