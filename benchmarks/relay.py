"""Benchmark: keys relayed through trusted nodes over four hops, end to end, on these cores.

Goal (issue 5): >= 200 relayed 256-bit keys/s end to end over 4 hops. Five KMEs in a line
(A-B-C-D-E, each its own process with its SQLite store), pre-filled by the PRNG stand-in source
and restarted without feeds so that the figure is the relay's; clients ask A for keys for an SAE
at E (enc_keys; A answers once E has stored them) and fetch them at E (dec_keys), checking that
both copies are equal. The load generator shares the two cores with the five servers.

A coalesces concurrent requests for E: while one relay is in flight the others queue and go
together in the next message (one signature and one round trip per hop for all), so the one-key
figure grows with the number of concurrent clients; 16 is the default, and --concurrency sets it.

Anchor: no independent trusted-node relay installs from a registry (SeQUeNCe and NetSquid model
entanglement, not QKD key relay; the Y.3803 KMs of the field tests are not public), so none is
measured side by side.

Run: python benchmarks/relay.py [--seconds 15] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine
from kme import _load

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import LiveNet, start_net

SPEC = """name: line5
nodes: [{name: A, kind: user_node}, {name: B}, {name: C}, {name: D}, {name: E, kind: user_node}]
links:
  - {endpoints: [A, B], length_km: 20}
  - {endpoints: [B, C], length_km: 20}
  - {endpoints: [C, D], length_km: 20}
  - {endpoints: [D, E], length_km: 20}
applications: [{sae_id: SAE_A, node: A}, {sae_id: SAE_E, node: E}]
"""
PAIR = (("SAE_A", "A"), ("SAE_E", "E"))


def _wait_for_stock(net: LiveNet, count: int, timeout_s: float = 300) -> int:
    """Keys A can relay to E once the pools hold ``count``; a 503 (no route: at start-up a KME counts
    its peers unreachable until they first answer, and the controller's first reports may be late)
    means "not yet"."""
    deadline, stock = time.monotonic() + timeout_s, 0
    with net.client("SAE_A") as http:
        while stock < count and time.monotonic() < deadline:
            r = http.get(f"{net.url('A')}/api/v1/keys/SAE_E/status")
            stock = int(r.json()["stored_key_count"]) if r.status_code == 200 else stock
            time.sleep(0.3)
    return stock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16, help="clients asking one key at a time")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qnet-relay-bench-"))
    (root / "line5.yaml").write_text(SPEC)
    net = start_net(root / "net", source={"kind": "prng", "max_units": 60_000}, spec=root / "line5.yaml")
    try:
        stock = _wait_for_stock(net, 25_000)
        time.sleep(3)
        net.stop()  # restart without the feeds: measure the relay, not the filling
        for node in "ABCDE":
            net.start(node, "--no-links")
        time.sleep(2)
        print(f"machine: {machine()}; five KMEs + load generator on the same cores; first hop's pool {stock} keys")
        asyncio.run(_load(net, 2, 4, 1, PAIR))  # warm-up
        _, keys, lat, errors = asyncio.run(_load(net, args.seconds, args.concurrency, 1, PAIR))
        p99 = statistics.quantiles(lat, n=100)[98] * 1e3
        print(f"one key per request over 4 hops: {keys / args.seconds:.0f} relayed keys/s end to end, "
              f"latency median {statistics.median(lat) * 1e3:.1f} ms, p99 {p99:.1f} ms "
              f"({args.concurrency} concurrent, {errors} errors)")
        b_pairs, b_keys, _, b_errors = asyncio.run(_load(net, 5, 4, 32, PAIR))
        print(f"32 keys per request: {b_keys / 5:.0f} relayed keys/s ({b_pairs / 5:.1f} requests/s, 4 concurrent, "
              f"{b_errors} errors)")
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)  # five stores of about 130 MB
    emit({"benchmark": "relay", "hops": 4, "concurrency": args.concurrency, "keys_per_s": keys / args.seconds,
          "p50_ms": statistics.median(lat) * 1e3, "p99_ms": p99,
          "keys_per_s_32": b_keys / 5, "errors": errors + b_errors, "anchor": None})


if __name__ == "__main__":
    main()
