"""Toeplitz products with carry-less multiplication: the same bits as Python's integers and the FFT,
for every register width this CPU has, every tiling of a rectangular matrix, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from qnet.quantum.postprocess import amplification, clmul
from qnet.quantum.postprocess.amplification import modified_toeplitz_hash_pair, pick_engine, toeplitz_hash

needs_clmul = pytest.mark.skipif(not clmul.available(), reason="this CPU has no carry-less multiply")
WIDTHS = [pytest.param(w, marks=pytest.mark.skipif(clmul.vector_words() < w, reason=f"no {w}-word clmul here"))
          for w in (2, 4, 8)]

# (nx, m): single words, ragged edges, the smallest kernels, one split level, wide and tall
# matrices tiled into 2-9 square blocks, and a ratio that pads the last block
SHAPES = [(1, 1), (1, 200), (200, 1), (63, 65), (64, 64), (129, 127), (512, 512), (2048, 2047),
          (3000, 9000), (9000, 3000), (20_000, 2_000), (5_000, 12_345)]


@needs_clmul
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("nx", "m"), SHAPES)
def test_product_equals_python_integer_arithmetic(nx: int, m: int, width: int) -> None:
    """T x from the kernels equals the carry-less product done with Python's big integers."""
    rng = np.random.default_rng(nx * 7 + m)
    x = rng.integers(0, 2, nx, dtype=np.uint8)
    seed = rng.integers(0, 2, nx + m - 1, dtype=np.uint8)
    assert np.array_equal(clmul.toeplitz_product(x, seed, m, width=width), clmul._reference(x, seed, m))


@needs_clmul
@pytest.mark.parametrize(("n", "m"), [(1 << 20, 1 << 19), (1_234_567, 400_001), (1_000_003, 900_000)])
def test_privacy_amplification_engines_agree_bit_for_bit(n: int, m: int) -> None:
    """At the chain's block sizes (many split levels, odd lengths) clmul and the FFT give the same key."""
    rng = np.random.default_rng(n)
    a, b = rng.integers(0, 2, (2, n), dtype=np.uint8)
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    fast = modified_toeplitz_hash_pair(a, b, seed, m, engine="clmul")
    slow = modified_toeplitz_hash_pair(a, b, seed, m, engine="fft")
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    assert not np.array_equal(fast[0], fast[1])


@needs_clmul
def test_one_flipped_seed_or_key_bit_changes_the_output() -> None:
    """Every input bit reaches the output: flipping any one changes the product (a dropped word or
    window would leave it unchanged)."""
    rng = np.random.default_rng(11)
    nx, m = 4096 + 100, 4096 - 50
    x = rng.integers(0, 2, nx, dtype=np.uint8)
    seed = rng.integers(0, 2, nx + m - 1, dtype=np.uint8)
    base = clmul.toeplitz_product(x, seed, m)
    for i in rng.choice(nx, 40, replace=False):
        flipped = x.copy()
        flipped[i] ^= 1
        # column i of T: seed[r - i + nx - 1] over the rows r
        assert np.array_equal(base ^ clmul.toeplitz_product(flipped, seed, m), seed[nx - 1 - i:nx - 1 - i + m])


def test_auto_engine_falls_back_to_the_fft(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without carry-less multiply (or beyond its size limit) "auto" is the FFT and "clmul" is refused by name."""
    monkeypatch.setattr(clmul, "available", lambda: False)
    assert pick_engine("auto", 1000, 1000) == "fft"
    with pytest.raises(ValueError, match="carry-less multiply"):
        pick_engine("clmul", 1000, 1000)
    rng = np.random.default_rng(1)
    key, seed = rng.integers(0, 2, 300, dtype=np.uint8), rng.integers(0, 2, 399, dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(key, seed, 100), amplification.toeplitz_hash_direct(key, seed, 100))


def test_engine_choice_is_validated() -> None:
    """A misspelt engine names the choices; a dimension over the limit goes to the FFT."""
    with pytest.raises(ValueError, match="auto, clmul, fft"):
        pick_engine("clmull", 10, 10)
    assert pick_engine("auto", clmul.CLMUL_MAX_BITS + 1, 10) == "fft"
    assert pick_engine("fft", 10, 10) == "fft"


@needs_clmul
def test_bad_lengths_and_widths_are_refused() -> None:
    """A seed of the wrong length or an impossible register width raises ValueError naming it."""
    x = np.zeros(100, np.uint8)
    with pytest.raises(ValueError, match="nx \\+ m - 1"):
        clmul.toeplitz_product(x, np.zeros(100, np.uint8), 10)
    with pytest.raises(ValueError, match="width"):
        clmul.toeplitz_product(x, np.zeros(109, np.uint8), 10, width=3)
