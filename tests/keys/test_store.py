"""The key store, against SQLite and (when QNET_TEST_POSTGRES_URL is set, as in CI) PostgreSQL."""

from __future__ import annotations

import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from qnet.keys.store import InsufficientKeyError, KeyStore, StoreError, owner_of

ENDS = ("A", "B")
PG_URL = os.environ.get("QNET_TEST_POSTGRES_URL")


def units(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    rng = __import__("random").Random(seed)
    return [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.randbytes(32)) for _ in range(n)]


def _fresh_pg(kme_id: str) -> str:
    assert PG_URL is not None
    schema = f"t_{kme_id.lower()}_{secrets.token_hex(4)}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[KeyStore, KeyStore]]:
    """The two ends' stores (A and B) of one link."""
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("set QNET_TEST_POSTGRES_URL to test PostgreSQL (.ci/run does)")
    urls = ([f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"] if request.param == "sqlite"
            else [_fresh_pg("A"), _fresh_pg("B")])
    a, b = KeyStore(urls[0], "A"), KeyStore(urls[1], "B")
    yield a, b
    a.close()
    b.close()


def synced(a: KeyStore, b: KeyStore, n: int) -> list[tuple[str, bytes]]:
    """Feed n units to both ends and run one synchronisation round each way."""
    batch = units(n)
    a.add_units("L", ENDS, batch, 0.0)
    b.add_units("L", ENDS, batch, 0.0)
    for owner, peer in ((a, b), (b, a)):
        offer = owner.unconfirmed("L")
        answer = peer.check_offer("L", offer, 30.0, 1.0)
        owner.apply_answer("L", offer, answer["held"], 30.0, 1.0)
    return batch


def assign_at_peer(peer: KeyStore, owner: KeyStore) -> None:
    """Deliver the owner's outbox to the peer, as the KM-to-KM channel does."""
    rows = owner.outbox()
    with peer.transaction() as conn:
        for _, _, body in rows:
            peer.assign(conn, owner.kme_id, body["groups"], body["master"], body["slaves"])
    owner.outbox_done([r[0] for r in rows])


def take(a: KeyStore, number: int, size: int = 256, slaves: tuple[str, ...] = ("SAE_B",)) -> list:
    return a.take_for_master("L", number, size, 256, master_sae="SAE_A", slaves=list(slaves), peer="B", now_s=2.0,
                             message=lambda g: {"master": "SAE_A", "slaves": list(slaves), "groups": g})


def test_ownership_splits_units_between_the_ends() -> None:
    """Each unit has one owner, decided by its key_ID alone; about half each."""
    owners = [owner_of(k, ENDS) for k, _ in units(2000)]
    assert 900 < owners.count("A") < 1100


def test_units_are_stored_once_in_order(pair: tuple[KeyStore, KeyStore]) -> None:
    """A replayed feed adds nothing; units are not servable until the peer confirms them."""
    a, _ = pair
    batch = units(50)
    assert a.add_units("L", ENDS, batch, 0.0) == 50
    assert a.add_units("L", ENDS, batch, 0.0) == 0
    assert a.stock("L") == 0  # new, unconfirmed
    assert a.unconfirmed("L") == [k for k, _ in batch if owner_of(k, ENDS) == "A"]


def test_sync_confirms_what_both_hold_and_discards_the_rest(pair: tuple[KeyStore, KeyStore]) -> None:
    """A unit only one end received is found, and never served: the owner discards it once the peer
    holds later units and the grace time has passed."""
    a, b = pair
    batch = units(40)
    mine = [k for k, _ in batch if owner_of(k, ENDS) == "A"]
    lost = mine[3]
    a.add_units("L", ENDS, batch, 0.0)
    b.add_units("L", ENDS, [u for u in batch if u[0] != lost], 0.0)
    offer = a.unconfirmed("L")
    answer = b.check_offer("L", offer, 30.0, 100.0)
    assert lost not in answer["held"] and answer["in_order"]
    dropped = a.apply_answer("L", offer, answer["held"], 30.0, 100.0)
    assert dropped == [lost]
    assert a.stock("L") == len(mine) - 1
    with pytest.raises(InsufficientKeyError):
        take(a, len(mine))


def test_peer_discards_units_the_owner_skipped(pair: tuple[KeyStore, KeyStore]) -> None:
    """The other half of a mismatch: the peer holds an owner's unit the owner never had."""
    a, b = pair
    batch = units(40)
    extra = [k for k, _ in batch if owner_of(k, ENDS) == "A"][2]
    a.add_units("L", ENDS, [u for u in batch if u[0] != extra], 0.0)
    b.add_units("L", ENDS, batch, 0.0)
    answer = b.check_offer("L", a.unconfirmed("L"), 30.0, 100.0)
    assert answer["discarded"] == [extra]
    assert b.counts("L")["A/spent"] == 1
    # a later round offers only new units: the ones confirmed before are not taken for skipped
    later = units(10, seed=1)
    a.add_units("L", ENDS, later, 200.0)
    b.add_units("L", ENDS, later, 200.0)
    a.apply_answer("L", a.unconfirmed("L"), answer["held"], 30.0, 100.0)
    again = b.check_offer("L", a.unconfirmed("L"), 30.0, 300.0)
    assert again["discarded"] == [] and b.counts("L")["A/spent"] == 1


def test_master_and_slave_get_identical_keys_each_once(pair: tuple[KeyStore, KeyStore]) -> None:
    """enc at A, dec at B: the same bytes; a second dec fails naming the key; units erased at both ends."""
    a, b = pair
    synced(a, b, 200)
    keys = take(a, 3, size=512)
    assert [len(k.key) for k in keys] == [64, 64, 64]
    assign_at_peer(b, a)
    got = b.take_for_slave([k.key_ID for k in keys], "SAE_B", "SAE_A")
    assert [(k.key_ID, k.key) for k in got] == [(k.key_ID, k.key) for k in keys]
    with pytest.raises(StoreError) as err:
        b.take_for_slave([keys[0].key_ID], "SAE_B", "SAE_A")
    assert err.value.details == [{"key_ID": keys[0].key_ID, "reason": "already delivered"}]
    for store in (a, b):
        with store.engine.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM keys WHERE state = 'spent' AND material IS NOT NULL"))
            assert left.scalar_one() == 0


def test_multicast_key_erased_after_the_last_slave(pair: tuple[KeyStore, KeyStore]) -> None:
    """Two slaves each get the key once; another SAE never; erased after the second."""
    a, b = pair
    synced(a, b, 100)
    (key,) = take(a, 1, slaves=("SAE_B", "SAE_C"))
    assign_at_peer(b, a)
    with pytest.raises(StoreError, match="not a key for this SAE"):
        b.take_for_slave([key.key_ID], "SAE_X", "SAE_A")
    assert b.take_for_slave([key.key_ID], "SAE_C", "SAE_A")[0].key == key.key
    assert b.counts("L").get("A/assigned", 0) == 1
    assert b.take_for_slave([key.key_ID], "SAE_B", "SAE_A")[0].key == key.key
    assert b.counts("L").get("A/assigned", 0) == 0


def test_a_failed_request_changes_nothing(pair: tuple[KeyStore, KeyStore]) -> None:
    """Not enough key: nothing taken, nothing queued. One bad key_ID among good ones: nothing delivered."""
    a, b = pair
    synced(a, b, 60)
    before = a.stock("L")
    with pytest.raises(InsufficientKeyError):
        take(a, before + 1)
    assert a.stock("L") == before and a.outbox() == []
    keys = take(a, 2)
    assign_at_peer(b, a)
    with pytest.raises(StoreError):
        b.take_for_slave([keys[0].key_ID, str(uuid.uuid4())], "SAE_B", "SAE_A")
    assert b.take_for_slave([keys[0].key_ID], "SAE_B", "SAE_A")[0].key == keys[0].key


def test_assign_refuses_units_it_cannot_hold(pair: tuple[KeyStore, KeyStore]) -> None:
    """A key_ID unknown at the peer is a synchronisation mismatch: refused whole, nothing changes."""
    a, b = pair
    synced(a, b, 20)
    take(a, 1)
    (_, _, body), = a.outbox()
    body["groups"].append({"key_ID": str(uuid.uuid4()), "units": [str(uuid.uuid4())], "size": 256})
    with pytest.raises(StoreError, match="mismatch"), b.transaction() as conn:
        b.assign(conn, "A", body["groups"], body["master"], body["slaves"])
    assert b.counts("L").get("A/assigned", 0) == 0


def test_concurrent_masters_never_share_a_key(pair: tuple[KeyStore, KeyStore]) -> None:
    """8 threads take keys at once until the pool is empty: every key_ID is handed out once."""
    a, b = pair
    synced(a, b, 600)
    got: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                keys = take(a, 3)
            except InsufficientKeyError:
                return
            with lock:
                got.extend(k.key_ID for k in keys)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == a.counts("L")["A/spent"]  # each spent unit went to one caller
    assert a.stock("L") < 3


def test_nonce_is_refused_the_second_time(pair: tuple[KeyStore, KeyStore]) -> None:
    """Replay protection: the store remembers nonces."""
    a, _ = pair
    with a.engine.begin() as conn:
        assert a.record_nonce(conn, "B", "n1", 10.0)
    with a.engine.begin() as conn:
        assert not a.record_nonce(conn, "B", "n1", 10.0)


def test_expired_units_are_erased(pair: tuple[KeyStore, KeyStore]) -> None:
    """Key lifetime: units older than it are erased and never served."""
    a, b = pair
    synced(a, b, 30)
    assert a.expire(a.lifetime_s + 1.0) == 30
    assert a.stock("L") == 0


def test_no_key_material_in_reprs(pair: tuple[KeyStore, KeyStore]) -> None:
    """Delivered keys and stores print without their material."""
    a, b = pair
    synced(a, b, 20)
    (key,) = take(a, 1)
    assert key.key.hex() not in repr(key) and repr(key.key) not in repr(key)


def test_outbox_ids_are_never_reused(pair: tuple[KeyStore, KeyStore]) -> None:
    """A flush that finishes late deletes only what it sent: an emptied outbox does not hand a new
    message the id of a sent one (SQLite reuses rowids without AUTOINCREMENT; the benchmark lost
    assign messages that way)."""
    a, b = pair
    synced(a, b, 40)
    take(a, 1)
    ((first, _, _),) = a.outbox()
    a.outbox_done([first])
    take(a, 1)
    ((second, _, _),) = a.outbox()
    assert second != first
    a.outbox_done([first])  # the late "done" of the first flush
    assert [row[0] for row in a.outbox()] == [second]


def test_pool_thresholds_raise_one_event_per_crossing(pair: tuple[KeyStore, KeyStore]) -> None:
    """Below the low-water mark: one ``pool-low`` event; back above it: one ``pool-ok``."""
    from qnet.keys.manager import KeyManager, LinkInfo

    a, b = pair
    manager = KeyManager(a, [LinkInfo("L", "B", ENDS)], ["SAE_A"], {"SAE_B": "B"})
    synced(a, b, 100)
    stock = a.stock("L")
    manager.check_pools({"L": stock})
    assert not manager.events
    take(a, 1)
    manager.check_pools({"L": stock})
    manager.check_pools({"L": stock})
    assert [e.kind for e in manager.events] == ["pool-low"]
    manager.check_pools({"L": stock - 1})
    assert [e.kind for e in manager.events] == ["pool-low", "pool-ok"]


def test_reads_never_wait_for_a_writer(tmp_path: Path) -> None:
    """Counts, meta and the outbox read a snapshot (a deferred transaction): a feeder holding the
    write lock for a long insert does not hold up the KME's reports, as BEGIN IMMEDIATE on every
    read did (they queued for SQLite's busy timeout)."""
    url = f"sqlite:///{tmp_path / 'A.db'}"
    store, writer = KeyStore(url, "A"), KeyStore(url, "A")
    store.add_units("A-B", ("A", "B"), [(str(uuid.uuid4()), secrets.token_bytes(32)) for _ in range(10)], 0.0,
                    confirmed=True)
    store.set_meta("lag/A-B", "0.5")
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with writer.transaction() as conn:
            conn.execute(sa.text("UPDATE meta SET value = '9' WHERE name = 'lag/A-B'"))
            held.set()
            release.wait(30)

    worker = threading.Thread(target=hold_the_lock)
    worker.start()
    try:
        assert held.wait(10)
        answers: list[object] = []
        reader = threading.Thread(target=lambda: answers.extend(
            [store.stock("A-B") + store.stock("A-B", "B"), store.meta("lag/"), store.outbox()]))
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "a read waited for the writer"
        assert answers == [10, {"lag/A-B": "0.5"}, []]  # the snapshot before the writer's change
    finally:
        release.set()
        worker.join()
    assert store.get_meta("lag/A-B") == "9"
    store.close()
    writer.close()
