"""Benchmark: privacy amplification by Toeplitz hashing at n = 2^24, one core.

Goal (issue 3): >= 50 Mbit/s at n = 2^24. Anchor, measured side by side: a plain numpy FFT
Toeplitz hash (numpy.fft at the next power of two), which the issue puts at about 4 Mbit/s on
these cores. Measured: the plain m x n Toeplitz hash (same bits as the anchor, checked) and the
modified Toeplitz (I | T') hash the chain uses (Hayashi-Tsurumaru 2016; checked against x[:m] xor
the anchor's T' x[m:]).

Run: python benchmarks/amplification.py [--log2n 24] [--ratio 0.5]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_of, emit, machine, one_core

from qnet.quantum.postprocess.amplification import modified_toeplitz_hash_pair, toeplitz_hash


def plain_numpy(key: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """The anchor: numpy's FFT at a power-of-two length, nothing else."""
    n = key.size
    size = 1 << int(np.ceil(np.log2(n + m - 1)))
    conv = np.fft.irfft(np.fft.rfft(seed, size) * np.fft.rfft(key, size), size)[n - 1:n - 1 + m]
    return (np.rint(conv).astype(np.int64) & 1).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log2n", type=int, default=24)
    parser.add_argument("--ratio", type=float, default=0.5, help="output length m / n")
    args = parser.parse_args()
    pinned = one_core()
    n = 1 << args.log2n
    m = int(n * args.ratio)
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    ours_s, ours = best_of(lambda: toeplitz_hash(key, seed, m), repeat=3)
    mod_s, (mod, _) = best_of(lambda: modified_toeplitz_hash_pair(key, None, seed[:n - 1], m), repeat=3)
    anchor_s, anchor = best_of(lambda: plain_numpy(key, seed, m), repeat=3)
    same = bool(np.array_equal(ours, anchor))
    mod_same = bool(np.array_equal(mod, key[:m] ^ plain_numpy(key[m:], seed[:n - 1], m)))
    ours_mbps, mod_mbps, anchor_mbps = n / ours_s / 1e6, n / mod_s / 1e6, n / anchor_s / 1e6
    print(f"machine: {machine()} ({pinned})")
    print(f"Toeplitz PA, n = 2^{args.log2n}, m = {m}: modified (I|T') {mod_mbps:.1f} Mbit/s ({mod_s:.2f} s), "
          f"plain Toeplitz {ours_mbps:.1f} Mbit/s ({ours_s:.2f} s), "
          f"numpy FFT anchor {anchor_mbps:.1f} Mbit/s ({anchor_s:.2f} s); ratio {mod_mbps / anchor_mbps:.2f}x; "
          f"outputs checked: {same and mod_same}")
    emit({"benchmark": "amplification", "n": n, "m": m, "mbit_per_s": mod_mbps, "plain_toeplitz_mbit_per_s": ours_mbps,
          "anchor_mbit_per_s": anchor_mbps, "ratio_vs_anchor": mod_mbps / anchor_mbps, "identical": same and mod_same})

if __name__ == "__main__":
    main()
