"""Key relay messages (qnet.keys.relay) over three stores in a line, A - B - C, without a network;
against SQLite and (when QNET_TEST_POSTGRES_URL is set, as in CI) PostgreSQL."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qnet.keys import relay
from qnet.keys.relay import RelayRequest
from qnet.keys.store import KeyStore, StoreError
from tests.keys.test_store import PG_URL, _fresh_pg

ROUTE = ["A", "B", "C"]


@pytest.fixture(params=["sqlite", "postgresql"])
def line(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, KeyStore]]:
    """Stores of A, B and C; links A-B and B-C with 400 synchronised units each."""
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("set QNET_TEST_POSTGRES_URL to test PostgreSQL (.ci/run does)")
    stores = {n: KeyStore(f"sqlite:///{tmp_path / n}.db" if request.param == "sqlite" else _fresh_pg(n), n)
              for n in ROUTE}
    for (a, b), seed in ((("A", "B"), 1), (("B", "C"), 2)):
        rng = random.Random(seed)
        units = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.randbytes(32)) for _ in range(400)]
        for store in (stores[a], stores[b]):
            store.add_units(f"{a}-{b}", (a, b), units, 0.0)
        for owner, peer in ((stores[a], stores[b]), (stores[b], stores[a])):
            offer = owner.unconfirmed(f"{a}-{b}")
            owner.apply_answer(f"{a}-{b}", offer, peer.check_offer(f"{a}-{b}", offer, 30.0, 1.0)["held"], 30.0, 1.0)
    yield stores
    for store in stores.values():
        store.close()


def _forward(store: KeyStore, sender: str, body: dict[str, object], out_link: str | None) -> relay.RelayHop:
    with store.transaction() as conn:
        return relay.forward(store, conn, sender, body, out_link=out_link, unit_bits=256, now_s=2.0)


def test_one_message_carries_several_requests_each_with_its_own_keys(line: dict[str, KeyStore]) -> None:
    """Requests of different pairs and sizes share a message (one group per pair and size); each gets
    its own keys, and each slave finds exactly its master's keys at C, once."""
    requests = [RelayRequest("SAE_A", ("SAE_C",), 2, 256), RelayRequest("SAE_B", ("SAE_C", "SAE_D"), 1, 512),
                RelayRequest("SAE_A", ("SAE_C",), 1, 128), RelayRequest("SAE_A", ("SAE_C",), 3, 256)]
    keys, hop = relay.start(line["A"], "A-B", route=ROUTE, requests=requests, unit_bits=256, now_s=2.0)
    assert [len(k) for k in keys] == [2, 1, 1, 3]
    assert [len(k.key) for k in keys[1] + keys[2]] == [64, 16]
    assert [(g["master"], len(g["keys"])) for g in hop.body["groups"]] == [("SAE_A", 5), ("SAE_B", 1), ("SAE_A", 1)]
    last = _forward(line["C"], "B", _forward(line["B"], "A", hop.body, "B-C").body, None)
    assert last.next_node is None and len(last.key_ids) == 7
    for (master, slave), mine in ((("SAE_A", "SAE_C"), keys[0] + keys[2] + keys[3]), (("SAE_B", "SAE_D"), keys[1])):
        assert line["C"].take_for_slave([k.key_ID for k in mine], slave, master) == mine
    with pytest.raises(StoreError, match="not a key from master SAE SAE_A"):
        line["C"].take_for_slave([keys[1][0].key_ID], "SAE_C", "SAE_A")  # another master's key
    assert line["C"].take_for_slave([keys[1][0].key_ID], "SAE_C", "SAE_B") == keys[1]  # its second slave
    for link, ends in (("A-B", "AB"), ("B-C", "BC")):  # 1 + 2 + 1 + 1 + 1 + 1 + 1 units on every hop, both ends
        assert [relay.consumed(line[n], link) for n in ends] == [8, 8]


def test_a_message_naming_a_unit_twice_is_refused_whole(line: dict[str, KeyStore]) -> None:
    """A (signed, but wrong) message that reuses one unit for two keys changes nothing at B."""
    _, hop = relay.start(line["A"], "A-B", route=ROUTE, requests=[RelayRequest("SAE_A", ("SAE_C",), 2, 256)],
                         unit_bits=256, now_s=2.0)
    entries = hop.body["groups"][0]["keys"]
    entries[1]["units"] = entries[0]["units"]
    with pytest.raises(StoreError, match="names a unit twice"):
        _forward(line["B"], "A", hop.body, "B-C")
    assert relay.consumed(line["B"], "A-B") == relay.consumed(line["B"], "B-C") == 0


def test_a_failed_hop_discards_the_units_the_sender_spent(line: dict[str, KeyStore]) -> None:
    """After a refused message the receiver spends the units its sender spent: both ends agree."""
    _, hop = relay.start(line["A"], "A-B", route=ROUTE, requests=[RelayRequest("SAE_A", ("SAE_C",), 3, 512)],
                         unit_bits=256, now_s=2.0)
    with line["B"].transaction() as conn:
        assert relay.discard_incoming(conn, "A", hop.body) == 6
        assert relay.discard_incoming(conn, "A", {"link_id": "A-B", "groups": [{"keys": 5}]}) == 0  # malformed
