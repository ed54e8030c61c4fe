"""Key relay through trusted nodes in a live network of KME processes over mutual TLS.

Seven KMEs in a line (six hops) and six in a ring (two disjoint routes). Keys come from the PRNG
stand-in source (six simulated links would not feed thousands of keys a minute on two cores); the
relay, the stores, the signed KM-to-KM channel and the ETSI 014 API are the real ones.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qnet.security.envelope import seal
from qnet.security.pki import load_signing_key
from tests.helpers import scaled
from tests.integration.conftest import LiveNet, start_net

API = "/api/v1/keys"
SPECS = Path(__file__).resolve().parent / "specs"
SOURCE = {"kind": "prng", "max_units": 5000}


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    net = start_net(tmp_path_factory.mktemp("line7"), source=SOURCE, spec=SPECS / "line7.yaml")
    try:
        yield net
    finally:
        net.stop()


def relay(net: LiveNet, master: str, m_node: str, slave: str, s_node: str, number: int,
          timeout_s: float = 60) -> list[tuple[str, bytes, bytes]]:
    """enc_keys at the master's KME, dec_keys at the slave's: (key_ID, master's key, slave's key)."""
    deadline = time.monotonic() + timeout_s
    with net.client(master) as enc_http, net.client(slave) as dec_http:
        while True:
            r = enc_http.get(f"{net.url(m_node)}{API}/{slave}/enc_keys", params={"number": number})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # pools still filling after start-up
        assert r.status_code == 200, r.text
        keys = r.json()["keys"]
        d = dec_http.post(f"{net.url(s_node)}{API}/{master}/dec_keys",
                          json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
        assert d.status_code == 200, d.text
        got = {k["key_ID"]: base64.b64decode(k["key"]) for k in d.json()["keys"]}
        again = dec_http.post(f"{net.url(s_node)}{API}/{master}/dec_keys",
                              json={"key_IDs": [{"key_ID": keys[0]["key_ID"]}]})
        assert again.status_code == 400 and "already delivered" in again.text
    return [(k["key_ID"], base64.b64decode(k["key"]), got.get(k["key_ID"], b"")) for k in keys]


def test_relay_over_six_hops_gives_identical_keys_1000_times(line: LiveNet) -> None:
    delivered = []
    for _ in range(10):
        delivered += relay(line, "SAE_A", "A", "SAE_G", "G", 100)
    assert len(delivered) == 1000 and len({k for k, _, _ in delivered}) == 1000
    assert all(mine == theirs and len(mine) == 32 for _, mine, theirs in delivered)
    assert len({mine for _, mine, _ in delivered}) == 1000


async def _enc_concurrently(net: LiveNet, slaves: list[str]) -> list[tuple[str, dict[str, bytes]]]:
    """One-key enc_keys at A for every slave in ``slaves`` at once, one connection each: (slave,
    {key_ID: key})."""
    ctx = ssl.create_default_context(cafile=net.ca)
    ctx.load_cert_chain(*net.cert("SAE_A"))

    async def one(http: httpx.AsyncClient, slave: str) -> tuple[str, dict[str, bytes]]:
        async with http:
            r = await http.get(f"{net.url('A')}{API}/{slave}/enc_keys")
        assert r.status_code == 200, r.text
        return slave, {k["key_ID"]: base64.b64decode(k["key"]) for k in r.json()["keys"]}

    clients = [httpx.AsyncClient(verify=ctx, timeout=60) for _ in slaves]
    return list(await asyncio.gather(*(one(http, slave) for http, slave in zip(clients, slaves, strict=True))))


def test_concurrent_requests_share_relay_messages_and_each_gets_its_own_keys(line: LiveNet) -> None:
    """50 one-key requests at once, for two slave SAEs at G: all served, in fewer relay messages than
    requests (keys stored by one message share its time stamp at G), every hop spending one unit
    per key at both ends; each slave gets exactly its own keys, identical to the master's, once."""
    relay(line, "SAE_A", "A", "SAE_G", "G", 1)  # pools filled, peers known
    hops = list(zip("ABCDEF", "BCDEFG", strict=True))
    before = {(a, b): [_relay_units(line.root / "store" / f"{n}.db", f"{a}-{b}") for n in (a, b)] for a, b in hops}
    answers = asyncio.run(_enc_concurrently(line, ["SAE_G"] * 40 + ["SAE_X"] * 10))
    mine = {k: key for _, got in answers for k, key in got.items()}
    assert len(mine) == 50 and len(set(mine.values())) == 50
    assert _relay_messages(line.root / "store" / "G.db", list(mine)) < 25
    for a, b in hops:
        spent = [_relay_units(line.root / "store" / f"{n}.db", f"{a}-{b}") - old
                 for n, old in zip((a, b), before[(a, b)], strict=True)]
        assert spent[0] == spent[1] and len(spent[0]) == 50, (a, b)
    ids = {slave: [k for s, got in answers if s == slave for k in got] for slave in ("SAE_G", "SAE_X")}
    assert _dec(line, "SAE_X", ids["SAE_G"][:1])[0] == 401  # another pair's key (ETSI 014: not supplied as its slave)
    for slave, wanted in ids.items():
        status, got = _dec(line, slave, wanted)
        assert status == 200 and got == {k: mine[k] for k in wanted}
        assert _dec(line, slave, wanted[:1])[0] == 400  # delivered once


def _dec(net: LiveNet, slave: str, key_ids: list[str]) -> tuple[int, dict[str, bytes]]:
    """dec_keys at G for ``slave``: (status, {key_ID: key})."""
    with net.client(slave) as http:
        r = http.post(f"{net.url('G')}{API}/SAE_A/dec_keys", json={"key_IDs": [{"key_ID": k} for k in key_ids]})
    keys = r.json().get("keys", []) if r.status_code == 200 else []
    return r.status_code, {k["key_ID"]: base64.b64decode(k["key"]) for k in keys}


def test_every_hop_accounts_its_key_consumption(line: LiveNet) -> None:
    """Both ends of every link spent the same units on relays: one unit per 256-bit key per hop."""
    hops = list(zip("ABCDEF", "BCDEFG", strict=True))
    before = {(a, b): _relay_units(line.root / "store" / f"{a}.db", f"{a}-{b}") for a, b in hops}
    relay(line, "SAE_A", "A", "SAE_G", "G", 10)
    for a, b in hops:  # other tests in this module may relay too (random order): compare the change
        spent = [_relay_units(line.root / "store" / f"{node}.db", f"{a}-{b}") for node in (a, b)]
        assert spent[0] == spent[1], (a, b)
        assert len(spent[0] - before[(a, b)]) >= 10, (a, b)


def test_access_control_and_unknown_pairs_get_401(line: LiveNet) -> None:
    with line.client("SAE_Y") as http:  # SAE_X shares keys with SAE_A only
        r = http.get(f"{line.url('D')}{API}/SAE_X/enc_keys")
        assert r.status_code == 401 and "access control" in r.json()["message"]
    assert relay(line, "SAE_A", "A", "SAE_X", "G", 2)[0][1]  # its allowed pair is relayed


def test_a_forged_relay_message_is_refused_and_raises_an_alarm(line: LiveNet) -> None:
    """C refuses a relay message claiming to come from B but signed with A's key, or replayed."""
    key = {"key_ID": str(uuid.uuid4()), "units": [str(uuid.uuid4())], "c": base64.b64encode(bytes(32)).decode()}
    body = {"type": "relay", "link_id": "B-C", "route": list("ABCDEFG"), "hop": 2,
            "groups": [{"master": "SAE_A", "slaves": ["SAE_G"], "size": 256, "keys": [key]}]}
    a_key = load_signing_key(line.root / "kme" / "A.mldsa.key")
    forged = seal(body, sender="B", receiver="C", key=a_key, now_s=time.time())
    with line.client("B", kind="kme") as http:
        r = http.post(f"{line.url('C')}/km/v1/messages", content=forged)
        assert r.status_code == 401 and "bad signature" in r.json()["message"]
        b_key = load_signing_key(line.root / "kme" / "B.mldsa.key")
        bogus = seal(body, sender="B", receiver="C", key=b_key, now_s=time.time())
        r = http.post(f"{line.url('C')}/km/v1/messages", content=bogus)  # units C never had
        assert r.status_code in (400, 503) and "unknown here" in r.json()["message"]
        assert http.post(f"{line.url('C')}/km/v1/messages", content=bogus).status_code == 401  # replay
    log = (line.root / "C.log").read_text()
    assert "km-message-refused" in log and "bad signature" in log


def test_ring_reroutes_around_a_killed_trusted_node_and_it_rejoins(tmp_path: Path) -> None:
    """kill -9 a relay node: the next keys take the other side of the ring; nothing is delivered to
    one end only; after a restart the node carries relays again."""
    net = start_net(tmp_path, source=SOURCE, spec=SPECS / "ring6.yaml")
    try:
        first = relay(net, "SAE_0", "R0", "SAE_3", "R3", 20)
        net.kill("R1")
        net.kill("R4")  # both three-hop routes now broken: no route within the policy's four hops
        with net.client("SAE_0") as http:
            r = http.get(f"{net.url('R0')}{API}/SAE_3/enc_keys")
        assert r.status_code == 503 and "relay" in r.json()["message"], r.text
        net.start("R4")
        after = relay(net, "SAE_0", "R0", "SAE_3", "R3", 20, timeout_s=scaled(60))  # R4 rejoins: seconds, more if busy
        assert _relay_units(tmp_path / "store" / "R5.db", "R4-R5")  # it went round the other side
        through_r1 = len(_relay_units(tmp_path / "store" / "R1.db", "R1-R2"))
        net.start("R1")
        net.kill("R5")
        rejoined = relay(net, "SAE_0", "R0", "SAE_3", "R3", 20, timeout_s=scaled(60))
        assert len(_relay_units(tmp_path / "store" / "R1.db", "R1-R2")) > through_r1  # R1 carries keys again
        for batch in (first, after, rejoined):
            assert all(mine == theirs for _, mine, theirs in batch)
    finally:
        net.stop()


def _relay_messages(db: Path, key_ids: list[str]) -> int:
    """How many relay messages stored these keys at the last node (one time stamp per message)."""
    marks = ",".join("?" * len(key_ids))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute(f"SELECT COUNT(DISTINCT created_s) FROM keys WHERE key_ID IN ({marks})",
                                key_ids).fetchone()[0])


def _relay_units(db: Path, link_id: str) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute("SELECT key_ID FROM keys WHERE link_id = ? AND note LIKE 'relay %'",
                                           (link_id,))}

