"""Benchmark: the whole post-processing chain, end to end, one core; and SeQUeNCe side by side.

Goal (issue 3): the chain (sifting, estimation, Cascade, verification, Toeplitz privacy
amplification, authentication) processes >= 2 Mbit/s of sifted key on one core. The photon-level
simulation that feeds it is timed separately. Anchor, measured side by side when available:
SeQUeNCe's BB84 + Cascade (``pip install sequence`` in any Python; pass that interpreter with
``--anchor-python``), timed producing reconciled key from the same fibre length.

Run: python benchmarks/chain.py [--distance-km 25] [--pulses 1e9] [--anchor-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import emit, machine, one_core

from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.finite_key import optimal_settings
from qnet.quantum.bb84 import simulate_bb84
from qnet.quantum.postprocess.authentication import AuthKeyPool
from qnet.quantum.postprocess.pipeline import PostProcessor

DEVICE = BB84DecoyParams(attenuation_db_per_km=0.2, detector_efficiency=0.1, dark_count_prob=1.2e-6,
                         misalignment=0.01, ec_efficiency=1.16, decoy="vacuum+weak")


def run_anchor(python: str, distance_km: float, frames: int) -> dict[str, float] | None:
    """SeQUeNCe's BB84 + Cascade in its own interpreter; None if it cannot run."""
    script = Path(__file__).parent / "anchors" / "sequence_bb84_cascade.py"
    try:
        done = subprocess.run([python, str(script), "--frames", str(frames), "--distance-km", str(distance_km)],
                              capture_output=True, text=True, timeout=1800, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"anchor SeQUeNCe could not run: {exc}", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distance-km", type=float, default=25.0)
    parser.add_argument("--pulses", type=float, default=1e9)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--anchor-python", default=None, help="a Python with `sequence` installed")
    parser.add_argument("--anchor-frames", type=int, default=5, help="SeQUeNCe Cascade frames (10240 bits each)")
    args = parser.parse_args()
    pinned = one_core()
    eta_ch = 10 ** (-0.02 * args.distance_km)
    eta = eta_ch * DEVICE.detector_efficiency
    settings = optimal_settings(replace(DEVICE, block_size=1e6), eta, pulses=args.pulses)
    chain = PostProcessor(DEVICE, settings, AuthKeyPool(bytes(range(256))))
    rng = np.random.default_rng(1)
    warm = simulate_bb84(DEVICE, settings, pulses=10**7, channel_transmittance=eta_ch, rng=rng)
    chain.process(warm, rng)  # JIT warm-up
    sim_s = chain_s = 0.0
    sifted = final = 0
    for _ in range(args.blocks):
        start = time.perf_counter()
        events = simulate_bb84(DEVICE, settings, pulses=int(args.pulses), channel_transmittance=eta_ch, rng=rng)
        sim_s += time.perf_counter() - start
        start = time.perf_counter()
        result = chain.process(events, rng)
        chain_s += time.perf_counter() - start
        assert np.array_equal(result.alice_key, result.bob_key)
        sifted += result.report.sifted_bits
        final += result.report.final_bits
    mbps = sifted / chain_s / 1e6
    print(f"machine: {machine()} ({pinned})")
    print(f"chain at {args.distance_km:g} km, {args.blocks} blocks of {args.pulses:.0e} pulses: {sifted} sifted bits "
          f"in {chain_s:.2f} s = {mbps:.2f} Mbit/s of sifted key ({final / chain_s / 1e6:.2f} Mbit/s final key); "
          f"photon simulation {args.blocks * args.pulses / sim_s / 1e9:.1f} Gpulse/s")
    out = {"benchmark": "chain", "sifted_mbit_per_s": mbps, "final_mbit_per_s": final / chain_s / 1e6,
           "simulation_gpulses_per_s": args.blocks * args.pulses / sim_s / 1e9, "sifted_bits": sifted}
    if args.anchor_python:
        anchor = run_anchor(args.anchor_python, args.distance_km, args.anchor_frames)
        if anchor:
            kbps = anchor["reconciled_bits"] / anchor["wall_seconds"] / 1e3
            print(f"anchor SeQUeNCe BB84+Cascade: {anchor['reconciled_bits']} reconciled bits in "
                  f"{anchor['wall_seconds']:.1f} s = {kbps:.2f} kbit/s -> qnet is {mbps * 1e3 / kbps:.0f}x faster")
            out.update(anchor_kbit_per_s=kbps, ratio_vs_anchor=mbps * 1e3 / kbps)
    else:
        print("anchor SeQUeNCe: not run (pass --anchor-python with `sequence` installed)")
    emit(out)


if __name__ == "__main__":
    main()
