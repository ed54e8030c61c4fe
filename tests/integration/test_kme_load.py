"""The KME under load and under crash: 32 concurrent clients for 60 s, and ``kill -9`` of a KME in
the middle of traffic. Keys come from the PRNG stand-in source here (the simulated link cannot
feed thousands of keys a second on two cores); the store, the KM-to-KM channel and the API are
the real ones."""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.helpers import scaled
from tests.integration.conftest import LiveNet, start_net

API = "/api/v1/keys"
LOAD_SECONDS = 60
CLIENTS = 32


class Ledger:
    """What the clients saw: every key a master got, and every key a slave got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enc: dict[str, bytes] = {}
        self.enc_count: Counter[str] = Counter()
        self.dec: dict[str, bytes] = {}
        self.errors: Counter[str] = Counter()

    def got_enc(self, keys: list[dict[str, str]]) -> None:
        with self.lock:
            for k in keys:
                self.enc_count[k["key_ID"]] += 1
                self.enc[k["key_ID"]] = base64.b64decode(k["key"])

    def got_dec(self, keys: list[dict[str, str]]) -> None:
        with self.lock:
            for k in keys:
                assert k["key_ID"] not in self.dec, "a key_ID delivered twice to the slave"
                self.dec[k["key_ID"]] = base64.b64decode(k["key"])


def _pair_loop(net: LiveNet, ledger: Ledger, stop: threading.Event, forward: bool, number: int) -> None:
    (master, m_node), (slave, s_node) = (("SAE_A", "Alice"), ("SAE_B", "Bob"))[:: 1 if forward else -1]
    with net.client(master) as enc_http, net.client(slave) as dec_http:
        while not stop.is_set():
            try:
                r = enc_http.get(f"{net.url(m_node)}{API}/{slave}/enc_keys", params={"number": number})
                if r.status_code != 200:
                    ledger.errors[f"enc {r.status_code} {r.json()['message'][:40]}"] += 1
                    continue
                keys = r.json()["keys"]
                ledger.got_enc(keys)
                r = dec_http.post(f"{net.url(s_node)}{API}/{master}/dec_keys",
                                  json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
                if r.status_code != 200:
                    ledger.errors[f"dec {r.status_code}"] += 1
                    continue
                ledger.got_dec(r.json()["keys"])
            except httpx.HTTPError as exc:
                ledger.errors[type(exc).__name__] += 1
                time.sleep(0.05)


def _run_clients(net: LiveNet, ledger: Ledger, count: int, seconds: float,
                 during: callable | None = None) -> None:  # type: ignore[valid-type]
    stop = threading.Event()
    threads = [threading.Thread(target=_pair_loop, args=(net, ledger, stop, i % 4 != 3, 1 + i % 3))
               for i in range(count)]
    for t in threads:
        t.start()
    if during is not None:
        during()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)


@pytest.mark.slow  # a minute-long soak: .ci/run runs it after the default suite (pytest --runslow -m slow)
def test_32_clients_for_60_seconds(tmp_path: Path) -> None:
    """No key_ID is delivered twice; every key a slave got is identical to its master's."""
    net = start_net(tmp_path, source={"kind": "prng", "max_units": 60_000})
    try:
        net.wait_for_stock("SAE_A", "SAE_B", "Alice", 25_000)
        ledger = Ledger()
        _run_clients(net, ledger, CLIENTS, LOAD_SECONDS)
    finally:
        net.stop()
    assert max(ledger.enc_count.values()) == 1, "a key_ID handed to masters twice"
    assert len(ledger.dec) > 2000, (len(ledger.dec), ledger.errors)
    assert all(ledger.enc[k] == v for k, v in ledger.dec.items())
    assert sum(ledger.errors.values()) == 0, ledger.errors


def _units(db: Path) -> dict[str, tuple[str, str, str | None]]:
    with sqlite3.connect(db) as conn:
        return {k: (owner, state, note) for k, owner, state, note in
                conn.execute("SELECT key_ID, owner, state, note FROM keys")}


def _what_became_of(net: LiveNet, key_ids: list[str]) -> str:
    """Where the units of keys a slave could not get stand in both stores, and how the logs end
    (what a failure needs to be understood after the run's files are gone)."""
    lines = [f"{len(key_ids)} key(s) a master got and its slave could not:"]
    for node in ("Alice", "Bob"):
        units = _units(net.root / "store" / f"{node}.db")
        lines += [f"  {node}: {k} -> {units.get(k)}" for k in key_ids[:5]]
        log = net.root / f"{node}.log"
        if log.exists():
            lines += [f"  {node}.log: {line}" for line in log.read_text(errors="replace").splitlines()[-8:]]
    return "\n".join(lines)


def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """kill -9 of KME Alice while 8 clients pull keys, then restart it: every unit is either still
    available at both ends or was handed out once and reserved or delivered at the other end; every
    key a master got can be fetched by its slave once, with the same bytes."""
    net = start_net(tmp_path, source={"kind": "prng", "max_units": 50_000})
    ledger = Ledger()
    try:
        net.wait_for_stock("SAE_A", "SAE_B", "Alice", 3000)
        _run_clients(net, ledger, 8, 6, during=lambda: (time.sleep(3), net.kill("Alice")))
        assert ledger.errors, "the kill should have interrupted some requests"
        net.start("Alice")
        net.wait_for_stock("SAE_A", "SAE_B", "Alice", 100)
        deadline = time.monotonic() + scaled(60)  # the restarted outbox reaches Bob (busy: longer)
        answers: dict[tuple[str, str], str] = {}  # the last refusal of each key at each node, for a failure's message
        with net.client("SAE_B") as at_bob, net.client("SAE_A") as at_alice:
            lost: set[str] = set()  # delivered by Alice to its slave just before the kill: the answer died with it
            while (pending := [k for k in ledger.enc if k not in ledger.dec and k not in lost]) \
                    and time.monotonic() < deadline:
                time.sleep(1)
                for key_id in pending:  # the slave is at Bob or (reverse traffic) at Alice
                    for http, node, master in ((at_bob, "Bob", "SAE_A"), (at_alice, "Alice", "SAE_B")):
                        r = http.get(f"{net.url(node)}{API}/{master}/dec_keys", params={"key_ID": key_id})
                        if r.status_code == 200:
                            ledger.got_dec(r.json()["keys"])
                            break
                        answers[(key_id, node)] = f"{r.status_code} {r.text[:200]}"
                        if node == "Alice" and r.status_code == 400 and "already delivered" in r.text:
                            lost.add(key_id)
        # A key the killed KME handed its slave in the instant before kill -9 was delivered (once: the
        # store committed it) but its answer never left; the slave's request is one of those the kill
        # interrupted. Any other key a master got must have reached its slave.
        alice_units = _units(net.root / "store" / "Alice.db")
        assert all(alice_units[k][2] == "delivered to slave SAE_A" for k in lost), _what_became_of(net, sorted(lost))
        assert len(lost) <= sum(ledger.errors.values())
        missing = [k for k in ledger.enc if k not in ledger.dec and k not in lost]
        refused = "\n".join(f"  {k} at {n}: {a}" for (k, n), a in answers.items() if k in missing[:5])
        assert not missing, _what_became_of(net, missing) + "\n" + refused  # the slave got every key its master got
        for k in ledger.dec:  # ... once and identical
            assert ledger.dec[k] == ledger.enc[k]
    finally:
        net.stop()
    alice, bob = _units(net.root / "store" / "Alice.db"), _units(net.root / "store" / "Bob.db")
    checked = 0
    for owner, here, there in (("Alice", alice, bob), ("Bob", bob, alice)):
        for key_id, (unit_owner, state, _) in here.items():
            if unit_owner != owner or key_id not in there:
                continue
            checked += 1
            peer_state = there[key_id][1]
            if state in ("new", "available"):
                assert peer_state in ("new", "available"), (key_id, state, peer_state)  # available at both ends
                assert key_id not in ledger.enc
            else:  # handed out at the owner: reserved or delivered at the peer, never left available
                assert peer_state in ("assigned", "spent"), (key_id, state, peer_state)
    assert checked > 1000
