"""The key feeds of one KME: a child process that runs its links' key sources in turn and writes
their units into the KME's store (the QKD modules beside a key manager).

It runs in its own process so that the photon simulation and post-processing (numpy, numba) never
hold up the server's event loop. It stops when its parent dies (checked each round), caps what it
holds at ``max_units``, and replays harmlessly after a restart: units already stored are skipped.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qnet.keys.store import KeyStore
from qnet.physics.bb84 import BB84DecoyParams
from qnet.quantum.link import SimulatedLink
from qnet.servers.config import LinkConfig, SourceConfig, load_config

EVE_QBER = 0.25
"""The QBER an intercept-resend eavesdropper on every pulse causes (1/2 wrong basis x 1/2 wrong bit)."""

__all__ = ["LinkFeed", "PrngSource", "feed", "feeder_main", "make_source"]


class _Unit(Protocol):
    @property
    def key_ID(self) -> str: ...
    @property
    def key(self) -> bytes: ...


class _Source(Protocol):
    def take(self, now_s: float) -> Sequence[_Unit]: ...


@dataclass(frozen=True)
class _PrngUnit:
    key_ID: str
    key: bytes = field(repr=False)


class PrngSource:
    """Units from SHAKE-256 of a seed, ``batch`` per call: identical at both ends, as fast as asked.
    A stand-in for load tests; its keys are not QKD keys."""

    def __init__(self, seed: int, unit_bits: int, batch: int = 2000) -> None:
        self.seed, self.unit_bytes, self.batch, self.count = seed, unit_bits // 8, batch, 0

    def take(self, now_s: float) -> list[_PrngUnit]:
        """The next ``batch`` units (the clock is ignored)."""
        out = []
        for i in range(self.count, self.count + self.batch):
            stream = hashlib.shake_256(f"{self.seed}/{i}".encode()).digest(16 + self.unit_bytes)
            out.append(_PrngUnit(str(uuid.UUID(bytes=stream[:16], version=4)), stream[16:]))
        self.count += self.batch
        return out


def make_source(kme_id: str, link: LinkConfig, unit_bits: int) -> _Source:
    """This end's key source for ``link``."""
    src: SourceConfig = link.source
    if src.kind == "prng":
        return PrngSource(src.seed, unit_bits)
    device = BB84DecoyParams(attenuation_db_per_km=src.attenuation_db_per_km)
    sim = SimulatedLink(link.link_id, device, length_km=src.length_km, pulses_per_block=src.pulses_per_block,
                        seed=src.seed, speedup=src.speedup, key_bits=unit_bits, replicated=True)
    return sim.alice if kme_id == link.ends[0] else sim.bob


@dataclass
class LinkFeed:
    """One link's source and how far its clock has been fed."""

    link: LinkConfig
    source: _Source
    epoch: float
    step_s: float
    """At most this much wall time per round (one block), so that a feed catching up after a
    restart still lets the other links and the parent check run between blocks."""
    fed_until: float = 0.0
    attacked: bool = False

    def round(self, store: KeyStore) -> int:
        """Move what the source has made by now into ``store``; returns the units added."""
        link = self.link
        eve = store.get_meta(f"eve/{link.link_id}") == "1"
        if eve:  # a simulated intercept-resend attack: QBER about 25 %, so every block is aborted
            store.set_meta(f"qber/{link.link_id}", repr(EVE_QBER))
        elif self.attacked:  # the attack stopped: the link's own QBER again (unknown until its next block)
            qber = _last_qber(self.source)
            store.set_meta(f"qber/{link.link_id}", "" if qber is None else repr(qber))
        self.attacked = eve
        if store.held(link.link_id) >= link.source.max_units:
            return 0
        self.fed_until = min(time.time() - self.epoch, self.fed_until + self.step_s)
        units = self.source.take(self.fed_until)
        if store.get_meta(f"cut/{link.link_id}") == "1":  # the operator cut the link: what it made is lost
            return 0
        if eve:
            return 0
        added = store.add_units(link.link_id, link.ends, ((u.key_ID, u.key) for u in units), time.time())
        qber = _last_qber(self.source)
        if qber is not None:
            store.set_meta(f"qber/{link.link_id}", repr(qber))
        if units:  # how far the link's own clock has got (it lags the wall clock on a busy machine)
            store.set_meta(f"link_s/{link.link_id}", repr(self.fed_until * link.source.speedup))
        return added


def feed(store: KeyStore, feeds: Sequence[LinkFeed], *, rounds: int | None = None, pause_s: float = 0.1) -> int:
    """Feed every link in turn until stopped (``rounds`` rounds, or for ever while the parent
    lives); sleeps ``pause_s`` when a whole round made nothing. Returns the units added."""
    parent, added, done = os.getppid(), 0, 0
    while rounds is None or done < rounds:
        done += 1
        if rounds is None and os.getppid() != parent:
            break  # the KME died: a QKD module without its key manager stops
        made = sum(f.round(store) for f in feeds)
        added += made
        if not made:
            time.sleep(pause_s)
    return added


def _last_qber(source: _Source) -> float | None:
    """The QBER the link estimated on its last block (simulated links; None for the PRNG)."""
    reports = getattr(getattr(source, "link", None), "reports", None)
    return float(reports[-1].qber_estimate) if reports else None


def feeder_main(config_path: str) -> None:
    """Entry point of the feeder process of the KME configured at ``config_path``: one process runs
    all its links in turn (a process per link costs a few hundred MB each: numpy, numba)."""
    os.nice(10)  # the photon simulation yields the cores to the key managers' requests
    config = load_config(Path(config_path))
    store = KeyStore(config.store_url, config.kme_id, lifetime_s=config.key_lifetime_s)
    feeds = []
    for link in config.links:
        epoch = float(store.set_meta_once(f"epoch/{link.link_id}", repr(time.time())))
        src = link.source
        step = src.pulses_per_block / BB84DecoyParams().rep_rate_hz / src.speedup  # one block
        feeds.append(LinkFeed(link, make_source(config.kme_id, link, config.unit_bits), epoch, step))
    try:
        feed(store, feeds)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
