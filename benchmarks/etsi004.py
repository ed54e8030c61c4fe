"""Benchmark: ETSI GS QKD 004 GET_KEY per key stream, at both ends, over mutual TLS on these cores.

Goal (issue 14): >= 1,000 keys/s per stream. Two KMEs (Alice, Bob) and the controller run as
separate processes; the pool is pre-filled by the PRNG stand-in source and the KMEs restarted
without feeds, so that the figure is the stream's and not the key supply's. One stream of 256-bit
keys (key_chunk_size 32) is opened at Alice and connected at Bob; then SAE_A at Alice and SAE_B at
Bob each call GET_KEY one key at a time, in step, on one keep-alive connection each, from one
asyncio load generator sharing the cores with the servers. Every key is compared across the ends.

Anchor: no independent ETSI 004 implementation installs from a registry (the standard fixes no
wire format; the public ones are gRPC mock-ups on GitHub), so none is measured side by side; the
same machine's ETSI 014 pair rate (benchmarks/kme.py) is printed beside it for scale.

Run: python benchmarks/etsi004.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine
from kme import _Conn, _context, _load

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import LiveNet, start_net

API = "/api/v2/qkd004"


async def _post(conn: _Conn, method: str, body: dict[str, object]) -> dict[str, object]:
    status, raw = await conn.request("POST", f"{API}/{method}", json.dumps(body).encode())
    assert status == 200, raw
    return dict(json.loads(raw))


async def _stream(net: LiveNet, seconds: float) -> tuple[int, int, int, float]:
    """One stream, both ends asking in step for ``seconds``: (keys at A, keys at B, mismatches, s)."""
    alice, bob = _Conn(net.url("Alice"), _context(net, "SAE_A")), _Conn(net.url("Bob"), _context(net, "SAE_B"))
    qos = {"key_chunk_size": 32, "timeout": 5000}
    opened = await _post(alice, "open_connect", {"source": "SAE_A", "destination": "SAE_B", "QoS": qos})
    ksid = opened["Key_stream_ID"]
    joined = await _post(bob, "open_connect", {"source": "SAE_A", "destination": "SAE_B", "QoS": qos,
                                               "Key_stream_ID": ksid})
    assert joined["status"] == 0, joined
    got: dict[str, dict[int, str]] = {"A": {}, "B": {}}
    stop = time.perf_counter() + seconds

    async def end(name: str, conn: _Conn) -> None:
        while time.perf_counter() < stop:
            answer = await _post(conn, "get_key", {"Key_stream_ID": ksid})
            assert answer["status"] == 0, answer
            got[name][int(str(answer["index"]))] = str(answer["key_buffer"])

    start = time.perf_counter()
    await asyncio.gather(end("A", alice), end("B", bob))
    elapsed = time.perf_counter() - start
    await _post(alice, "close", {"Key_stream_ID": ksid})
    alice.close()
    bob.close()
    both = got["A"].keys() & got["B"].keys()
    return len(got["A"]), len(got["B"]), sum(got["A"][i] != got["B"][i] for i in both), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qnet-004-bench-"))
    net = start_net(root, source={"kind": "prng", "max_units": 400_000})
    try:
        stock = net.wait_for_stock("SAE_A", "SAE_B", "Alice", 100_000, timeout_s=300)
        net.stop()  # restart without the feeds: measure serving, not filling
        net.start_controller()
        for node in ("Alice", "Bob"):
            net.start(node, "--no-links")
        time.sleep(2)  # each KME finds its peer and the controller up
        print(f"machine: {machine()}; two KMEs, the controller and the load generator on the same cores; "
              f"pool {stock} keys")
        asyncio.run(_stream(net, 1.0))  # warm-up
        a, b, bad, elapsed = asyncio.run(_stream(net, args.seconds))
        rate = min(a, b) / elapsed
        print(f"one stream, 256-bit keys, one GET_KEY at a time at each end: {a / elapsed:.0f} keys/s at the "
              f"source, {b / elapsed:.0f} keys/s at the destination, {bad} keys differing")
        pairs, _, _, _ = asyncio.run(_load(net, 3, 10, 1))
        print(f"for scale, ETSI 014 on the same KMEs: {pairs / 3:.0f} enc_keys+dec_keys pairs/s (10 concurrent)")
    finally:
        net.stop()
    emit({"benchmark": "etsi004", "keys_per_s_per_stream": rate, "source_keys_per_s": a / elapsed,
          "destination_keys_per_s": b / elapsed, "mismatches": bad, "etsi014_pairs_per_s": pairs / 3,
          "anchor": None})


if __name__ == "__main__":
    main()
