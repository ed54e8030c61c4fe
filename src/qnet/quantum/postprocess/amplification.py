"""Privacy amplification by Toeplitz hashing, with carry-less multiplication or the FFT.

A random m x n Toeplitz matrix over GF(2) is a 2-universal hash family (Krawczyk, CRYPTO '94; Carter
and Wegman 1979), so by the leftover hash lemma its output is eps-close to a uniform key when m is
the finite-key length of the block (Lim et al. 2014, eq. 1). The product T x is a slice of the
integer convolution of the seed t (n + m - 1 random bits defining the diagonals) with the key x,
reduced mod 2: computed with real FFTs of length >= n + m - 1 (scipy.fft), exact in float64 for
n < 2^40 because every convolution value is an integer at most n.

Two ways to the same bits: with the CPU's carry-less multiply (``clmul``: PCLMULQDQ through numba,
a Karatsuba-style split of the Toeplitz product, about 120 Mbit/s at n = 2^24 on one core here) where
the CPU has one and the matrix is at most ``CLMUL_MAX_BITS`` on a side, else with the FFT (about
24 Mbit/s at 2^24, O(n log n), so the faster beyond 2^28 bits). ``engine`` picks one by name.

The chain uses the modified Toeplitz matrix (I_m | T'), T' a random m x (n - m) Toeplitz matrix
(Hayashi and Tsurumaru, IEEE Trans. Inf. Theory 62, 2213 (2016)): it is still 2-universal (for
x = (x1, x2) != 0, x2 = 0 forces x1 != 0 so no collision; x2 != 0 makes T' x2 uniform, so
Pr[T' x2 = x1] = 2^-m), needs n - 1 seed bits instead of n + m - 1, and its FFTs have length n
instead of n + m: half the work at m = n/2.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import fft

from qnet.quantum.postprocess import clmul

__all__ = ["ENGINES", "modified_toeplitz_hash_pair", "pick_engine", "toeplitz_hash", "toeplitz_hash_direct",
           "toeplitz_hash_pair"]

U8 = npt.NDArray[np.uint8]

ENGINES = ("auto", "clmul", "fft")


def pick_engine(engine: str, rows: int, cols: int) -> str:
    """The engine that computes a rows x cols Toeplitz product: "clmul" or "fft".

    Raises:
        ValueError: for an engine not in ENGINES, or "clmul" on a CPU without carry-less multiply.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown privacy amplification engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "clmul" and not clmul.available():
        raise ValueError("engine 'clmul' needs a CPU with carry-less multiply (PCLMULQDQ); this one has none, "
                         "use 'fft' or 'auto'")
    if engine == "auto":
        return "clmul" if clmul.available() and max(rows, cols) <= clmul.CLMUL_MAX_BITS else "fft"
    return engine


def toeplitz_hash(key: U8, seed: U8, m: int, *, workers: int = 1, engine: str = "auto") -> U8:
    """The first m bits of T x, for the Toeplitz matrix T[i, j] = seed[i - j + n - 1].

    Args:
        key: the n key bits x.
        seed: n + m - 1 random bits (public), the diagonals of T.
        m: output length, 0 <= m <= n.
        workers: FFT threads (1: the benchmark goal is per core).
        engine: "auto", "clmul" or "fft" (see the module docstring).

    Raises:
        ValueError: if the lengths do not fit, or for an engine this CPU cannot run.
    """
    return toeplitz_hash_pair(key, None, seed, m, workers=workers, engine=engine)[0]


def toeplitz_hash_pair(key_a: U8, key_b: U8 | None, seed: U8, m: int, *, workers: int = 1,
                       engine: str = "auto") -> tuple[U8, U8]:
    """Hash one or two keys with the same Toeplitz matrix, transforming the seed only once (the
    simulation computes both ends' hashes; a real end hashes its own key).

    Raises:
        ValueError: if the lengths do not fit.
    """
    n = key_a.size
    if not 0 <= m <= n or (m > 0 and seed.size != n + m - 1) or (key_b is not None and key_b.size != n):
        raise ValueError(f"need 0 <= m <= n, keys of equal length and a seed of n + m - 1 bits; "
                         f"got n={n}, m={m}, seed={seed.size}")
    empty = np.zeros(0, dtype=np.uint8)
    if m == 0:
        return empty, empty
    return _products((key_a, key_b), seed, m, workers, engine)


def modified_toeplitz_hash_pair(key_a: U8, key_b: U8 | None, seed: U8, m: int, *,
                                workers: int = 1, engine: str = "auto") -> tuple[U8, U8]:
    """(I_m | T') x = x[:m] xor T' x[m:] for one or two keys, T'[i, j] = seed[i - j + n - m - 1].

    Args:
        key_a, key_b: n key bits each (key_b may be None).
        seed: n - 1 random bits (public), the diagonals of T'.
        m: output length, 0 <= m < n.
        workers, engine: as for ``toeplitz_hash``.

    Raises:
        ValueError: if the lengths do not fit, or for an engine this CPU cannot run.
    """
    n = key_a.size
    if not 0 <= m < max(n, 1) or (m > 0 and seed.size != n - 1) or (key_b is not None and key_b.size != n):
        raise ValueError(f"need 0 <= m < n, keys of equal length and a seed of n - 1 bits; "
                         f"got n={n}, m={m}, seed={seed.size}")
    empty = np.zeros(0, dtype=np.uint8)
    if m == 0:
        return empty, empty
    tails = _products((key_a[m:], None if key_b is None else key_b[m:]), seed, m, workers, engine)
    return key_a[:m] ^ tails[0], (key_b[:m] ^ tails[1] if key_b is not None else empty)


def _products(keys: tuple[U8, U8 | None], seed: U8, m: int, workers: int, engine: str = "fft") -> tuple[U8, U8]:
    """The first m bits of T x for each key, T[i, j] = seed[i - j + n - 1], n the key length.

    A cyclic convolution of length L >= n + m - 1 = seed.size leaves the needed slice
    [n - 1, n + m - 1) untouched by wrap-around, so L is the seed's length rounded up to a fast size.
    """
    n = keys[0].size
    empty = np.zeros(0, dtype=np.uint8)
    if pick_engine(engine, m, n) == "clmul":
        return (clmul.toeplitz_product(keys[0], seed, m),
                clmul.toeplitz_product(keys[1], seed, m) if keys[1] is not None else empty)
    size = fft.next_fast_len(seed.size, real=True)
    seed_spectrum = fft.rfft(seed.astype(np.float64), size, workers=workers)

    def one(key: U8) -> U8:
        spectrum = fft.rfft(key.astype(np.float64), size, workers=workers)
        spectrum *= seed_spectrum
        conv = fft.irfft(spectrum, size, workers=workers, overwrite_x=True)[n - 1:n - 1 + m]
        bits: U8 = (np.rint(conv).astype(np.int64) & 1).astype(np.uint8)
        return bits

    return one(keys[0]), (one(keys[1]) if keys[1] is not None else empty)


def toeplitz_hash_direct(key: U8, seed: U8, m: int) -> U8:
    """The same product by the definition, O(m n): a reference for tests on small inputs."""
    n = key.size
    out = np.zeros(m, dtype=np.uint8)
    for i in range(m):
        row = seed[i:i + n][::-1]  # T[i, j] = seed[i - j + n - 1]
        out[i] = int(np.bitwise_and(row, key).sum()) & 1
    return out
