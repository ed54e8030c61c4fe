"""The key feeds of KMEs: a child process that runs their links' QKD device pairs in turn and
writes their keys into the key managers' stores (the QKD modules beside a key manager). A KME
serving alone starts one for its own links; ``qnet up`` starts one per CPU core for the network.

**One simulation per link.** A QKD device pair delivers one key to its two KMEs. So each simulated
link runs once, in the feeder of its first end, which writes each key into both ends' stores
(``peer_store_url``): both ends receive the same units by construction, and the link costs one
simulation's CPU, not two. A link whose ends are on different hosts (no ``peer_store_url``) falls
back to a copy of the simulation at each end, seeded alike. Both ends are
:class:`~qnet.keys.source.KeySource` objects; the feeder uses nothing else of a source.

**Real time, and saying when it is not.** A link the deployment planned as ``sampled`` (the machine
has too few cores to simulate every link photon by photon: ``qnet.scenarios.deploy.plan_feed_modes``)
samples all its blocks. Each round runs at most one block per link. A link whose
feed has fallen more than :data:`LAG_TOLERANCE_S` (or one block) behind the wall clock makes its next
blocks by block-level sampling of the same statistics (:class:`qnet.quantum.link.FeedMode`), up to
:data:`SAMPLED_BLOCKS_PER_ROUND` a round, until it has caught up; the lag, the mode and the number of
sampled blocks are written to both stores' meta table, from which ``/metrics``, the controller and
the dashboard read them.

On a machine's first run numba's cache is cold: the feeder then compiles the post-processing in a
process beside it (:mod:`qnet.quantum.postprocess.warmup`) and samples its blocks until that is done.

It runs in its own process so that the photon simulation and post-processing (numpy, numba) never
hold up the server's event loop, and ends with its parent (``PR_SET_PDEATHSIG`` on Linux, and a check
each round). A link whose pools are full lets its time pass unrun (the key a full store cannot take
is not made). It replays harmlessly after a restart: units already stored are skipped.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qnet.keys.source import KeyMaterial, KeySource, SampleReason
from qnet.keys.store import KeyStore, owner_of
from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.finite_key import DecoySettings
from qnet.quantum.link import FeedMode, SimulatedLink, key_id_strings
from qnet.quantum.postprocess.warmup import WarmUp
from qnet.servers.config import LinkConfig, SourceConfig, load_config

EVE_QBER = 0.25
"""The QBER an intercept-resend eavesdropper on every pulse causes (1/2 wrong basis x 1/2 wrong bit)."""
LAG_TOLERANCE_S = 3.0
"""A link's feed may run this far (or one block, if longer) behind the wall clock before its blocks
are sampled instead of simulated photon by photon."""

SKR_BLOCKS = 6
"""The secret key rate a feed reports is the mean over its last this many blocks."""
SAMPLED_BLOCKS_PER_ROUND = 10
"""A sampled link catches up this many blocks per round (a photon-level one, one block)."""

__all__ = ["EVE_QBER", "LAG_TOLERANCE_S", "LinkFeed", "PRNGSource", "feed", "feeder_main", "make_feeds"]


@dataclass(frozen=True)
class _PRNGUnit:
    key_ID: str
    key: bytes = field(repr=False)


class PRNGSource:
    """Units from SHAKE-256 of a seed, ``batch`` per call: identical at both ends, as fast as asked.
    A stand-in for load tests; its keys are not QKD keys."""

    def __init__(self, link_id: str, seed: int, unit_bits: int, batch: int = 2000) -> None:
        self.link_id, self.seed, self.unit_bytes, self.batch, self.count = link_id, seed, unit_bits // 8, batch, 0

    def take(self, now_s: float) -> list[_PRNGUnit]:
        """The next ``batch`` units (the clock is ignored)."""
        streams = [hashlib.shake_256(f"{self.seed}/{i}".encode()).digest(16 + self.unit_bytes)
                   for i in range(self.count, self.count + self.batch)]
        ids = key_id_strings(self.count, b"".join(stream[:16] for stream in streams))  # ordered, as the link's
        self.count += self.batch
        return [_PRNGUnit(key_id, stream[16:]) for key_id, stream in zip(ids, streams, strict=True)]


def _simulated(link: LinkConfig, unit_bits: int) -> SimulatedLink:
    src: SourceConfig = link.source
    overrides: dict[str, Any] = dict(src.device)
    device = replace(BB84DecoyParams(), **overrides, attenuation_db_per_km=src.attenuation_db_per_km)
    settings = DecoySettings(**src.settings.model_dump()) if src.settings is not None else None
    return SimulatedLink(link.link_id, device, length_km=src.length_km, pulses_per_block=src.pulses_per_block,
                         seed=src.seed, speedup=src.speedup, key_bits=unit_bits, replicated=True, settings=settings)


@dataclass
class LinkFeed:
    """One link's sources, the stores they deliver to (this end's first), and its clock.

    ``sources[i]`` delivers into ``stores[i]``: both ends of one simulation when the feed runs the
    device pair, this end alone otherwise.
    """

    link: LinkConfig
    sources: Sequence[KeySource]
    stores: Sequence[KeyStore]
    epoch: float
    step_s: float
    """At most this much wall time per round (one block), so that a feed catching up after a
    restart still lets the other links and the parent check run between blocks."""
    sim: SimulatedLink | None = None
    """The simulation behind the sources (for pacing), if simulated."""
    fed_until: float = 0.0
    attacked: bool = False
    compiled: Callable[[], bool] = lambda: True
    """Whether the photon-level post-processing is compiled (:class:`WarmUp`): until then the
    blocks are sampled, so that a machine's first run makes key while numba compiles."""
    _written: dict[str, str] = field(default_factory=dict)

    @property
    def own(self) -> KeyStore:
        """This KME's store."""
        return self.stores[0]

    def round(self, now: float | None = None) -> int:
        """Move what the link has made by now into the stores; returns the units added here."""
        link, now = self.link, time.time() if now is None else now
        eve = self.own.get_meta(f"eve/{link.link_id}") == "1"
        self._note_attack(eve)
        elapsed = now - self.epoch
        if any(s.held(link.link_id) >= link.source.max_units for s in self.stores):
            if self.sim is not None:  # the pools are full: the link's time passes, no key is made
                self.sim.skip_until(elapsed)
            self.fed_until = elapsed
            self._meta("lag", "0.0")
            return 0
        lag = self._pace(elapsed)
        sampled = self.sim is not None and self.sim.mode is FeedMode.SAMPLED
        self.fed_until = min(elapsed, self.fed_until + self.step_s * (SAMPLED_BLOCKS_PER_ROUND if sampled else 1))
        made = [source.take(self.fed_until) for source in self.sources]
        self._meta("lag", f"{lag:.1f}")
        if self.own.get_meta(f"cut/{link.link_id}") == "1" or eve:  # cut, or every block aborted: lost
            self._meta("skr", "0")
            return 0
        added = self._deliver(made, now)
        self._after_block(made[0])
        return added

    def _deliver(self, made: Sequence[Sequence[KeyMaterial]], now: float) -> int:
        """Write each end's units into its store; returns the units new here.

        A device pair writes every unit first where its owner (:func:`owner_of`) cannot serve it,
        then where it can: the peer's copies of the units this end serves, this end's copies of the
        units the peer serves, then the servable copies here and there. So every unit is
        ``available`` at both ends with no sync round, and at no moment servable at one end while
        missing at the other; each is written once, never updated (confirming ``new`` units cost a
        feeder more than inserting them). A crash between the writes leaves copies that their end
        cannot serve, which the replay after a restart completes."""
        link, own = self.link, self.own
        if len(self.stores) == 1:  # this end alone: the KMEs' synchronisation confirms
            return own.add_units(link.link_id, link.ends, ((u.key_ID, u.key) for u in made[0]), now)
        peer = self.stores[1]

        def owned_by(end: str, units: Sequence[KeyMaterial]) -> list[tuple[str, bytes]]:
            return [(u.key_ID, u.key) for u in units if owner_of(u.key_ID, link.ends) == end]

        peer.add_units(link.link_id, link.ends, owned_by(own.kme_id, made[1]), now, confirmed=True)
        added = own.add_units(link.link_id, link.ends, owned_by(peer.kme_id, made[0]), now, confirmed=True)
        added += own.add_units(link.link_id, link.ends, owned_by(own.kme_id, made[0]), now, confirmed=True)
        peer.add_units(link.link_id, link.ends, owned_by(peer.kme_id, made[1]), now, confirmed=True)
        return added

    def _pace(self, elapsed: float) -> float:
        """How far behind the wall clock the feed is (s); chooses the next blocks' mode from it."""
        sim = self.sim
        if sim is None:
            return 0.0
        block_wall = sim.block_seconds / sim.speedup
        lag = max(elapsed - (sim.blocks_done() + 1) * block_wall, 0.0)
        behind = lag > max(LAG_TOLERANCE_S, block_wall)
        why = (SampleReason.PLANNED if self.link.source.mode == "sampled" else SampleReason.BEHIND if behind
               else None if self.compiled() else SampleReason.COMPILING)
        mode = FeedMode.PHOTON if why is None else FeedMode.SAMPLED
        if why is not None:
            self._meta("why", why.value)  # before the mode: a reader seeing "sampled" finds its reason
        if mode is not sim.mode:
            sim.mode = mode
            self._meta("mode", mode.value)
        return lag

    def _after_block(self, units: Sequence[KeyMaterial]) -> None:
        sim, link = self.sim, self.link
        if sim is None:
            return
        if sim.reports:
            self._meta("qber", repr(float(sim.reports[-1].qber_estimate)))
            recent = sim.reports[-SKR_BLOCKS:]  # the device's secret key rate, as a QKD module reports it
            skr = sum(r.net_bits for r in recent) / (len(recent) * sim.block_seconds) * sim.speedup
            self._meta("skr", f"{skr:.6g}")
        self._meta("sampled", str(sim.sampled))
        if units:  # how far the link's own clock has got (it lags the wall clock on a busy machine)
            self._meta("link_s", repr(self.fed_until * link.source.speedup))

    def _note_attack(self, eve: bool) -> None:
        """A simulated intercept-resend attack: QBER about 25 %, so every block is aborted; once it
        stops, the link's own QBER again (unknown until its next block)."""
        if eve:
            self._meta("qber", repr(EVE_QBER))
        elif self.attacked:
            last = self.sim.reports[-1].qber_estimate if self.sim is not None and self.sim.reports else None
            self._meta("qber", "" if last is None else repr(float(last)))
        self.attacked = eve

    def _meta(self, name: str, value: str) -> None:
        """Write ``value`` under ``name/LINK`` in every store (skipped when unchanged)."""
        if self._written.get(name) == value:
            return
        self._written[name] = value
        for store in self.stores:
            store.set_meta(f"{name}/{self.link.link_id}", value)


def make_feeds(kme_id: str, links: Sequence[LinkConfig], store: KeyStore, unit_bits: int, *,
               compiled: Callable[[], bool] | None = None) -> list[LinkFeed]:
    """The feeds this KME's feeder runs: every link it is the first end of (both ends' stores), and
    links without a ``peer_store_url`` (this end alone); none for links the other end runs.
    ``compiled``: see :attr:`LinkFeed.compiled` (always, if None)."""
    feeds = []
    for link in links:
        pair = link.peer_store_url is not None
        if pair and kme_id != link.ends[0]:
            continue  # the device pair runs in the first end's feeder
        stores = [store]
        if link.peer_store_url:
            stores.append(KeyStore(link.peer_store_url, link.peer, lifetime_s=store.lifetime_s))
        epoch = float(store.set_meta_once(f"epoch/{link.link_id}", repr(time.time())))
        for other in stores[1:]:
            other.set_meta_once(f"epoch/{link.link_id}", repr(epoch))
        src = link.source
        if src.kind == "prng":
            sources: list[KeySource] = [PRNGSource(link.link_id, src.seed, unit_bits) for _ in stores]
            feeds.append(LinkFeed(link, sources, stores, epoch, step_s=1.0))
            continue
        sim = _simulated(link, unit_bits)
        if src.mode == "sampled":  # planned: the machine has too few cores for this link photon by photon
            sim.mode = FeedMode.SAMPLED
            for other in stores:
                other.set_meta(f"why/{link.link_id}", SampleReason.PLANNED.value)
                other.set_meta(f"mode/{link.link_id}", FeedMode.SAMPLED.value)
        own_end, other_end = (sim.alice, sim.bob) if kme_id == link.ends[0] else (sim.bob, sim.alice)
        feeds.append(LinkFeed(link, [own_end, other_end][:len(stores)], stores, epoch,
                              step_s=sim.block_seconds / sim.speedup, sim=sim, compiled=compiled or _always))
    return feeds


def _always() -> bool:
    return True


def feed(feeds: Sequence[LinkFeed], *, rounds: int | None = None, pause_s: float = 0.1,
         stop: threading.Event | None = None) -> int:
    """Feed every link in turn until stopped (``rounds`` rounds, or for ever while the parent
    lives and ``stop`` is not set; it is checked between links); sleeps ``pause_s`` when a whole
    round made nothing. Returns the units added here."""
    parent, added, done, stop = os.getppid(), 0, 0, stop or threading.Event()
    while (rounds is None or done < rounds) and not stop.is_set():
        done += 1
        if rounds is None and os.getppid() != parent:
            break  # the KME died: a QKD module without its key manager stops
        made = 0
        for f in feeds:
            if stop.is_set():
                break
            made += f.round()
        added += made
        if not made:
            stop.wait(pause_s)
    return added


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (even by kill -9)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def feeder_main(config_paths: str | Sequence[str]) -> None:
    """Entry point of a feeder process: the links of the KMEs configured at ``config_paths`` (one
    path, or several), all in turn in this one process. A KME serving alone starts one for itself;
    ``qnet up`` starts one per CPU core for the whole network (``qnet kme feed``), since a process
    costs about 2 s of CPU to start and a few hundred MB (numpy, numba)."""
    _die_with_parent()
    stop = threading.Event()  # SIGTERM ends the loop between two links, never inside a transaction
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    os.nice(10)  # the photon simulation yields the cores to the key managers' requests
    stores: list[KeyStore] = []
    feeds: list[LinkFeed] = []
    warm = WarmUp()  # a machine's first run: numba compiles beside the feeds, which sample meanwhile
    try:
        for path in [config_paths] if isinstance(config_paths, str) else config_paths:
            config = load_config(Path(path))
            store = KeyStore(config.store_url, config.kme_id, lifetime_s=config.key_lifetime_s)
            stores.append(store)
            feeds += make_feeds(config.kme_id, config.links, store, config.unit_bits, compiled=warm.ready)
        if feeds:
            feed(feeds, stop=stop)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        warm.stop()
        for f in feeds:
            for other in f.stores[1:]:
                other.close()
        for store in stores:
            store.close()
