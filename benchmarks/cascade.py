"""Benchmark: Cascade throughput and efficiency at QBER 2 % on 10^6-bit frames, one core.

Goal (issue 3): >= 5 Mbit/s of sifted key with f <= 1.10. Anchor: the pure-Python cascade-python
(Rijsman) is not installable from PyPI here, so its published figure (f ~ 1.13-1.24 at about 15-26
kbit/s, quoted in the issue) is the reference; SeQUeNCe's Cascade is measured side by side in
benchmarks/chain.py.

Run: python benchmarks/cascade.py [--bits 1000000] [--qber 0.02] [--frames 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_of, emit, machine, one_core

from qnet.physics.entropy import binary_entropy
from qnet.quantum.postprocess.cascade import cascade

ANCHOR_KBPS = (15.0, 26.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bits", type=int, default=10**6)
    parser.add_argument("--qber", type=float, default=0.02)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    pinned = one_core()
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(args.frames):
        alice = rng.integers(0, 2, args.bits, dtype=np.uint8)
        frames.append((alice, alice ^ (rng.random(args.bits) < args.qber).astype(np.uint8)))
    cascade(frames[0][0][:1000], frames[0][1][:1000], args.qber, seed=0)  # JIT warm-up
    results = []
    seconds = 0.0
    for i, (alice, bob) in enumerate(frames):
        t, r = best_of(lambda a=alice, b=bob, s=i: cascade(a, b, args.qber, seed=s), repeat=3)
        seconds += t
        q = float(np.mean(alice != bob))
        results.append((r.leak / (args.bits * float(binary_entropy(q))), bool(np.array_equal(r.corrected, alice))))
    mbps = args.frames * args.bits / seconds / 1e6
    f_mean, f_max = float(np.mean([f for f, _ in results])), max(f for f, _ in results)
    failures = sum(not ok for _, ok in results)
    lo, hi = ANCHOR_KBPS
    print(f"machine: {machine()} ({pinned})")
    print(f"Cascade, {args.frames} frames of {args.bits} bits at QBER {args.qber:.1%}: "
          f"{mbps:.2f} Mbit/s of sifted key, f = {f_mean:.3f} (max {f_max:.3f}), {failures} frame(s) failed")
    print(f"anchor cascade-python (published, not measured here): {lo:.0f}-{hi:.0f} kbit/s, f 1.13-1.24 "
          f"-> ratio {mbps * 1e3 / hi:.0f}x-{mbps * 1e3 / lo:.0f}x")
    emit({"benchmark": "cascade", "mbit_per_s": mbps, "f_mean": f_mean, "f_max": f_max, "frames": args.frames,
          "frame_failures": failures, "bits": args.bits, "qber": args.qber, "ratio_vs_anchor": mbps * 1e3 / hi})


if __name__ == "__main__":
    main()
