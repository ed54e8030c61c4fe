"""Benchmark: the KME pair over mutual TLS with keep-alive, SQLite stores, on these cores.

Goal (issue 4): >= 500 enc_keys+dec_keys pairs per second (256-bit keys, one key per request) with
p99 pair latency <= 50 ms, and >= 20,000 keys/s when a request asks for 128 keys. Two KMEs run as
separate processes (``python -m qnet kme serve``), pre-filled by the PRNG stand-in source and then
restarted without feeds, so that the figure is the servers' and not the key supply's; the load
generator is one asyncio process (a minimal keep-alive HTTP/1.1 client) on the same machine, so it
shares the two cores with them.

Anchor: no independent ETSI 014 KME installs from a registry (py-qkd-kme-sim and etsi-qkd-rest are
GitHub-only; QKDSimkit is not ETSI 014 and needs Redis), so none is measured side by side.

Run: python benchmarks/kme.py [--seconds 15] [--concurrency 10] [--concurrency-128 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import LiveNet, start_net

API = "/api/v1/keys"
BIG_SECONDS = 5.0  # the 128-key phase: about 120,000 keys, within the pre-filled pool


class _Conn:
    """A minimal HTTP/1.1 keep-alive client over one TLS connection: the load generator must leave
    the cores to the servers, and httpx costs about 3 ms of CPU per request here."""

    def __init__(self, url: str, ctx: ssl.SSLContext) -> None:
        host, port = url.removeprefix("https://").split(":")
        self.host, self.port, self.ctx = host, int(port), ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-length: {len(body)}\r\n"
                "content-type: application/json\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _context(net: LiveNet, sae: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=net.ca)
    ctx.load_cert_chain(*net.cert(sae))
    return ctx


PAIR = (("SAE_A", "Alice"), ("SAE_B", "Bob"))


async def _load(net: LiveNet, seconds: float, concurrency: int, number: int,
                pair: tuple[tuple[str, str], tuple[str, str]] = PAIR) -> tuple[int, int, list[float], int]:
    """``concurrency`` clients each doing enc_keys at the master's KME then dec_keys at the slave's
    for ``seconds``: (pairs, keys, pair latencies, errors)."""
    (master, m_node), (slave, s_node) = pair
    enc_ctx, dec_ctx = _context(net, master), _context(net, slave)
    pairs = keys = errors = 0
    latencies: list[float] = []
    enc_lat: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal pairs, keys, errors
        enc, dec = _Conn(net.url(m_node), enc_ctx), _Conn(net.url(s_node), dec_ctx)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            status, body = await enc.request("GET", f"{API}/{slave}/enc_keys?number={number}")
            if status != 200:
                errors += 1
                if errors < 3:
                    print("enc error:", status, body[:200])
                continue
            got = json.loads(body)["keys"]
            enc_lat.append(time.perf_counter() - start)
            ids = json.dumps({"key_IDs": [{"key_ID": k["key_ID"]} for k in got]}).encode()
            status, body = await dec.request("POST", f"{API}/{master}/dec_keys", ids)
            if status != 200 or json.loads(body)["keys"] != got:
                errors += 1
                if errors < 3:
                    print("dec error:", status, body[:200])
                continue
            latencies.append(time.perf_counter() - start)
            pairs += 1
            keys += len(got)
        enc.close()
        dec.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if len(enc_lat) > 100:
        print(f"  (enc_keys alone: median {statistics.median(enc_lat) * 1e3:.1f} ms, "
              f"p99 {statistics.quantiles(enc_lat, n=100)[98] * 1e3:.1f} ms)")
    return pairs, keys, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=10, help="clients asking one key at a time")
    parser.add_argument("--concurrency-128", type=int, default=8, help="clients asking 128 keys at a time")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qnet-kme-bench-"))
    net = start_net(root, source={"kind": "prng", "max_units": 400_000})
    try:
        stock = net.wait_for_stock("SAE_A", "SAE_B", "Alice", 180_000, timeout_s=300)
        time.sleep(3)
        net.stop()  # restart without the feeds: measure serving, not filling
        for node in ("Alice", "Bob"):
            net.start(node, "--no-links")
        time.sleep(2)  # each KME finds its peer up
        print(f"machine: {machine()}; two KMEs + load generator on the same cores; pool {stock} keys")
        asyncio.run(_load(net, 2, 4, 1))  # warm-up: connections, code paths
        pairs, _, lat, err1 = asyncio.run(_load(net, args.seconds, args.concurrency, 1))
        p99 = statistics.quantiles(lat, n=100)[98] * 1e3
        print(f"one 256-bit key per request: {pairs / args.seconds:.0f} pairs/s, pair latency median "
              f"{statistics.median(lat) * 1e3:.1f} ms, p99 {p99:.1f} ms ({args.concurrency} concurrent, {err1} errors)")
        big_pairs, big_keys, _, err2 = asyncio.run(_load(net, BIG_SECONDS, args.concurrency_128, 128))
        print(f"128 keys per request: {big_keys / BIG_SECONDS:.0f} keys/s "
              f"({big_pairs / BIG_SECONDS:.1f} pairs/s, {args.concurrency_128} concurrent, {err2} errors)")
    finally:
        net.stop()
    emit({"benchmark": "kme", "pairs_per_s": pairs / args.seconds, "p99_ms": p99,
          "keys_per_s_128": big_keys / BIG_SECONDS, "errors": err1 + err2, "anchor": None})


if __name__ == "__main__":
    main()
