"""Anchor: SeQUeNCe's BB84 + Cascade (pip install sequence), timed on the same amount of key.

Runs in an interpreter where ``sequence`` is installed (a separate virtualenv is fine: SeQUeNCe
pins its own dependencies). Prints one JSON object: reconciled bits, disclosed bits, QBER, wall time.
Usage: python sequence_bb84_cascade.py --frames 10 --distance-km 10
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10, help="Cascade frames of 10240 bits")
    parser.add_argument("--distance-km", type=float, default=10.0)
    parser.add_argument("--polarization-fidelity", type=float, default=0.98,
                        help="SeQUeNCe's channel fidelity; 1 - fidelity is roughly the QBER")
    args = parser.parse_args()

    from sequence.components.optical_channel import ClassicalChannel, QuantumChannel
    from sequence.kernel.timeline import Timeline
    from sequence.qkd.BB84 import pair_bb84_protocols
    from sequence.qkd.cascade import pair_cascade_protocols
    from sequence.topology.node import QKDNode

    class Sink:  # the upper protocol that receives the reconciled keys
        def __init__(self) -> None:
            self.keys: list[int] = []

        def pop(self, key: int) -> None:
            self.keys.append(key)

    tl = Timeline(1e16)
    alice, bob = QKDNode("alice", tl, stack_size=2), QKDNode("bob", tl, stack_size=2)
    alice.set_seed(1)
    bob.set_seed(2)
    pair_bb84_protocols(alice.protocol_stack[0], bob.protocol_stack[0])
    pair_cascade_protocols(alice.protocol_stack[1], bob.protocol_stack[1])
    metres = args.distance_km * 1000
    for sender, receiver, i in ((alice, bob, 0), (bob, alice, 1)):
        QuantumChannel(f"qc{i}", tl, attenuation=0.0002, distance=metres,
                       polarization_fidelity=args.polarization_fidelity).set_ends(sender, receiver.name)
        ClassicalChannel(f"cc{i}", tl, distance=metres).set_ends(sender, receiver.name)
    sink_a, sink_b = Sink(), Sink()
    alice.protocol_stack[1].upper_protocols.append(sink_a)
    bob.protocol_stack[1].upper_protocols.append(sink_b)
    tl.init()
    keylen = 256
    alice.protocol_stack[1].push(keylen, frame_num=args.frames)
    started = time.perf_counter()
    tl.run()
    seconds = time.perf_counter() - started
    cascade_a = alice.protocol_stack[1]
    bits = len(cascade_a.valid_keys) * keylen
    print(json.dumps({"anchor": "SeQUeNCe BB84+Cascade", "reconciled_bits": bits,
                      "disclosed_bits": cascade_a.disclosed_bits_counter, "wall_seconds": seconds,
                      "residual_error_rate": cascade_a.error_bit_rate,
                      "qber": _qber(alice.protocol_stack[0], bob.protocol_stack[0])}))


def _qber(bb84_a: object, bb84_b: object) -> float | None:
    """SeQUeNCe's BB84 keeps its error rates in ``error_rates`` (a list per key)."""
    rates = getattr(bb84_a, "error_rates", None) or getattr(bb84_b, "error_rates", None)
    return sum(rates) / len(rates) if rates else None


if __name__ == "__main__":
    main()
