"""Entanglement-based QKD (BBM92) over a repeater chain: the end-to-end pairs it delivers become keys,
identical at both ends, with the key_IDs and format of :class:`~qnet.quantum.link.SimulatedLink`.

Each end of an :class:`EntangledKeyLink` is a key source in the sense of ``qnet.keys.source.KeySource``
(a structural protocol: this module does not import the keys layer). Its raw material is one flow of
an entanglement-network run (:mod:`qnet.quantum.entanglement`): a finished run's
:class:`~qnet.quantum.entanglement.report.Report`, or a live
:class:`~qnet.quantum.entanglement.simulation.Simulation`, whose deliveries the link reads as they
appear (call ``take`` from the run's ``progress`` callback to follow it).

Per pair, Alice and Bob each choose Z (probability ``basis_bias``) or X and measure; Alice's outcome
is uniform, Bob's equals hers when the bases agree unless the pair's Pauli error flips that basis
(X or Y flips Z, Z or Y flips X: :mod:`qnet.physics.bbm92`), and is uniform otherwise. The pair's
error is drawn from its Bell-diagonal state, which the simulator's ``Delivery.state`` carries in the
Bell-diagonal and density-matrix formalisms (so the two bases' error rates may differ, as with heralded
single-click pairs or T1/T2 memories). A delivery without a state is taken as the Werner state of its
fidelity, exact when all the chain's noise is depolarising.
With the stabilizer formalism a fidelity of 0 stands for one of the three wrong Bell states, taken as
equally likely (again exact under depolarising noise).

Once ``block_bits`` sifted bits are in, the block is post-processed with the parts of
:mod:`qnet.quantum.postprocess`: a random ``sample_fraction`` of each basis's bits is revealed to
estimate its QBER (:func:`~qnet.quantum.postprocess.estimation.sample_qber`); the rest of both
bases is one Cascade frame, verified by a universal hash; privacy amplification (modified Toeplitz)
shortens it to ``n_Z (1 - h(e_X)) + n_X (1 - h(e_Z)) - leak``, the Shor-Preskill length with each
basis's phase error taken from the other basis's estimate (Lo, Chau, Ardehali, J. Cryptology 18, 133
(2005)); the block's transcript is authenticated with key from the link's pool, which the block
refills. The decoy-state chain (:class:`~qnet.quantum.postprocess.pipeline.PostProcessor`) is not
used: it sifts BB84 detection events and bounds single photons, which a pair source has no use for.

The key length is asymptotic: the sampled QBERs are used as they are, with no finite-size margin,
so a block is secure only in the limit of large blocks (a finite-key analysis, e.g. Tomamichel,
Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012), leaves no key below some 10^4 to 10^5 sifted bits).
Keys become available at the delivery time of the pair that completes their block; ``take(now_s)``
reads time on the simulation's clock (seconds).
"""

from __future__ import annotations

import math
import secrets
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from qnet.physics.entropy import binary_entropy, reconciliation_efficiency
from qnet.quantum.entanglement.report import Delivery, Report
from qnet.quantum.entanglement.simulation import Simulation
from qnet.quantum.link import _Key, key_id_strings
from qnet.quantum.postprocess.amplification import modified_toeplitz_hash_pair
from qnet.quantum.postprocess.authentication import AuthKeyPool, Transcript, authenticate_block
from qnet.quantum.postprocess.cascade import cascade
from qnet.quantum.postprocess.estimation import sample_qber
from qnet.quantum.postprocess.verification import TAG_BITS, fresh_hash_keys, key_tag

__all__ = ["Basis", "EntangledKeyLink", "EntangledLinkEnd", "PairBlockReport"]

U8 = npt.NDArray[np.uint8]


class Basis(IntEnum):
    """A measurement basis (its value is what the arrays hold)."""

    Z = 0
    X = 1


@dataclass(frozen=True)
class PairBlockReport:
    """What one block of pairs did (no key material).

    Attributes:
        pairs: pairs delivered for the block (sifted or not).
        fidelity: their mean fidelity with Phi+ at delivery.
        completed_s: delivery time of the pair that completed it (when its keys become available).
        sifted_bits: pairs measured in the same basis at both ends.
        sample_bits: sifted bits revealed to estimate the QBERs.
        qber_z_estimate: the Z-basis sample's error rate (0.5 without a sample).
        qber_x_estimate: the X-basis sample's error rate.
        qber_z: the Z-basis sifted bits' actual error rate (simulation only).
        qber_x: the X-basis sifted bits' actual error rate (simulation only).
        key_bits_z: Z-basis bits left for the key after sampling.
        key_bits_x: X-basis bits left for the key.
        qber: the reconciled bits' actual error rate (simulation only).
        leak_ec: bits disclosed by reconciliation (Cascade's parities) and verification (a tag).
        final_bits: secret bits after privacy amplification.
        auth_bits: key bits consumed to authenticate the block.
        aborted: why the block gave no key, or ``""``.
    """

    pairs: int
    fidelity: float
    completed_s: float
    sifted_bits: int
    sample_bits: int
    qber_z_estimate: float
    qber_x_estimate: float
    qber_z: float
    qber_x: float
    key_bits_z: int
    key_bits_x: int
    qber: float
    leak_ec: int
    final_bits: int
    auth_bits: int
    aborted: str = ""

    @property
    def reconciled_bits(self) -> int:
        """Sifted bits reconciled into the key (both bases): ``key_bits_z + key_bits_x``."""
        return self.key_bits_z + self.key_bits_x

    @property
    def net_bits(self) -> int:
        """Final bits left after refilling the authentication pool."""
        return max(self.final_bits - self.auth_bits, 0)

    @property
    def ec_efficiency(self) -> float:
        """f = leak / (n h(QBER)) with the actual QBER, the tag included (inf with nothing to correct)."""
        return reconciliation_efficiency(self.leak_ec, self.reconciled_bits, self.qber)


@dataclass
class _Pairs:
    """Measured pairs not yet in a block: both ends' bases and outcomes, fidelities, delivery times."""

    a_basis: U8
    b_basis: U8
    a_bit: U8
    b_bit: U8
    fidelity: npt.NDArray[np.float64]
    time_s: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> _Pairs:
        z = np.zeros(0, dtype=np.uint8)
        return cls(z, z, z, z, np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return int(self.a_basis.size)

    def sifted(self) -> npt.NDArray[np.bool_]:
        same: npt.NDArray[np.bool_] = self.a_basis == self.b_basis
        return same

    def join(self, other: _Pairs) -> _Pairs:
        return _Pairs(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _PAIR_FIELDS))

    def split(self, at: int) -> tuple[_Pairs, _Pairs]:
        """(the first ``at`` pairs, the rest)."""
        head = _Pairs(*(getattr(self, f)[:at] for f in _PAIR_FIELDS))
        return head, _Pairs(*(getattr(self, f)[at:] for f in _PAIR_FIELDS))


_PAIR_FIELDS = ("a_basis", "b_basis", "a_bit", "b_bit", "fidelity", "time_s")


def _pair_states(deliveries: Sequence[Delivery]) -> npt.NDArray[np.float64]:
    """(n, 4) Bell-diagonal states: a delivery's ``state`` where it has one, else the Werner state of
    its fidelity (see the module docstring)."""
    fid = np.clip(np.fromiter((d.fidelity for d in deliveries), dtype=np.float64, count=len(deliveries)), 0.0, 1.0)
    states = np.empty((len(deliveries), 4))
    states[:, 0] = fid
    states[:, 1:] = ((1.0 - fid) / 3.0)[:, None]
    for i, d in enumerate(deliveries):
        state = d.state
        if state is not None:
            states[i] = state
    return states


def _measure(states: npt.NDArray[np.float64], basis_bias: float, rng: np.random.Generator) -> tuple[U8, U8, U8, U8]:
    """Both ends' bases and outcomes for pairs in the Bell-diagonal ``states`` (n, 4): Alice's bit
    uniform; Bob's equal to it in a shared basis unless the pair's Pauli error (index ``2x + z``)
    flips that basis (its x bit flips Z, its z bit flips X), uniform in the other basis.

    Each pair takes the next five uniforms of ``rng`` (its error, the two bases, Alice's bit, Bob's
    bit in the other basis), so the outcomes do not depend on how the pairs are batched: a link that
    is asked often and one that is asked once measure the same."""
    u = rng.random((int(states.shape[0]), 5))
    cumulative = np.cumsum(states, axis=1)
    error = (u[:, :1] * cumulative[:, 3:] > cumulative[:, :3]).sum(axis=1).astype(np.uint8)
    a_basis = (u[:, 1] >= basis_bias).astype(np.uint8)
    b_basis = (u[:, 2] >= basis_bias).astype(np.uint8)
    a_bit = (u[:, 3] < 0.5).astype(np.uint8)
    flip = np.where(a_basis == Basis.Z, error >> 1, error) & np.uint8(1)
    b_bit: U8 = np.where(a_basis == b_basis, a_bit ^ flip, u[:, 4] < 0.5).astype(np.uint8)
    return a_basis, b_basis, a_bit, b_bit


def _skeleton(block: _Pairs, alice: U8, bob: U8, key_bits: tuple[int, int],
              estimates: tuple[float, float]) -> PairBlockReport:
    """A block's report before error correction (nothing disclosed, no key yet)."""
    sifted = block.sifted()
    actual = [float(np.mean(block.a_bit[m] != block.b_bit[m])) if m.any() else 0.0
              for m in (sifted & (block.a_basis == b) for b in Basis)]
    return PairBlockReport(
        pairs=len(block), fidelity=float(block.fidelity.mean()), completed_s=float(block.time_s[-1]),
        sifted_bits=int(sifted.sum()), sample_bits=int(sifted.sum()) - alice.size,
        qber_z_estimate=estimates[0], qber_x_estimate=estimates[1],
        qber_z=actual[0], qber_x=actual[1], key_bits_z=key_bits[0], key_bits_x=key_bits[1],
        qber=float(np.mean(alice != bob)) if alice.size else 0.0, leak_ec=0, final_bits=0, auth_bits=0)


def _public_bits(count: int, random_bytes: Callable[[int], bytes]) -> U8:
    return np.unpackbits(np.frombuffer(random_bytes(-(-count // 8)), dtype=np.uint8))[:count]


def _h(e: float) -> float:
    return float(binary_entropy(float(e)))


class EntangledKeyLink:
    """Both ends of one BBM92 link fed by a flow of an entanglement-network run.

    Args:
        link_id: the link's name.
        source: a finished run's report, or a live simulation (read as it runs).
        flow: which of the run's flows (admitted requests) feeds the link.
        block_bits: sifted bits per post-processing block.
        sample_fraction: share of each basis's sifted bits revealed to estimate its QBER.
        basis_bias: probability that an end measures in Z (0.5: BBM92; more: efficient BB84).
        key_bits: size of each delivered key (a multiple of 8).
        seed: the seed of the measurements, the public choices and the key_IDs.
        replicated: if true, the seed also draws the pre-shared authentication secret and the
            public random choices (privacy-amplification seeds, hash keys), as for
            :class:`~qnet.quantum.link.SimulatedLink`; else they come from the OS CSPRNG.

    Raises:
        ValueError: for a bad parameter, or a flow the run does not have.

    Examples:
        >>> from qnet.quantum.entanglement.components import LinkModel, MemoryModel
        >>> from qnet.quantum.entanglement.simulation import simulate
        >>> from qnet.quantum.entanglement.topology import Request, chain
        >>> hop = LinkModel(20.0, scheme="ideal", success_probability_override=0.3, attempt_s_override=1e-4,
        ...                 raw_fidelity=0.98)
        >>> report = simulate(chain(3, link=hop, memory=MemoryModel(count=10)), [Request("r0", "r2")], 0.5)
        >>> link = EntangledKeyLink("r0-r2", report, block_bits=2048)
        >>> keys = link.alice.take(0.5)
        >>> keys == link.bob.take(0.5), len(keys[0].key), link.reports[0].aborted
        (True, 32, '')
    """

    def __init__(self, link_id: str, source: Report | Simulation, *, flow: int = 0, block_bits: int = 4096,
                 sample_fraction: float = 0.1, basis_bias: float = 0.5, key_bits: int = 256, seed: int = 0,
                 replicated: bool = False) -> None:
        if key_bits <= 0 or key_bits % 8:
            raise ValueError(f"key_bits must be a positive multiple of 8, got {key_bits!r}")
        if block_bits < 64:
            raise ValueError(f"block_bits must be >= 64 sifted bits, got {block_bits!r}")
        if not 0.0 < sample_fraction < 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1), got {sample_fraction!r}")
        if not 0.0 < basis_bias < 1.0:
            raise ValueError(f"basis_bias must be in (0, 1) (both bases are needed), got {basis_bias!r}")
        self.link_id, self.block_bits, self.key_bits = link_id, int(block_bits), key_bits
        self.sample_fraction, self.basis_bias = sample_fraction, basis_bias
        self._deliveries = _flow_deliveries(source, flow)
        seeds = np.random.SeedSequence(seed).spawn(4)
        self._quantum, self._public = np.random.default_rng(seeds[0]), np.random.default_rng(seeds[1])
        self._ids = np.random.default_rng(seeds[2])
        self._shared: Callable[[int], bytes] = (np.random.default_rng(seeds[3]).bytes if replicated
                                                else secrets.token_bytes)
        self._pool = AuthKeyPool(self._shared(4096))
        self._read = 0
        """Deliveries measured so far."""
        self._pending = _Pairs.empty()
        self._keys: list[_Key] = []
        self._key_times: list[float] = []
        self._taken_base = 0
        self._spare = np.zeros(0, dtype=np.uint8)
        self.reports: list[PairBlockReport] = []
        self.alice, self.bob = EntangledLinkEnd(self, "alice"), EntangledLinkEnd(self, "bob")

    # -- reading the run ------------------------------------------------------------------------------
    def advance(self, now_s: float) -> None:
        """Measure every pair delivered by ``now_s`` and post-process every block they complete."""
        deliveries = self._deliveries
        end = bisect_right(deliveries, now_s, lo=self._read, key=lambda d: d.time_s)
        if end > self._read:
            new = deliveries[self._read:end]
            states = _pair_states(new)
            bases_bits = _measure(states, self.basis_bias, self._quantum)
            times = np.fromiter((d.time_s for d in new), dtype=np.float64, count=len(new))
            self._pending = self._pending.join(_Pairs(*bases_bits, states[:, 0].copy(), times))
            self._read = end
        while True:
            sifted_at = np.flatnonzero(self._pending.sifted())
            if sifted_at.size < self.block_bits:
                return
            block, self._pending = self._pending.split(int(sifted_at[self.block_bits - 1]) + 1)
            self._run_block(block)

    def pending(self) -> tuple[int, int]:
        """(pairs, sifted bits) measured but not yet in a block."""
        return len(self._pending), int(self._pending.sifted().sum())

    # -- one block ------------------------------------------------------------------------------------
    def _run_block(self, block: _Pairs) -> None:
        transcript = Transcript()
        transcript.send("alice", np.packbits(block.a_basis).tobytes())
        transcript.send("bob", np.packbits(block.b_basis).tobytes())
        sifted = block.sifted()
        (a_z, b_z, e_z), (a_x, b_x, e_x) = (self._estimate(block, sifted & (block.a_basis == b), transcript)
                                            for b in Basis)
        alice, bob = np.concatenate([a_z, a_x]), np.concatenate([b_z, b_x])
        report = _skeleton(block, alice, bob, (a_z.size, a_x.size), (e_z, e_x))
        entropy = a_z.size * (1.0 - _h(e_x)) + a_x.size * (1.0 - _h(e_z))
        if alice.size == 0 or entropy <= a_z.size * _h(e_z) + a_x.size * _h(e_x):
            why = (f"QBER estimated at {e_z:.1%} (Z) and {e_x:.1%} (X) on pairs of mean fidelity "
                   f"{report.fidelity:.3f}: no secret key even with error correction at the Shannon limit "
                   f"(1 - h(e_X) - h(e_Z) <= 0 above about 11 %)")
            self._finish(replace(report, aborted=why), None)
            return
        pooled = (a_z.size * e_z + a_x.size * e_x) / alice.size
        corrected, leak = self._reconcile(alice, bob, pooled, transcript)
        report = replace(report, leak_ec=leak)
        if corrected is None:
            self._finish(replace(report, aborted="verification failed after error correction"), None)
            return
        m = min(math.floor(entropy - leak), alice.size - 1)
        if m <= 0:
            why = f"no key: error correction disclosed {leak} bits of the {entropy:.0f} the block's entropy allows"
            self._finish(replace(report, aborted=why), None)
            return
        self._amplify(alice, corrected, m, transcript, report)

    def _estimate(self, block: _Pairs, mask: npt.NDArray[np.bool_], transcript: Transcript) -> tuple[U8, U8, float]:
        """Reveal a random sample of one basis's sifted bits: (Alice's kept bits, Bob's, the sample QBER)."""
        a, b = block.a_bit[mask], block.b_bit[mask]
        qber, keep = sample_qber(a, b, self.sample_fraction, self._public)
        transcript.send("alice", np.packbits(~keep).tobytes() + np.packbits(a[~keep]).tobytes())
        transcript.send("bob", np.packbits(b[~keep]).tobytes())
        return a[keep], b[keep], qber

    def _reconcile(self, alice: U8, bob: U8, qber: float, transcript: Transcript) -> tuple[U8 | None, int]:
        """Cascade on one frame, then verification: (Bob's corrected bits or None when the tags
        differ, the bits disclosed)."""
        seed = int(self._public.integers(0, 2**63))
        result = cascade(alice, bob, qber, seed=seed)
        transcript.send("alice", seed.to_bytes(8, "big") + np.packbits(result.parities).tobytes())
        transcript.send("bob", np.packbits(result.replies).tobytes())
        hash_keys = fresh_hash_keys(self._shared)
        tag_a, tag_b = key_tag(alice, hash_keys), key_tag(result.corrected, hash_keys)
        transcript.send("alice", repr((hash_keys, tag_a)).encode())
        ok = tag_a == tag_b
        transcript.send("bob", b"ok" if ok else b"drop")
        return (result.corrected if ok else None), result.leak + TAG_BITS

    def _amplify(self, alice: U8, bob: U8, m: int, transcript: Transcript, report: PairBlockReport) -> None:
        """Privacy amplification to ``m`` bits, authentication, the pool's refill, the keys."""
        seed = _public_bits(alice.size - 1, self._shared)
        transcript.send("alice", np.packbits(seed).tobytes())
        final_a, final_b = modified_toeplitz_hash_pair(alice, bob, seed, m)
        if not np.array_equal(final_a, final_b):
            raise RuntimeError(f"link {self.link_id}: final keys differ at the two ends")
        try:
            auth = authenticate_block(transcript, self._pool)
        except LookupError:
            self._finish(replace(report, aborted="authentication key pool exhausted"), None)
            return
        refill = min(auth, final_a.size) // 8 * 8
        self._pool.refill(np.packbits(final_a[:refill]).tobytes())
        self._finish(replace(report, final_bits=m, auth_bits=auth), final_a[refill:])

    def _finish(self, report: PairBlockReport, key: U8 | None) -> None:
        self.reports.append(report)
        if key is not None:
            self._cut_keys(key, report.completed_s)

    def _cut_keys(self, key: U8, time_s: float) -> None:
        """Cut a block's final key into keys of ``key_bits``; the rest waits for the next block."""
        bits = np.concatenate([self._spare, key])
        whole = bits.size // self.key_bits * self.key_bits
        step = self.key_bits // 8
        material = np.packbits(bits[:whole]).tobytes()
        count = len(material) // step
        ids = key_id_strings(self.keys_made(), self._ids.bytes(16 * count))
        self._keys.extend(_Key(key_id, material[i * step:(i + 1) * step]) for i, key_id in enumerate(ids))
        self._key_times.extend([time_s] * count)
        self._spare = bits[whole:]

    # -- keys -----------------------------------------------------------------------------------------
    def keys_made(self) -> int:
        """Keys cut so far."""
        return self._taken_base + len(self._keys)

    def _taken_by(self, cursor: int, now_s: float) -> tuple[list[_Key], int]:
        """The keys after ``cursor`` available by ``now_s``, and the new cursor."""
        lo = cursor - self._taken_base
        hi = bisect_right(self._key_times, now_s, lo=lo)
        return self._keys[lo:hi], self._taken_base + hi

    def _forget_taken(self) -> None:
        """Drop the keys both ends have taken (a live link runs for long)."""
        low = min(self.alice._cursor, self.bob._cursor) - self._taken_base
        if low > 4096:
            del self._keys[:low]
            del self._key_times[:low]
            self._taken_base += low

    def explain(self) -> str:
        """Why the link has made no key so far, or ``""`` once it has."""
        if self.keys_made():
            return ""
        aborted = [r.aborted for r in self.reports if r.aborted]
        if aborted:
            return f"{len(aborted)} of {len(self.reports)} blocks gave no key; the first: {aborted[0]}"
        if self.reports:
            net = sum(r.net_bits for r in self.reports)
            return f"{len(self.reports)} blocks made {net} net secret bits, fewer than one {self.key_bits}-bit key"
        pairs, sifted = self.pending()
        return f"no block complete yet: {sifted} of {self.block_bits} sifted bits, from {pairs} pairs"


def _flow_deliveries(source: Report | Simulation, flow: int) -> Sequence[Delivery]:
    """The deliveries of one flow: a report's tuple, or a live simulation's growing list."""
    flows: list[Sequence[Delivery]]
    if isinstance(source, Report):
        flows, refused = [f.deliveries for f in source.flows], [why for _, _, why in source.refused]
    elif isinstance(source, Simulation):
        flows, refused = [f.deliveries for f in source.flows], [why for _, why in source.refused]
    else:
        raise TypeError(f"source must be an entanglement Report or Simulation, got {type(source).__name__}")
    if not 0 <= flow < len(flows):
        why = f" (refused: {'; '.join(refused)})" if refused else ""
        raise ValueError(f"flow {flow!r} is not in the run, which has {len(flows)} flows{why}")
    return flows[flow]


@dataclass
class EntangledLinkEnd:
    """One end of an :class:`EntangledKeyLink`: a key source (``take(now_s)``)."""

    link: EntangledKeyLink
    side: str
    _cursor: int = field(default=0)

    @property
    def link_id(self) -> str:
        """The link this end belongs to."""
        return self.link.link_id

    def take(self, now_s: float) -> list[_Key]:
        """Every key this end has by time ``now_s`` (the simulation's clock) and has not taken, in order."""
        link = self.link
        link.advance(now_s)
        fresh, self._cursor = link._taken_by(self._cursor, now_s)
        link._forget_taken()
        return fresh
