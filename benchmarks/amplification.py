"""Benchmark: privacy amplification by Toeplitz hashing at n = 2^24, one core.

Goal (issue 3): >= 50 Mbit/s at n = 2^24. Anchor, measured side by side: a plain numpy FFT
Toeplitz hash (numpy.fft at the next power of two), which the issue puts at about 4 Mbit/s on
these cores. Measured: the modified Toeplitz (I | T') hash the chain uses (Hayashi-Tsurumaru 2016)
with each engine, carry-less multiply ("clmul", the default where the CPU has it) and the FFT,
every output checked bit for bit against x[:m] xor the anchor's T' x[m:]; and the plain m x n
Toeplitz hash (the anchor's bits).

Run: python benchmarks/amplification.py [--log2n 24] [--ratio 0.5]
     python benchmarks/amplification.py --sweep 20,22,24,26,27   (clmul against the FFT by size)
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
from _common import best_of, emit, machine, one_core

from qnet.quantum.postprocess import clmul
from qnet.quantum.postprocess.amplification import modified_toeplitz_hash_pair, toeplitz_hash


def plain_numpy(key: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """The anchor: numpy's FFT at a power-of-two length, nothing else."""
    n = key.size
    size = 1 << int(np.ceil(np.log2(n + m - 1)))
    conv = np.fft.irfft(np.fft.rfft(seed, size) * np.fft.rfft(key, size), size)[n - 1:n - 1 + m]
    return (np.rint(conv).astype(np.int64) & 1).astype(np.uint8)


def engines() -> list[str]:
    return ["clmul", "fft"] if clmul.available() else ["fft"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log2n", type=int, default=24)
    parser.add_argument("--ratio", type=float, default=0.5, help="output length m / n")
    parser.add_argument("--sweep", help="comma-separated log2 n: time each engine at each size and stop")
    args = parser.parse_args()
    pinned = one_core()
    print(f"machine: {machine()} ({pinned}); carry-less multiply: {clmul.vector_words()} words per instruction")
    if args.sweep:
        sweep([int(v) for v in args.sweep.split(",")], args.ratio)
        return
    n = 1 << args.log2n
    m = int(n * args.ratio)
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    anchor_s, anchor = best_of(lambda: plain_numpy(key, seed, m), repeat=3)
    expected = key[:m] ^ plain_numpy(key[m:], seed[:n - 1], m)
    modified_toeplitz_hash_pair(key[:4096], None, seed[:4095], 2048)  # compile the kernels first
    result: dict[str, float | bool | int | str] = {"benchmark": "amplification", "n": n, "m": m}
    checked = True
    for engine in engines():
        seconds, (out, _) = best_of(partial(modified_toeplitz_hash_pair, key, None, seed[:n - 1], m, engine=engine))
        plain_s, plain = best_of(partial(toeplitz_hash, key, seed, m, engine=engine), repeat=1)
        same = bool(np.array_equal(out, expected)) and bool(np.array_equal(plain, anchor))
        checked = checked and same
        print(f"Toeplitz PA, n = 2^{args.log2n}, m = {m}, engine {engine}: "
              f"modified (I|T') {n / seconds / 1e6:.1f} Mbit/s ({seconds:.3f} s), "
              f"plain Toeplitz {n / plain_s / 1e6:.1f} Mbit/s ({plain_s:.3f} s); checked: {same}")
        result[f"{engine}_mbit_per_s"] = n / seconds / 1e6
    best = max(float(result[f"{e}_mbit_per_s"]) for e in engines())
    anchor_mbps = n / anchor_s / 1e6
    print(f"numpy FFT anchor {anchor_mbps:.1f} Mbit/s ({anchor_s:.2f} s); ratio {best / anchor_mbps:.2f}x; "
          f"all outputs checked: {checked}")
    emit({**result, "mbit_per_s": best, "anchor_mbit_per_s": anchor_mbps, "ratio_vs_anchor": best / anchor_mbps,
          "identical": checked})


def sweep(sizes: list[int], ratio: float) -> None:
    """Seconds per modified Toeplitz hash for each engine and size: where clmul stops winning."""
    rng = np.random.default_rng(5)
    modified_toeplitz_hash_pair(np.ones(4096, np.uint8), None, np.ones(4095, np.uint8), 2048)
    for log2n in sizes:
        n, m = 1 << log2n, int((1 << log2n) * ratio)
        key, seed = rng.integers(0, 2, n, dtype=np.uint8), rng.integers(0, 2, n - 1, dtype=np.uint8)
        repeat = 2 if log2n <= 24 else 1
        times = {e: best_of(partial(modified_toeplitz_hash_pair, key, None, seed, m, engine=e), repeat=repeat)
                 for e in engines()}
        same = len({tuple(np.packbits(out[0])) for _, out in times.values()}) == 1
        print(f"2^{log2n}: " + ", ".join(f"{e} {s:.3f} s ({n / s / 1e6:.1f} Mbit/s)" for e, (s, _) in times.items())
              + f"; equal: {same}", flush=True)


if __name__ == "__main__":
    main()
