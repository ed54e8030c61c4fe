"""One brain, two bodies: ``qnet simulate`` and the live network on the same spec deliver the same
key volume (within 10 %) over the same simulated time.

The live network runs its photon-level link at 5x real time (10 s blocks of 10^10 pulses, a block
every 2 s of wall time) and an SAE takes every key as soon as it is there, over ETSI 014 with mutual
TLS; the simulator runs the same spec's fluid model with the link's expected finite-key rate.
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

from qnet.scenarios.simulate import simulate
from qnet.scenarios.validate import load_spec
from tests.integration.conftest import start_net

SPEC = Path(__file__).resolve().parent / "specs" / "pair70.yaml"
API = "/api/v1/keys"
SPEEDUP = 5.0
LINK_S = 200.0
"""Simulated seconds compared: 20 blocks."""


def _link_seconds(root: Path) -> float:
    """How much link time both ends' feeds have simulated (they lag the wall clock when busy)."""
    done = []
    for node in "AB":
        try:
            with sqlite3.connect(f"file:{root / 'store' / f'{node}.db'}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT value FROM meta WHERE name = 'link_s/A-B'").fetchone()
        except sqlite3.OperationalError:
            row = None
        done.append(float(row[0]) if row else 0.0)
    return min(done)


def test_simulate_and_up_deliver_the_same_key_volume(tmp_path: Path) -> None:
    net = start_net(tmp_path, source={"speedup": SPEEDUP}, spec=SPEC)
    try:
        batches: list[list[dict[str, str]]] = []
        deadline, last_call = time.monotonic() + 3 * LINK_S / SPEEDUP, math.inf
        with net.client("SA") as master, net.client("SB") as slave:
            while time.monotonic() < min(deadline, last_call):  # the master takes every key once it is there
                if last_call == math.inf and _link_seconds(tmp_path) >= LINK_S - 1:
                    last_call = time.monotonic() + 1.5  # block 20 (ends at 200 s) is in: sync it, take it
                stock = master.get(f"{net.url('A')}{API}/SB/status").json()["stored_key_count"]
                if stock == 0:
                    time.sleep(0.1)
                    continue
                r = master.post(f"{net.url('A')}{API}/SB/enc_keys", json={"number": min(stock, 1024)})
                assert r.status_code == 200, r.text
                batches.append(r.json()["keys"])
            for keys in batches:  # then its slave fetches them: identical at both ends
                ids = [{"key_ID": k["key_ID"]} for k in keys]
                d = slave.post(f"{net.url('B')}{API}/SA/dec_keys", json={"key_IDs": ids})
                assert d.status_code == 200 and [k["key"] for k in d.json()["keys"]] == [k["key"] for k in keys]
        delivered = 256 * sum(len(keys) for keys in batches)
    finally:
        net.stop()
    sim = simulate(load_spec(SPEC), LINK_S).demands[0].delivered_bits
    assert sim > 3e6  # A spends the half of the link's 42 kbit/s it owns: about 21 kbit/s for 200 s
    print(f"live {delivered / 1e6:.3f} Mbit, simulated {sim / 1e6:.3f} Mbit")
    assert abs(delivered - sim) / sim <= 0.10, f"live {delivered / 1e6:.2f} Mbit, simulated {sim / 1e6:.2f} Mbit"
