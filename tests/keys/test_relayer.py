"""The relay's orchestration (:class:`qnet.keys.relayer.Relayer`) in-process: coalescing, requests
whose client left, the split of a batch the first hop cannot serve whole, retries around a failed
hop with hold-down, and no route. The nodes are the key-manager simulation's (in-memory transport,
SQLite stores in a temporary directory), driven by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qnet.errors import PeerError, UnavailableError
from qnet.keys.relay import RelayRequest
from qnet.keys.relay_policy import RELAY_BATCH_UNITS, RELAY_TRIES
from qnet.keys.relayer import Outcome, Waiting, run_now
from qnet.keys.store import KeyStore, SpentAs
from qnet.scenarios.kmsim import KMNetwork, _Answer
from qnet.scenarios.validate import parse_spec
from qnet.sim.kernel import Kernel

LINE = """
name: line-with-bypass
nodes: [{name: A}, {name: B}, {name: C}, {name: D}]
links:
  - {endpoints: [A, B], length_km: 10}
  - {endpoints: [B, C], length_km: 10}
  - {endpoints: [A, D], length_km: 10}
  - {endpoints: [D, C], length_km: 10}
applications:
  - {sae_id: SAE_A, node: A}
  - {sae_id: SAE_C, node: C}
"""
RATES = {"A-B": 4e6, "B-C": 4e6, "A-D": 4e6, "D-C": 4e6}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[KMNetwork]:
    kernel = Kernel(1)
    network = KMNetwork(parse_spec(LINE, source="line"), RATES, dict.fromkeys(RATES, 0.01), tmp_path, kernel)
    kernel.run_until_s(1.0)
    network.supply()  # about 15,600 units per link, at both ends (half owned by each)
    network.exchange()
    try:
        yield network
    finally:
        network.close()


def _request(number: int) -> Waiting:
    return Waiting(RelayRequest("SAE_A", ("SAE_C",), number, 256), _Answer())


def test_requests_queued_behind_a_relay_go_together_capped_and_without_those_whose_client_left(net: KMNetwork) -> None:
    relayer = net.nodes["A"].relayer
    waiting = [_request(n) for n in (600, 400, 100, 1024, 1)]
    assert relayer.submit("C", waiting[0]) and not any(relayer.submit("C", w) for w in waiting[1:])
    waiting[2].answer.set_exception(TimeoutError("the client left"))
    run_now(relayer.work("C"))
    assert [d.keys for d in relayer.decisions] == [1000, 1024, 1] and RELAY_BATCH_UNITS == 1024
    assert all(d.outcome is Outcome.RELAYED for d in relayer.decisions)
    assert [len(w.answer.get()) for w in waiting if w is not waiting[2]] == [600, 400, 1024, 1]
    stored = net.nodes["C"].store.counts("relay:A")
    assert stored == {"A/assigned": 600 + 400 + 1024 + 1}  # at the target, for the slave only


def test_a_batch_the_first_hop_cannot_serve_whole_is_split_and_the_part_that_fits_is_served(net: KMNetwork) -> None:
    relayer, store = net.nodes["A"].relayer, net.nodes["A"].store
    for link in ("A-B", "A-D"):
        _leave(store, link, 700)
    small, large = _request(300), _request(650)  # one batch (950 units): more than either first hop holds
    relayer.submit("C", small)
    relayer.submit("C", large)
    run_now(relayer.work("C"))
    assert [(d.keys, d.outcome) for d in relayer.decisions] == [
        (950, Outcome.SHORT), (300, Outcome.RELAYED), (650, Outcome.SHORT)]
    assert len(small.answer.get()) == 300
    with pytest.raises(UnavailableError, match="not enough key"):
        large.answer.get()


def _leave(store: KeyStore, link_id: str, units: int) -> None:
    """Spend all but ``units`` of this end's servable units of ``link_id``."""
    with store.transaction() as conn:
        ids = [u for u, _ in store.servable(conn, link_id, 10**6, 1.0)]
        store.spend(conn, ids[units:], "test", SpentAs.EXPIRED)


def test_a_failed_hop_is_held_down_and_the_relay_retried_on_another_route(net: KMNetwork) -> None:
    net.down.add("B")  # B stops; A does not know yet
    relayer = net.nodes["A"].relayer
    keys = run_now(_relay(relayer, 10))
    assert len(keys) == 10
    assert [(d.route, d.outcome, d.failed) for d in relayer.decisions] == [
        (("A", "B", "C"), Outcome.HOP_FAILED, "B"), (("A", "D", "C"), Outcome.RELAYED, None)]
    assert "B" in relayer.hold_down.held(net.clock()) and not net.nodes["A"].peers.ok("B")
    assert relayer.route_to("C") == ["A", "D", "C"]


def test_a_hop_that_refuses_names_itself_and_after_every_try_the_request_fails_naming_each(net: KMNetwork) -> None:
    refusals: list[str] = []

    def refuse(sender: str, peer: str, body: dict) -> dict:  # every relay hop refused by its next node
        refusals.append(peer)
        raise PeerError(f"peer refused the message (503): {peer} is short", 503, {"details": [{"failed": peer}]})

    net.deliver = refuse  # type: ignore[method-assign]
    relayer = net.nodes["A"].relayer
    with pytest.raises(UnavailableError, match="key relay to C failed") as info:
        run_now(_relay(relayer, 1))
    tried = [d["try"] for d in info.value.details]
    assert RELAY_TRIES == 3 and len(tried) == 3  # each try named: two refusals, then no route left
    assert tried[0].startswith("A -> B -> C: ") and tried[1].startswith("A -> D -> C: ")
    assert "no usable route" in tried[2]
    assert refusals == ["B", "D"]
    assert [d.failed for d in relayer.decisions if d.outcome is Outcome.HOP_FAILED] == refusals
    assert relayer.decisions[-1].outcome is Outcome.NO_ROUTE  # B and D held down: no route left
    assert net.nodes["A"].peers.ok("B")  # they answered: refused, not unreachable


async def _relay(relayer, number: int) -> list:  # type: ignore[no-untyped-def]
    waiting = _request(number)
    if relayer.submit("C", waiting):
        await relayer.work("C")
    return waiting.answer.get()  # type: ignore[no-any-return]
