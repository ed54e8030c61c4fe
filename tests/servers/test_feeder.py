"""The key feeds: one simulation per link delivering the same units to both ends' stores, real-time
pacing that says how far behind it is and samples blocks when it cannot keep up, and a cap that a
one-way demand or an unfetched slave key cannot turn into a stall. In-process, on SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from qnet.keys.source import SampleReason
from qnet.keys.store import KeyStore, keys_table, owner_of
from qnet.quantum.link import FeedMode
from qnet.servers.config import LinkConfig, SourceConfig
from qnet.servers.feeder import LinkFeed, make_feeds

EPOCH = 1_000_000.0


def _link(tmp_path: Path, **source: object) -> LinkConfig:
    settings = {"kind": "simulated", "seed": 7, "length_km": 10.0, "pulses_per_block": 10**8, **source}
    return LinkConfig(link_id="A-B", peer="B", peer_url="https://127.0.0.1:1", peer_verify_key=tmp_path / "b.pub",
                      ends=("A", "B"), source=SourceConfig.model_validate(settings),
                      peer_store_url=f"sqlite:///{tmp_path / 'B.db'}")


def _stores(tmp_path: Path) -> tuple[KeyStore, KeyStore]:
    a = KeyStore(f"sqlite:///{tmp_path / 'A.db'}", "A")
    a.set_meta("epoch/A-B", repr(EPOCH))
    return a, KeyStore(f"sqlite:///{tmp_path / 'B.db'}", "B")


def _units(store: KeyStore) -> list[tuple[str, bytes]]:
    with store.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(
            sa.select(keys_table.c.key_ID, keys_table.c.material).order_by(keys_table.c.seq))]


def _feed(tmp_path: Path, **source: object) -> tuple[LinkFeed, KeyStore, KeyStore]:
    a, b = _stores(tmp_path)
    link = _link(tmp_path, **source)
    assert make_feeds("B", [link.model_copy(update={"peer": "A"})], b, 256) == []  # the first end runs it
    (feed,) = make_feeds("A", [link], a, 256)
    return feed, a, b


def _by_owner(store: KeyStore) -> dict[str, list[tuple[str, bytes]]]:
    """Each owner's units in the store's order (the order the owner serves them in)."""
    out: dict[str, list[tuple[str, bytes]]] = {"A": [], "B": []}
    for key_id, material in _units(store):
        out[owner_of(key_id, ("A", "B"))].append((key_id, material))
    return out


def test_one_simulation_delivers_the_same_units_to_both_stores(tmp_path: Path) -> None:
    """The first end's feeder runs the link once and writes every unit into both ends' stores, each
    owner's units in the link's order at both ends: nothing for synchronisation to discard,
    whatever the machine's load."""
    feed, a, b = _feed(tmp_path)
    for i in range(1, 6):
        feed.round(now=EPOCH + 0.1 * i + 0.01)
    assert feed.sim is not None and len(feed.sim.reports) == 5
    units = _units(a)
    assert len(units) > 100
    assert sorted(units) == sorted(_units(b))
    assert _by_owner(a) == _by_owner(b) and all(_by_owner(a).values())


def test_a_feed_that_falls_behind_samples_its_blocks_and_says_so(tmp_path: Path) -> None:
    """A link 10 s behind (100 blocks owed) is behind by more than the tolerance: it samples its
    blocks (same finite-key statistics, no photons), writes its lag and mode for /metrics and the
    controller, and returns to photon-level blocks once it has caught up."""
    feed, a, b = _feed(tmp_path)
    now = EPOCH + 10.05
    feed.round(now=now)
    sim = feed.sim
    assert sim is not None and sim.mode is FeedMode.SAMPLED and sim.sampled == 10  # 10 sampled blocks a round
    assert float(a.get_meta("lag/A-B") or 0) > 9 and b.get_meta("mode/A-B") == "sampled"
    assert sim.reports[-1].final_bits > 0  # a sampled block still makes key
    for _ in range(40):
        feed.round(now=now)
    assert sim.mode is FeedMode.PHOTON and a.get_meta("mode/A-B") == "photon"
    assert float(a.get_meta("lag/A-B") or 1) == 0.0
    assert 65 <= sim.sampled <= 75 and _by_owner(a) == _by_owner(b)  # sampled until within LAG_TOLERANCE_S (3 s)


def test_a_feed_samples_while_the_post_processing_compiles_and_says_why(tmp_path: Path) -> None:
    """A machine's first run (numba's cache cold): the feed makes key from sampled blocks while the
    post-processing compiles, writes why (``why/LINK``: compiling) before the mode, and goes photon
    by photon once compiled, on time (no lag)."""
    a, b = _stores(tmp_path)
    done = [False]
    (feed,) = make_feeds("A", [_link(tmp_path)], a, 256, compiled=lambda: done[0])
    for i in range(1, 4):
        feed.round(now=EPOCH + 0.1 * i + 0.01)
    sim = feed.sim
    assert sim is not None and sim.mode is FeedMode.SAMPLED and sim.sampled == 3 and len(_units(a)) > 0
    assert (b.get_meta("why/A-B"), b.get_meta("mode/A-B")) == ("compiling", "sampled")
    done[0] = True
    feed.round(now=EPOCH + 0.41)
    assert sim.mode is FeedMode.PHOTON and sim.sampled == 3 and a.get_meta("mode/A-B") == "photon"
    assert float(a.get_meta("lag/A-B") or 1) == 0.0


def test_the_reason_for_sampled_blocks_is_told_to_the_operator() -> None:
    """Each reason reads as what happened (the agent's link-lagging event carries it)."""
    assert "compiled" in SampleReason.COMPILING.explain() and "first run" in SampleReason.COMPILING.explain()
    assert SampleReason.BEHIND.explain(12.4) == "the key feed is 12 s behind real time (too few CPU cores)"
    assert "planned at deployment" in SampleReason.PLANNED.explain(0.5)


def test_sampled_blocks_match_the_photon_blocks_on_average(tmp_path: Path) -> None:
    """Block-level sampling keeps the statistics: its key per block is within 10 % of the mean of
    photon-level blocks of the same link (computed here, cross-checked against the simulation)."""
    feed, _, _ = _feed(tmp_path)
    sim = feed.sim
    assert sim is not None
    photon = [r.final_bits for r in sim.run_blocks(8)]
    sim.mode = FeedMode.SAMPLED
    sim._run_until(sim.blocks_done() * sim.block_seconds + sim.block_seconds)
    sampled = sim.reports[-1].final_bits
    assert sampled == pytest.approx(sum(photon) / len(photon), rel=0.1)


def test_a_full_pool_pauses_the_link_without_lag(tmp_path: Path) -> None:
    """When a store holds max_units the link's time passes unrun: no key, no lag, no sampling; the
    feed resumes at real time once the pool has room."""
    feed, a, _ = _feed(tmp_path, max_units=50)
    feed.round(now=EPOCH + 0.15)
    assert a.held("A-B") >= 50
    feed.round(now=EPOCH + 30.0)
    sim = feed.sim
    assert sim is not None and sim.skipped > 250 and sim.sampled == 0
    assert a.get_meta("lag/A-B") == "0.0"


def test_units_assigned_to_a_slave_do_not_count_against_the_cap(tmp_path: Path) -> None:
    """A slave SAE that never fetches its keys must not stop its link: assigned units are not held
    for serving (the 1024 x 8192-bit request that froze a pool for minutes)."""
    _, b = _stores(tmp_path)
    units = [(f"00000000-0000-4000-8000-{i:012x}", bytes(32)) for i in range(20)]
    b.add_units("A-B", ("A", "B"), units, 0.0)
    with b.transaction() as conn:
        groups = [{"key_ID": k, "units": [k], "size": 256} for k, _ in units if k[-1] in "02468ace"]
        b.assign(conn, "A", groups, "SAE_A", ["SAE_B"])
    assert b.held("A-B") == 20 - len(groups)


def test_a_link_planned_sampled_samples_from_its_first_block(tmp_path: Path) -> None:
    """A link the deployment could not fit into the machine's cores samples every block, even at
    real time, and says so in both stores from the start."""
    feed, a, b = _feed(tmp_path, mode="sampled")
    assert a.get_meta("mode/A-B") == b.get_meta("mode/A-B") == "sampled"
    for i in range(1, 4):
        feed.round(now=EPOCH + 0.1 * i + 0.01)
    sim = feed.sim
    assert sim is not None and sim.sampled == 3 and sim.mode is FeedMode.SAMPLED
    assert _by_owner(a) == _by_owner(b) and len(_units(a)) > 0


def test_a_device_pair_leaves_nothing_for_synchronisation(tmp_path: Path) -> None:
    """Both copies of every unit are ``available`` once the pair has written them (each first where
    its owner cannot serve it): no sync offer is needed, so a 5 Mbit/s network no longer spends its
    cores offering and confirming every unit twice."""
    feed, a, b = _feed(tmp_path)
    feed.round(now=EPOCH + 0.15)
    assert a.unconfirmed("A-B") == [] and b.unconfirmed("A-B") == []
    assert a.stock("A-B") + b.stock("A-B") == len(_units(a)) > 0
