"""The key manager's decisions, in-process, with the clock passed in: two KeyManagers whose
KM-to-KM messages are handed over directly (no network, no signatures)."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qnet.keys.events import KMEEvent
from qnet.keys.manager import KeyManager, LinkInfo
from qnet.keys.store import KeyStore
from qnet.security.envelope import Opened

LINK = LinkInfo("A-B", "B", ("A", "B"))


@dataclass
class Pair:
    """Two key managers on one link, a shared clock, and the link that feeds both stores alike."""

    a: KeyManager
    b: KeyManager
    now: list[float] = field(default_factory=lambda: [100.0])
    rng: random.Random = field(default_factory=lambda: random.Random(5))
    nonces: Iterator[int] = field(default_factory=itertools.count)

    def feed(self, count: int) -> None:
        units = [(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), self.rng.randbytes(32))
                 for _ in range(count)]
        for m in (self.a, self.b):
            m.store.add_units("A-B", ("A", "B"), units, self.now[0])

    def deliver(self, sender: KeyManager, receiver: KeyManager) -> None:
        """Send ``sender``'s outbox to ``receiver`` as one batch (what the flusher does)."""
        rows = sender.store.outbox()
        if rows:
            batch = {"type": "batch", "link_id": "A-B", "messages": [body for _, _, body in rows]}
            receiver.handle(self._opened(sender, batch))
            sender.store.outbox_done([i for i, _, _ in rows])

    def sync(self) -> None:
        """One synchronisation round each way, then the outboxes (hand-overs) delivered."""
        self.now[0] += 2.5
        for owner, peer in ((self.a, self.b), (self.b, self.a)):
            offer = owner.sync_offer("A-B")
            if offer is not None:
                owner.sync_answered("A-B", offer, peer.handle(self._opened(owner, offer)))
        self.deliver(self.a, self.b)
        self.deliver(self.b, self.a)

    def _opened(self, sender: KeyManager, body: dict[str, object]) -> Opened:
        return Opened(sender.kme_id, f"n{next(self.nonces)}", self.now[0], dict(body))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    clock = [100.0]
    managers = []
    for me, peer, local, remote in (("A", "B", "SA", "SB"), ("B", "A", "SB", "SA")):
        store = KeyStore(f"sqlite:///{tmp_path / me}.db", me)
        link = LinkInfo("A-B", peer, ("A", "B"))
        managers.append(KeyManager(store, [link], [local], {remote: peer}, clock=lambda: clock[0]))
    yield Pair(managers[0], managers[1], clock)
    for m in managers:
        m.store.close()


def test_a_one_way_demand_gets_the_whole_link(pair: Pair) -> None:
    """Every key goes from SA (at A) to SB: A spends what it owns, and B hands over what it does not
    use, so A is served nearly all the link made (it got half before: about 85,000 keys, then a
    stall, live), and every key SB fetches is the one SA was given."""
    served = 0
    for _ in range(30):
        pair.feed(200)
        pair.sync()
        stock = pair.a.store.stock("A-B")
        if stock:
            keys = pair.a.enc_keys("SA", ["SB"], stock, 256)
            pair.deliver(pair.a, pair.b)
            assert pair.b.dec_keys("SB", "SA", [k.key_ID for k in keys]) == keys
            served += len(keys)
    assert served > 0.9 * 30 * 200 - 400
    assert pair.b.store.owned("A-B") < 3 * 200  # what B keeps idle stays bounded: about two rounds' share


def test_balanced_use_hands_nothing_over(pair: Pair) -> None:
    """Both directions using their halves: no hand-over messages at all."""
    pair.feed(400)
    pair.sync()
    assert pair.a.store.outbox() == [] and pair.b.store.outbox() == []
    assert abs(pair.a.store.stock("A-B") - pair.b.store.stock("A-B")) < 100


def test_a_lost_hand_over_never_lets_both_ends_serve_a_unit(pair: Pair) -> None:
    """Until the cede message arrives the units are nobody's: B has given them away, A has not taken
    them; after it arrives, only A serves them. No unit is ever servable at both ends."""
    pair.feed(400)
    pair.sync()
    pair.a.enc_keys("SA", ["SB"], pair.a.store.stock("A-B"), 256)
    pair.deliver(pair.a, pair.b)
    pair.now[0] += 2.5
    offer = pair.b.sync_offer("A-B")
    assert offer is not None
    pair.b.sync_answered("A-B", offer, pair.a.handle(pair._opened(pair.b, offer)))  # B learns A is empty
    assert len(pair.b.store.outbox()) == 1  # the hand-over, queued with its effect
    in_flight = pair.b.store.outbox()[0][2]["units"]
    a_serves = {k for k, _ in _servable(pair.a.store)}
    b_serves = {k for k, _ in _servable(pair.b.store)}
    assert not a_serves & b_serves and not set(in_flight) & (a_serves | b_serves)
    pair.deliver(pair.b, pair.a)
    assert set(in_flight) <= {k for k, _ in _servable(pair.a.store)}
    assert not {k for k, _ in _servable(pair.a.store)} & {k for k, _ in _servable(pair.b.store)}


def _servable(store: KeyStore) -> list[tuple[str, bytes]]:
    with store.transaction() as conn:
        return store.servable(conn, "A-B", 10**6, 0.0)


def test_a_large_assign_is_applied_in_pieces_and_still_once(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """An assign for 2,500 units goes in two transactions (at most APPLY_CHUNK_UNITS each), so other
    requests get SQLite's single writer in between; every key still reaches the slave, and a replay
    of the message is refused."""
    from qnet.keys import manager
    from qnet.security.envelope import EnvelopeError

    pair.feed(6000)
    pair.sync()
    keys = pair.a.enc_keys("SA", ["SB"], 2500, 256)
    transactions = []
    real = pair.b.store.transaction

    def counting():  # type: ignore[no-untyped-def]
        transactions.append(1)
        return real()

    monkeypatch.setattr(pair.b.store, "transaction", counting)
    rows = pair.a.store.outbox()
    message = pair._opened(pair.a, {"type": "batch", "link_id": "A-B", "messages": [b for _, _, b in rows]})
    pair.b.handle(message)
    assert len(transactions) == -(-2500 // manager.APPLY_CHUNK_UNITS) == 2
    with pytest.raises(EnvelopeError, match="replayed"):
        pair.b.handle(message)
    monkeypatch.undo()
    assert pair.b.dec_keys("SB", "SA", [k.key_ID for k in keys]) == keys


def test_a_relay_node_short_of_key_says_so_with_its_figures(tmp_path: Path) -> None:
    """B relays A's keys towards C but its pool on B-C is nearly empty: the refusal is the store's
    own (not enough key, with the link and the units needed and available), not "malformed relay
    message", so the sender routes around a short pool, not around a suspected attacker."""
    from qnet.keys import relay
    from qnet.keys.relay import RelayRequest
    from qnet.keys.store import InsufficientKeyError

    stores = {n: KeyStore(f"sqlite:///{tmp_path / n}.db", n) for n in "ABC"}
    for (a, b), seed, count in ((("A", "B"), 1, 400), (("B", "C"), 2, 2)):
        rng = random.Random(seed)
        units = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.randbytes(32)) for _ in range(count)]
        for store in (stores[a], stores[b]):
            store.add_units(f"{a}-{b}", (a, b), units, 0.0, confirmed=True)
    _, hop = relay.start(stores["A"], "A-B", route=["A", "B", "C"],
                         requests=[RelayRequest("SAE_A", ("SAE_C",), 3, 512)], unit_bits=256, now_s=2.0)
    b = KeyManager(stores["B"], [LinkInfo("A-B", "A", ("A", "B")), LinkInfo("B-C", "C", ("B", "C"))],
                   {}, {"SAE_A": "A", "SAE_C": "C"}, unit_bits=256, clock=lambda: 2.0)
    with pytest.raises(InsufficientKeyError, match="not enough key on link B-C to relay") as err:
        b.relay_step(Opened("A", "n1", 2.0, hop.body))
    assert err.value.details == [{"link_id": "B-C", "available_units": "0", "needed_units": "6"}]
    assert (err.value.needed_units, err.value.available_units) == (6, 0)


def test_a_flood_of_refused_messages_is_one_event_a_window_and_every_one_counted(pair: Pair) -> None:
    """Issue 18.2: 300 junk KM messages over 3 minutes from one sender made 300 events (and, re-sent
    with every report that timed out, over 2,000 critical alarms). Now the first is told, the
    repeats are counted, and one summary a window (10 s) says how many: about 19 events, whose
    counts add up to the 300 refusals; another sender's first refusal is told at once."""
    a = pair.a
    for i in range(300):
        pair.now[0] = 100.0 + i * 0.6
        a.refuse(f"bad signature #{i}", "Bob")
    pair.now[0] += 30.0
    a.summarise_repeats(pair.now[0])
    refused = [e for e in a.events if e.kind == "km-message-refused"]
    assert 2 <= len(refused) <= 20
    assert sum(e.count for e in refused) == 300
    assert refused[0].detail == "bad signature #0 (from Bob)" and refused[0].count == 1
    assert "more km-message-refused (from Bob)" in refused[-1].detail
    a.refuse("bad signature", "Mallory")
    assert a.events[-1].detail == "bad signature (from Mallory)"
    assert [e.seq for e in a.events] == list(range(1, len(a.events) + 1))


def test_events_from_many_threads_each_get_their_own_seq(pair: Pair) -> None:
    """Events come from the event loop and from the agent's, the synchroniser's and relays' threads."""
    import threading

    def burst(t: int) -> None:
        for i in range(100):
            pair.a.event(KMEEvent.RELAY_REROUTE, f"relay {t}/{i}")

    threads = [threading.Thread(target=burst, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seqs = [e.seq for e in pair.a.events]
    assert len(seqs) == 800 and sorted(seqs) == list(range(1, 801))
