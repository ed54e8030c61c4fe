"""The key feed of one link end: a child process of the KME that runs the link's key source and
writes its units into the KME's store (the QKD module beside a key manager).

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

__all__ = ["PrngSource", "feed", "feeder_main", "make_source"]


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


def feed(store: KeyStore, link: LinkConfig, source: _Source, epoch: float, *, rounds: int | None = None,
         pause_s: float = 0.1, step_s: float = 1.0) -> int:
    """Move units from ``source`` to ``store`` until stopped (``rounds`` rounds, or for ever while
    the parent lives); returns the units added. Each round advances the source's clock by at most
    ``step_s`` of wall time, so that a feed catching up after a restart still checks its parent
    and its cap between blocks."""
    parent, added, done, fed_until = os.getppid(), 0, 0, 0.0
    while rounds is None or done < rounds:
        done += 1
        if rounds is None and os.getppid() != parent:
            break  # the KME died: a QKD module without its key manager stops
        if store.held(link.link_id) >= link.source.max_units:
            time.sleep(pause_s)
            continue
        fed_until = min(time.time() - epoch, fed_until + step_s)
        units = source.take(fed_until)
        if store.get_meta(f"cut/{link.link_id}") == "1":  # the operator cut the link: what it made is lost
            time.sleep(pause_s)
            continue
        added += store.add_units(link.link_id, link.ends, ((u.key_ID, u.key) for u in units), time.time())
        qber = _last_qber(source)
        if qber is not None:
            store.set_meta(f"qber/{link.link_id}", repr(qber))
        if units:  # how far the link's own clock has got (it lags the wall clock on a busy machine)
            store.set_meta(f"link_s/{link.link_id}", repr(fed_until * link.source.speedup))
        if not units:
            time.sleep(pause_s)
    return added


def _last_qber(source: _Source) -> float | None:
    """The QBER the link estimated on its last block (simulated links; None for the PRNG)."""
    reports = getattr(getattr(source, "link", None), "reports", None)
    return float(reports[-1].qber_estimate) if reports else None


def feeder_main(config_path: str, link_id: str) -> None:
    """Entry point of the feeder process of ``link_id`` in the KME configured at ``config_path``."""
    os.nice(10)  # the photon simulation yields the cores to the key managers' requests
    config = load_config(Path(config_path))
    link = next(lk for lk in config.links if lk.link_id == link_id)
    store = KeyStore(config.store_url, config.kme_id, lifetime_s=config.key_lifetime_s)
    epoch = float(store.set_meta_once(f"epoch/{link_id}", repr(time.time())))
    try:
        src = link.source
        step = src.pulses_per_block / BB84DecoyParams().rep_rate_hz / src.speedup  # one block
        feed(store, link, make_source(config.kme_id, link, config.unit_bits), epoch, step_s=step)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
