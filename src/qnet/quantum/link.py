"""A running simulated QKD link: blocks of pulses through the photon-level simulation and the
post-processing chain, delivering ``(key_ID, key bytes)`` at both ends at the physical rate.

Each end is a key source in the sense of ``qnet.keys.source.KeySource`` (a structural protocol:
this module does not import the keys layer). A block of ``pulses_per_block`` pulses takes
``pulses_per_block / rep_rate_hz`` seconds of link time; with a ``speedup`` the link runs that much
faster than the wall clock. Keys are cut from the blocks' final keys in ``key_bits`` pieces, each
with a UUID key_ID that both ends share; blocks run lazily, when an end asks for keys.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.channels import link_transmittance
from qnet.physics.entropy import reconciliation_efficiency
from qnet.physics.finite_key import (
    DecoySettings,
    key_length_for_pulses,
    key_lengths_for_pulses,
    optimal_settings_batch,
)
from qnet.quantum.bb84 import simulate_bb84
from qnet.quantum.eve import Eve
from qnet.quantum.postprocess.authentication import AuthKeyPool
from qnet.quantum.postprocess.pipeline import BlockReport, ChainConfig, PostProcessor

__all__ = ["CASCADE_EFFICIENCY", "FEED_BLOCKS", "SECONDS_PER_CLICK", "TEXTBOOK_SETTINGS", "FeedMode", "LinkEnd",
           "LinkSummary", "SimulatedLink", "block_settings", "expected_block", "expected_qber", "expected_rate_bps",
           "feed_block_pulses", "key_id_strings", "link_cpu_cores", "plan_block_settings", "plan_feeds",
           "settings_for_block", "summarise"]

CASCADE_EFFICIENCY = 1.07
"""Reconciliation efficiency f the chain's Cascade reaches on these blocks (measured: 1.070 at 25 km
and 1.072 at 50 km, 10^9-pulse blocks, QBER about 1.5 %); what the expected rate assumes."""
FEED_BLOCKS = (10**8, 10**9, 10**10, 10**11)
"""Block lengths (pulses) a live link may run: 0.1 s, 1 s, 10 s and 100 s of a 1 GHz source (the
last for links too lossy to make finite key in shorter blocks, e.g. 27 dB)."""
SECONDS_PER_CLICK = 5e-7
"""CPU seconds the photon simulation and the post-processing chain spend per detection (measured on
this project's 2-core reference machine: 3.75 s for the 7.5 M clicks of a 10^10-pulse block at
11 dB, 1.9 s for 4.6 M at 13 dB); what :func:`link_cpu_cores` scales."""
TEXTBOOK_SETTINGS = DecoySettings(q_x=0.5, p1=0.6, p2=0.2, mu1=0.5, mu2=0.1)
"""The settings a link runs when no setting gives finite key at its block length: the optimiser's
choice there is degenerate (almost every pulse a decoy), and its QBER estimate would be the dark
counts', not the channel's (a false eavesdropper alarm on a merely lossy link)."""


class FeedMode(StrEnum):
    """How a live link makes its next block."""

    PHOTON = "photon"
    """Photon by photon, then the whole post-processing chain (the default)."""
    SAMPLED = "sampled"
    """Block-level sampling of the same statistics: the finite-key length and QBER of the block's
    expected counts, random key bits; no photon simulation (when the machine cannot keep up)."""


class _Key:
    """A delivered key (a plain slotted class: a link cuts thousands per block)."""

    __slots__ = ("key", "key_ID")

    def __init__(self, key_ID: str, key: bytes) -> None:
        self.key_ID, self.key = key_ID, key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and (self.key_ID, self.key) == (other.key_ID, other.key)

    def __hash__(self) -> int:
        return hash((self.key_ID, self.key))

    def __repr__(self) -> str:  # key material never appears in logs
        return f"Key(key_ID={self.key_ID!r}, key=<{len(self.key)} bytes>)"


_SETTINGS: dict[tuple[BB84DecoyParams, float, float], DecoySettings] = {}
"""What :func:`plan_block_settings` found, per (device, channel transmittance, pulses per block)."""
_SETTINGS_KEPT = 4096


def settings_for_block(device: BB84DecoyParams, channel_transmittance: float, pulses: float) -> DecoySettings:
    """Intensities and basis bias that maximise the finite-key rate for blocks of ``pulses`` pulses;
    :data:`TEXTBOOK_SETTINGS` where no setting gives key (so the QBER estimate stays the channel's).
    Cached per device, transmittance and block (:func:`plan_block_settings`)."""
    return plan_block_settings(device, [channel_transmittance], [pulses])[0]


def plan_block_settings(device: BB84DecoyParams, channel_transmittances: Sequence[float],
                        pulses: Sequence[float]) -> list[DecoySettings]:
    """:func:`settings_for_block` for many (transmittance, block) pairs of one device: those not
    cached yet are searched together, in one vectorised batch
    (:func:`~qnet.physics.finite_key.optimal_settings_batch`), and cached."""
    keys = [(device, float(t), float(n)) for t, n in zip(channel_transmittances, pulses, strict=True)]
    missing = [k for k in dict.fromkeys(keys) if k not in _SETTINGS]
    if missing:
        params = replace(device, decoy="vacuum+weak", nu=None, block_size=1e6)  # block_size: only its mode
        etas = [t * device.detector_efficiency for _, t, _ in missing]
        blocks = [n for _, _, n in missing]
        found = optimal_settings_batch(params, etas, pulses=blocks)
        lengths = key_lengths_for_pulses(replace(params, ec_efficiency=CASCADE_EFFICIENCY), etas, found, blocks)
        for key, best, length in zip(missing, found, lengths, strict=True):
            _SETTINGS[key] = best if length > 0 else TEXTBOOK_SETTINGS
    found_all = [_SETTINGS[k] for k in keys]
    for stale in list(_SETTINGS)[:max(len(_SETTINGS) - _SETTINGS_KEPT, 0)]:  # the oldest first
        del _SETTINGS[stale]
    return found_all


def expected_rate_bps(length_km: float, attenuation_db_per_km: float, pulses_per_block: int,
                      ec_efficiency: float = CASCADE_EFFICIENCY, *, device: BB84DecoyParams | None = None) -> float:
    """Secret key rate (bit/s) a :class:`SimulatedLink` with the default device makes on average:
    the finite-key length of one block (Lim et al. 2014, on expected counts, with the settings the
    link picks) per block time. The simulator's link model (``qnet simulate``), so that it predicts
    what ``qnet up``'s links deliver.

    Examples:
        >>> round(expected_rate_bps(25.0, 0.2, 10**9) / 1e3)  # kbit/s
        338
    """
    return expected_block(length_km, attenuation_db_per_km, pulses_per_block, ec_efficiency, device)[0]


def expected_qber(length_km: float, attenuation_db_per_km: float, pulses_per_block: int, *,
                  device: BB84DecoyParams | None = None) -> float:
    """The QBER (key basis) a :class:`SimulatedLink` with the default device sees on average: what
    its end reports to the controller, so that ``qnet simulate`` raises the same QBER alarms.

    Examples:
        >>> round(expected_qber(25.0, 0.2, 10**9), 3)
        0.033
    """
    return expected_block(length_km, attenuation_db_per_km, pulses_per_block, CASCADE_EFFICIENCY, device)[1]


def block_settings(length_km: float, attenuation_db_per_km: float, pulses_per_block: int, *,
                   device: BB84DecoyParams | None = None) -> DecoySettings:
    """The settings a :class:`SimulatedLink` of this geometry sends with (:func:`settings_for_block`
    for the default device, or ``device`` with its attenuation replaced): what a deployment plans
    once and hands its feeders, so that no feeder optimises them again."""
    device = replace(device or BB84DecoyParams(), attenuation_db_per_km=attenuation_db_per_km)
    channel = float(link_transmittance(length_km, attenuation_db_per_km, device.extra_loss_db))
    return settings_for_block(device, channel, pulses_per_block)


@lru_cache(maxsize=4096)
def expected_block(length_km: float, attenuation_db_per_km: float, pulses_per_block: int,
                   ec_efficiency: float, device: BB84DecoyParams | None = None) -> tuple[float, float]:
    """(secret bit/s, QBER) of a simulated link on average, from the finite-key length of one block
    (the default device, or ``device`` with its attenuation replaced by ``attenuation_db_per_km``)."""
    settings = block_settings(length_km, attenuation_db_per_km, pulses_per_block, device=device)
    device = replace(device or BB84DecoyParams(), attenuation_db_per_km=attenuation_db_per_km)
    channel = float(link_transmittance(length_km, attenuation_db_per_km, device.extra_loss_db))
    params = replace(device, decoy="vacuum+weak", nu=None, block_size=1e6, ec_efficiency=ec_efficiency)
    result = key_length_for_pulses(params, channel * device.detector_efficiency, settings, pulses_per_block)
    return max(result.key_length, 0.0) * device.rep_rate_hz / pulses_per_block, float(result.qber_x)


def feed_block_pulses(length_km: float, attenuation_db_per_km: float, *, device: BB84DecoyParams | None = None) -> int:
    """The block length a live link runs: the shortest of :data:`FEED_BLOCKS` up to 10 s whose rate
    reaches half of the 10 s block's (short blocks give keys sooner; finite-key corrections make them
    leaner, and on a lossy link eat all the key); 100 s blocks where shorter ones make no key.

    Examples:
        >>> feed_block_pulses(25.0, 0.2), feed_block_pulses(45.0, 0.322)
        (1000000000, 10000000000)
    """
    def rate(pulses: int) -> float:
        return expected_rate_bps(length_km, attenuation_db_per_km, pulses, device=device)

    *short, longest = FEED_BLOCKS
    best = rate(short[-1])
    if best > 0:  # the rate grows with the block: walk down from the longest while it is good enough
        chosen = short[-1]
        for n in reversed(short[:-1]):
            if rate(n) < best / 2:
                break
            chosen = n
        return chosen
    return longest if rate(longest) > 0 else short[-1]  # no key otherwise: 10 s blocks, a steady QBER


def plan_feeds(links: Iterable[tuple[float, float, BB84DecoyParams | None]]) -> None:
    """Search the settings of every (length km, attenuation dB/km, device) link for every block of
    :data:`FEED_BLOCKS` in one vectorised batch per device (:func:`plan_block_settings`), so that
    :func:`feed_block_pulses` and :func:`expected_block` then find them cached: planning a
    network's links one by one searched them one at a time, 20x slower (``benchmarks/finite_key.py``)."""
    channels: dict[BB84DecoyParams, dict[float, None]] = {}
    for length_km, attenuation, device in links:
        dev = replace(device or BB84DecoyParams(), attenuation_db_per_km=attenuation)
        channel = float(link_transmittance(length_km, attenuation, dev.extra_loss_db))
        channels.setdefault(dev, {})[channel] = None
    for dev, seen in channels.items():
        pairs = [(t, float(n)) for t in seen for n in FEED_BLOCKS]
        plan_block_settings(dev, [t for t, _ in pairs], [n for _, n in pairs])


def link_cpu_cores(length_km: float, attenuation_db_per_km: float, pulses_per_block: int, *,
                   device: BB84DecoyParams | None = None, settings: DecoySettings | None = None) -> float:
    """CPU cores one live link's photon simulation needs to keep up with real time: its expected
    detections per second times :data:`SECONDS_PER_CLICK` (one simulation per link, whatever the
    number of its ends), sending with ``settings`` (:func:`block_settings` when None).

    Examples:
        >>> round(link_cpu_cores(13.0, 0.846, 10**10), 2)  # the Tokyo network's idq link
        0.38
    """
    settings = settings or block_settings(length_km, attenuation_db_per_km, pulses_per_block, device=device)
    device = replace(device or BB84DecoyParams(), attenuation_db_per_km=attenuation_db_per_km)
    eta = float(link_transmittance(length_km, attenuation_db_per_km, device.extra_loss_db)) * device.detector_efficiency
    click = sum(p * (1 - (1 - device.dark_count_prob) ** 2 * math.exp(-eta * mu))
                for p, mu in zip(settings.probs, settings.intensities, strict=True))
    return click * device.rep_rate_hz * SECONDS_PER_CLICK


def key_id_strings(prefix: int, random: bytes) -> list[str]:
    """Key_IDs for a batch of keys: UUIDs (RFC 9562 layout, version 8: custom) whose first 48 bits
    are ``prefix`` (how many keys their link had made before them) and whose other 74 bits come
    from ``random`` (16 bytes each). They sort in the order their link made them, as UUIDv7s do by
    wall time, so a store's key_ID index grows at its end: inserting random version-4 IDs cost four times
    as much (measured: 58 against 15 us a row in a store of 200,000 units), and filling the pools
    of an 18-link network is most of what its machine does. ETSI GS QKD 014 asks only for the UUID
    format; the IDs are public in any case.

    Examples:
        >>> ids = key_id_strings(10_000, bytes(range(32)))  # two keys, after the link's first 10,000
        >>> ids[0]
        '00000000-2710-8607-8809-0a0b0c0d0e0f'
        >>> import uuid; [uuid.UUID(i).version for i in ids], ids == sorted(ids)
        ([8, 8], True)
    """
    raw = np.frombuffer(random, dtype=np.uint8).reshape(-1, 16).copy()
    raw[:, :6] = np.frombuffer(int(prefix).to_bytes(8, "big")[2:], dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x80  # version 8
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    text = raw.tobytes().hex()
    hexes = (text[i:i + 32] for i in range(0, len(text), 32))
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]


class SimulatedLink:
    """Both ends of one simulated decoy-BB84 link.

    Args:
        link_id: the link's name.
        device: device parameters (``decoy`` and ``block_size`` are managed here).
        length_km: fibre length.
        pulses_per_block: pulses per post-processing block.
        seed: the seed of everything random on this link.
        replicated: if true, the seed also draws the pre-shared authentication secret and Alice's
            public random choices, so two copies of the link with the same seed (one in each end's
            key manager process) make the same keys. The seed then stands for the photons both ends
            share: it must be secret and from a CSPRNG (``qnet pki init`` draws 128 bits).
        speedup: link seconds per wall-clock second.
        key_bits: size of each delivered key.
        eve: an eavesdropper on the link, if any.
        config: post-processing settings.
        settings: the intensities and basis bias to send with (what a deployment planned for this
            block length: :func:`block_settings`); optimised here when None.
    """

    def __init__(self, link_id: str, device: BB84DecoyParams, *, length_km: float, pulses_per_block: int = 10**9,
                 seed: int = 0, speedup: float = 1.0, key_bits: int = 256, eve: Eve | None = None,
                 config: ChainConfig | None = None, replicated: bool = False,
                 settings: DecoySettings | None = None) -> None:
        if key_bits <= 0 or key_bits % 8:
            raise ValueError(f"key_bits must be a positive multiple of 8, got {key_bits!r}")
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup!r}")
        self.link_id, self.device, self.speedup, self.key_bits, self.eve = link_id, device, speedup, key_bits, eve
        self.pulses_per_block = int(pulses_per_block)
        self.transmittance = float(link_transmittance(length_km, device.attenuation_db_per_km, device.extra_loss_db))
        if settings is not None and not settings.valid():
            raise ValueError(f"the settings do not meet the decoy protocol's constraints: {settings}")
        self.settings = settings or settings_for_block(device, self.transmittance, self.pulses_per_block)
        seeds = np.random.SeedSequence(seed).spawn(4)
        self._quantum, self._public = np.random.default_rng(seeds[0]), np.random.default_rng(seeds[1])
        self._ids = np.random.default_rng(seeds[2])  # key_IDs are public: a stream of their own
        chain_device = replace(device, decoy="vacuum+weak", nu=None)
        shared = np.random.default_rng(seeds[3]).bytes if replicated else secrets.token_bytes
        pool = AuthKeyPool(shared(4096))  # the pre-shared secret: from the seed only when replicated
        self._chain = PostProcessor(chain_device, self.settings, pool, config, public_random=shared)
        self._keys: list[_Key] = []
        self._taken_base = 0
        """How many keys before ``_keys[0]`` both ends have taken and were dropped."""
        self._spare = np.zeros(0, dtype=np.uint8)
        self.reports: list[BlockReport] = []
        self.mode = FeedMode.PHOTON
        """How the next blocks are made (a live feeder switches to sampling when it falls behind)."""
        self.skipped = 0
        """Blocks of link time that passed without being run (:meth:`skip_until`)."""
        self.sampled = 0
        """Blocks made by block-level sampling."""
        self._sampled_block: tuple[int, float] | None = None
        self.alice, self.bob = LinkEnd(self, "alice"), LinkEnd(self, "bob")

    @property
    def block_seconds(self) -> float:
        """Link time one block takes (s)."""
        return self.pulses_per_block / self.device.rep_rate_hz

    def blocks_due(self, now_s: float) -> int:
        """Blocks of link time that have finished by wall-clock time ``now_s``."""
        return math.floor(now_s * self.speedup / self.block_seconds + 1e-9)

    def blocks_done(self) -> int:
        """Blocks run or skipped so far."""
        return len(self.reports) + self.skipped

    def skip_until(self, now_s: float) -> int:
        """Let the link time up to ``now_s`` pass without running its blocks (the key it would have
        made is not made: e.g. while its key managers' pools are full); returns the blocks skipped."""
        missed = max(self.blocks_due(now_s) - self.blocks_done(), 0)
        self.skipped += missed
        return missed

    def _run_until(self, now_s: float) -> None:
        """Run every block that has finished by wall-clock time ``now_s``."""
        while self.blocks_done() < self.blocks_due(now_s):
            self._run_block()

    def _run_block(self, pulses: int | None = None) -> None:
        if self.mode is FeedMode.SAMPLED and self.eve is None and pulses is None:
            report, key = self._sample_block()
        else:
            events = simulate_bb84(self.device, self.settings, pulses=pulses or self.pulses_per_block,
                                   channel_transmittance=self.transmittance, rng=self._quantum, eve=self.eve)
            result = self._chain.process(events, self._public)
            report, key = result.report, result.alice_key
            if not np.array_equal(result.alice_key, result.bob_key):
                raise RuntimeError(f"link {self.link_id}: final keys differ at the two ends")
        self.reports.append(report)
        self._cut_keys(key)

    def _sample_block(self) -> tuple[BlockReport, npt.NDArray[np.uint8]]:
        """One block by block-level sampling: the finite-key length (Lim et al. 2014) and QBER of the
        block's expected counts, as :func:`expected_block` computes them, and uniformly random key
        bits from the link's own stream (one simulation feeds both ends, so they agree). Costs
        microseconds where the photon-level block costs seconds."""
        if self._sampled_block is None:
            params = replace(self.device, decoy="vacuum+weak", nu=None, block_size=1e6,
                             ec_efficiency=CASCADE_EFFICIENCY)
            eta = self.transmittance * self.device.detector_efficiency
            result = key_length_for_pulses(params, eta, self.settings, self.pulses_per_block)
            self._sampled_block = (max(int(result.key_length), 0), float(result.qber_x))
        length, qber = self._sampled_block
        self.sampled += 1
        report = BlockReport(pulses=self.pulses_per_block, clicks=0, sifted_bits=0, test_bits=0,
                             qber_estimate=qber, qber=qber, leak_ec=0, frames=0, frames_failed=0,
                             final_bits=length, auth_bits=0, phase_error=math.nan, single_photon_bits=math.nan,
                             eve_knows=0.0, aborted="" if length else "no key at this block length (sampled)")
        return report, self._quantum.integers(0, 2, size=length, dtype=np.uint8)

    def _cut_keys(self, key: npt.NDArray[np.uint8]) -> None:
        """Cut a block's final key (bits) into keys of ``key_bits``; the rest waits for the next block."""
        bits = np.concatenate([self._spare, key])
        whole = bits.size // self.key_bits * self.key_bits
        chunks = np.packbits(bits[:whole]).reshape(-1, self.key_bits // 8)
        ids = key_id_strings(self.keys_made(), self._ids.bytes(16 * len(chunks)))
        material = chunks.tobytes()
        step = self.key_bits // 8
        self._keys.extend(_Key(key_id, material[i * step:(i + 1) * step]) for i, key_id in enumerate(ids))
        self._spare = bits[whole:]

    def keys_made(self) -> int:
        """Keys delivered so far (to the faster end)."""
        return self._taken_base + len(self._keys)

    def _forget_taken(self) -> None:
        """Drop the keys both ends have taken (a live link runs for days)."""
        low = min(self.alice._cursor, self.bob._cursor) - self._taken_base
        if low > 4096:
            del self._keys[:low]
            self._taken_base += low

    def run_blocks(self, count: int, *, pulses: int | None = None) -> list[BlockReport]:
        """Run ``count`` more blocks now, whatever the clock says (of ``pulses`` pulses each, the
        link's block size by default); returns their reports."""
        start = len(self.reports)
        for _ in range(count):
            self._run_block(pulses)
        return self.reports[start:]


@dataclass
class LinkEnd:
    """One end of a :class:`SimulatedLink`: a key source (``take(now_s)``)."""

    link: SimulatedLink
    side: str
    _cursor: int = field(default=0)

    @property
    def link_id(self) -> str:
        """The link this end belongs to."""
        return self.link.link_id

    def take(self, now_s: float) -> list[_Key]:
        """Every key this end has received by time ``now_s`` and not yet taken, in order."""
        link = self.link
        link._run_until(now_s)
        fresh = link._keys[self._cursor - link._taken_base:]
        self._cursor = link.keys_made()
        link._forget_taken()
        return list(fresh)


@dataclass(frozen=True)
class LinkSummary:
    """Totals over the blocks a link has run (no key material).

    Attributes:
        blocks: blocks run.
        pulses: pulses sent.
        clicks: detections.
        sifted_bits: raw-key bits.
        qber: raw-key QBER (actual, simulation).
        qber_estimate: QBER estimated from the test basis (last block with a test basis).
        leak_ec: bits disclosed by reconciliation and verification.
        ec_efficiency: f = leak / (n h(QBER)).
        frames: reconciliation frames.
        frames_failed: frames dropped by verification.
        final_bits: secret bits after privacy amplification.
        net_bits: final bits minus those spent on authentication.
        eve_knows: share of the raw key Eve knew (diagnostic).
        aborted: blocks that gave no key, with the first reason.
    """

    blocks: int
    pulses: int
    clicks: int
    sifted_bits: int
    qber: float
    qber_estimate: float
    leak_ec: int
    ec_efficiency: float
    frames: int
    frames_failed: int
    final_bits: int
    net_bits: int
    eve_knows: float
    aborted: int
    abort_reason: str

    @property
    def frame_error_rate(self) -> float:
        """Frames dropped over frames reconciled (0 when none were)."""
        return self.frames_failed / self.frames if self.frames else 0.0

    @property
    def secret_fraction(self) -> float:
        """Final secret bits per pulse sent."""
        return self.final_bits / self.pulses if self.pulses else 0.0


def summarise(reports: list[BlockReport]) -> LinkSummary:
    """Add up block reports."""
    sifted = sum(r.sifted_bits for r in reports)
    errors = sum(r.qber * r.sifted_bits for r in reports)
    qber = errors / sifted if sifted else 0.0
    reconciled = [r for r in reports if r.frames]
    leak = sum(r.leak_ec for r in reconciled)
    rec_bits = sum(r.sifted_bits for r in reconciled)
    rec_qber = sum(r.qber * r.sifted_bits for r in reconciled) / rec_bits if rec_bits else 0.0
    aborted = [r for r in reports if r.aborted]
    return LinkSummary(
        blocks=len(reports), pulses=sum(r.pulses for r in reports), clicks=sum(r.clicks for r in reports),
        sifted_bits=sifted, qber=qber, qber_estimate=reports[-1].qber_estimate if reports else 0.0,
        leak_ec=leak, ec_efficiency=reconciliation_efficiency(leak, rec_bits, rec_qber) if rec_bits else math.nan,
        frames=sum(r.frames for r in reports), frames_failed=sum(r.frames_failed for r in reports),
        final_bits=sum(r.final_bits for r in reports), net_bits=sum(r.net_bits for r in reports),
        eve_knows=sum(r.eve_knows * r.sifted_bits for r in reports) / sifted if sifted else 0.0,
        aborted=len(aborted), abort_reason=aborted[0].aborted if aborted else "",
    )

