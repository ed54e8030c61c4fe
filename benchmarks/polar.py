"""Benchmark: polar-code reconciliation (one-way, SC decoding): efficiency, frame error rate and
speed on 2^20-bit frames, one core.

The issue asks the one-way code to reach its stated efficiency with a measured frame error rate;
this script measures both at the design target FER of 0.1.

Run: python benchmarks/polar.py [--log2n 20] [--frames 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit, machine, one_core

from qnet.physics.entropy import binary_entropy
from qnet.quantum.postprocess.polar import polar_reconcile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log2n", type=int, default=20)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--target-fer", type=float, default=0.1)
    args = parser.parse_args()
    pinned = one_core()
    n = 1 << args.log2n
    rng = np.random.default_rng(5)
    polar_reconcile(np.zeros(16, np.uint8), np.zeros(16, np.uint8), 0.02)  # JIT warm-up
    print(f"machine: {machine()} ({pinned})")
    rows = []
    for qber in (0.01, 0.02, 0.05):
        polar_reconcile(np.zeros(n, np.uint8), np.zeros(n, np.uint8), qber, target_fer=args.target_fer)  # design
        failures, seconds, leaks = 0, 0.0, []
        for _ in range(args.frames):
            alice = rng.integers(0, 2, n, dtype=np.uint8)
            bob = alice ^ (rng.random(n) < qber).astype(np.uint8)
            start = time.perf_counter()
            result = polar_reconcile(alice, bob, qber, target_fer=args.target_fer)
            seconds += time.perf_counter() - start
            failures += int(not np.array_equal(result.corrected, alice))
            leaks.append(result.leak / (n * float(binary_entropy(qber))))
        f, fer, mbps = float(np.mean(leaks)), failures / args.frames, args.frames * n / seconds / 1e6
        rows.append({"qber": qber, "f": f, "fer": fer, "mbit_per_s": mbps})
        print(f"polar 2^{args.log2n}, QBER {qber:.0%}: f = {f:.3f}, FER {failures}/{args.frames}, {mbps:.2f} Mbit/s")
    emit({"benchmark": "polar", "n": n, "target_fer": args.target_fer, "rows": rows})


if __name__ == "__main__":
    main()
