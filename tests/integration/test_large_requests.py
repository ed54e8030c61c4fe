"""A legitimate large request (512 keys of 8192 bits here: 16,384 units, a 0.7 MB assign message) must not
hold up the other SAE pairs, nor make the peer KME look unreachable (it did for about 11 s: 503s,
and a ClientDisconnect traceback in the peer's log). Live: two KMEs over mutual TLS, PRNG feeds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.integration.conftest import start_net

SPEC = Path(__file__).resolve().parent / "specs" / "pair-four-saes.yaml"
API = "/api/v1/keys"


def test_a_large_request_does_not_starve_the_others(tmp_path: Path) -> None:
    net = start_net(tmp_path, source={"kind": "prng"}, spec=SPEC)
    try:
        assert net.wait_for_stock("SA", "SB", "A", 20_000, timeout_s=120) >= 20_000
        assert net.wait_for_stock("SB2", "SA2", "B", 200, timeout_s=60) >= 200
        big: list[httpx.Response] = []

        def large() -> None:
            with net.client("SA") as http:
                big.append(http.post(f"{net.url('A')}{API}/SB/enc_keys", json={"number": 512, "size": 8192},
                                     timeout=120))

        thread = threading.Thread(target=large)
        small: list[tuple[int, float]] = []
        with net.client("SA2") as at_a, net.client("SB2") as at_b:
            thread.start()
            while thread.is_alive() or len(small) < 10:
                for http, url, slave in ((at_a, net.url("A"), "SB2"), (at_b, net.url("B"), "SA2")):
                    t0 = time.monotonic()
                    r = http.get(f"{url}{API}/{slave}/enc_keys", params={"number": 1})
                    small.append((r.status_code, time.monotonic() - t0))
        thread.join()
        assert big[0].status_code == 200 and len(big[0].json()["keys"]) == 512
        assert all(code == 200 for code, _ in small), small
        ids = [{"key_ID": k["key_ID"]} for k in big[0].json()["keys"]]
        with net.client("SB") as slave:
            got = slave.post(f"{net.url('B')}{API}/SA/dec_keys", json={"key_IDs": ids}, timeout=120)
        assert got.status_code == 200 and got.json()["keys"] == big[0].json()["keys"]
        print(f"small request latency max {max(t for _, t in small):.2f} s over {len(small)}")
    finally:
        net.stop()
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name
