"""The optional GPU privacy amplification gives the CPU path's bits (runs only where CuPy sees a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from qnet.quantum.postprocess.amplification import modified_toeplitz_hash_pair
from qnet.quantum.postprocess.amplification_gpu import (
    available,
    modified_toeplitz_hash_gpu,
    modified_toeplitz_hash_packed,
)

gpu = pytest.mark.skipif(not available(), reason="no CUDA device with CuPy")


def test_available_is_a_plain_answer() -> None:
    assert available() in (True, False)


@gpu
@pytest.mark.parametrize("n", [2, 1000, 65_537, 1 << 20])
def test_gpu_bits_equal_cpu_bits(n: int) -> None:
    import cupy as cp
    rng = np.random.default_rng(n)
    m = max(1, n // 3)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    cpu, _ = modified_toeplitz_hash_pair(key, None, seed, m)
    assert np.array_equal(cp.asnumpy(modified_toeplitz_hash_gpu(key, seed, m)), cpu)
    packed = modified_toeplitz_hash_packed(np.packbits(key), np.packbits(seed), n, m)
    assert np.array_equal(np.unpackbits(packed)[:m], cpu)


@gpu
def test_gpu_rejects_a_short_seed() -> None:
    with pytest.raises(ValueError, match="seed of n - 1 bits"):
        modified_toeplitz_hash_gpu(np.ones(10, np.uint8), np.ones(5, np.uint8), 4)
