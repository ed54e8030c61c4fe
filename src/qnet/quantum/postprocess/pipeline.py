"""The post-processing chain of one block: sift, estimate, reconcile, verify, amplify, authenticate.

It turns Bob's clicks into identical secret keys at both ends, or into nothing: a block whose QBER
or decoy bounds leave the secure region yields no key, a frame that fails verification is dropped,
and a transcript that fails authentication voids the block. The final length is the finite-key
length of Lim et al. (2014) on the block's observed counts and its actual error-correction leak.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.entropy import binary_entropy, reconciliation_efficiency
from qnet.physics.finite_key import DecoySettings, vacuum_and_single_bounds
from qnet.quantum.bb84 import DetectionEvents
from qnet.quantum.postprocess.amplification import modified_toeplitz_hash_pair
from qnet.quantum.postprocess.authentication import AuthKeyPool, Transcript, authenticate_block
from qnet.quantum.postprocess.cascade import cascade
from qnet.quantum.postprocess.estimation import Estimate, estimate
from qnet.quantum.postprocess.polar import polar_reconcile
from qnet.quantum.postprocess.sifting import SiftedBlock, sift
from qnet.quantum.postprocess.verification import TAG_BITS, fresh_hash_keys, key_tag

__all__ = ["BlockReport", "BlockResult", "ChainConfig", "PostProcessor", "Reconciler"]

U8 = npt.NDArray[np.uint8]

QBER_ABORT = 0.11
"""Above this estimated QBER a block is abandoned before error correction (no BB84 key survives)."""


def _public_random_bits(count: int, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> U8:
    """``count`` uniformly random bits from the operating system's CSPRNG (public once sent)."""
    return np.unpackbits(np.frombuffer(random_bytes(-(-count // 8)), dtype=np.uint8))[:count]


class Reconciler(StrEnum):
    """The error-reconciliation method of the chain."""

    CASCADE = "cascade"
    POLAR = "polar"


@dataclass(frozen=True, kw_only=True)
class ChainConfig:
    """Settings of the post-processing chain.

    Attributes:
        reconciler: Cascade (interactive) or polar codes (one-way).
        frame_bits: largest frame reconciled at once (polar frames are the largest power of two
            that fits; the remainder goes through Cascade).
        polar_target_fer: frame error rate the polar frozen sets are designed for.
    """

    reconciler: Reconciler = Reconciler.CASCADE
    frame_bits: int = 1 << 20
    polar_target_fer: float = 0.1


@dataclass(frozen=True)
class BlockReport:
    """What one block did, for reports and tests (no key material).

    Attributes:
        pulses: pulses sent.
        clicks: Bob's detections.
        sifted_bits: raw key bits (X basis, sifted).
        test_bits: Z-basis bits revealed for estimation.
        qber_estimate: QBER estimated from the test basis.
        qber: the raw key's actual QBER (simulation only).
        leak_ec: bits disclosed by reconciliation and verification.
        frames: frames reconciled.
        frames_failed: frames dropped after failing verification.
        final_bits: secret bits after privacy amplification.
        auth_bits: key bits consumed to authenticate the block.
        phase_error: upper bound on the single-photon phase error.
        single_photon_bits: lower bound on single-photon raw-key bits.
        eve_knows: share of the raw key Eve knows (simulation diagnostic).
        aborted: why the block gave no key, or ``""``.
    """

    pulses: int
    clicks: int
    sifted_bits: int
    test_bits: int
    qber_estimate: float
    qber: float
    leak_ec: int
    frames: int
    frames_failed: int
    final_bits: int
    auth_bits: int
    phase_error: float
    single_photon_bits: float
    eve_knows: float
    aborted: str = ""

    @property
    def net_bits(self) -> int:
        """Final bits left after refilling the authentication pool."""
        return max(self.final_bits - self.auth_bits, 0)

    @property
    def ec_efficiency(self) -> float:
        """f = leak / (n h(QBER)) with the actual QBER (inf when there was nothing to correct)."""
        return reconciliation_efficiency(self.leak_ec, self.sifted_bits, self.qber)


@dataclass(frozen=True)
class BlockResult:
    """A block's report and the two ends' final keys (as bits); equal unless ``report.aborted``."""

    report: BlockReport
    alice_key: U8 = field(repr=False)
    bob_key: U8 = field(repr=False)


class PostProcessor:
    """Runs the chain on blocks of one link; keeps the link's authentication pool between blocks.

    Args:
        device: the link's device and security parameters (eps_sec, eps_cor are used).
        settings: the intensities and basis bias the blocks are sent with.
        auth_pool: the shared authentication key pool.
        config: chain settings.
        public_random: where the public random choices Alice announces (the privacy-amplification
            seed, the verification hash keys) come from: the OS CSPRNG. A link simulated twice, once
            at each end's key manager, passes one seeded stream to both copies (``SimulatedLink``).
    """

    def __init__(self, device: BB84DecoyParams, settings: DecoySettings, auth_pool: AuthKeyPool,
                 config: ChainConfig | None = None, *,
                 public_random: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.device, self.settings, self.pool = device, settings, auth_pool
        self.config = config or ChainConfig()
        self.public_random = public_random

    def process(self, events: DetectionEvents, rng: np.random.Generator) -> BlockResult:
        """Turn one block's clicks into final keys.

        ``rng`` drives the choices that need no secrecy (Cascade's shuffles). The privacy-amplification
        seed and the verification hash keys come from the operating system's CSPRNG: a Toeplitz
        matrix must be drawn uniformly from all of them for the leftover hash lemma to apply.
        """
        transcript = Transcript()
        block = sift(events)
        transcript.send("bob", block.bob_says)
        transcript.send("alice", block.alice_says)
        est = estimate(block)
        if reason := self._hopeless(block, est):
            return self._empty(events, block, est, reason)
        alice, bob, keep, leak, frames, failed = self._reconcile(block, est.qber, rng, transcript)
        m = self._final_length(est, leak, dropped=int(keep.size - keep.sum()))
        seed = _public_random_bits(alice.size - 1, self.public_random) if m else None
        if seed is not None:
            transcript.send("alice", np.packbits(seed).tobytes())
        empty = np.zeros(0, np.uint8)
        final_a, final_b = modified_toeplitz_hash_pair(alice, bob, seed, m) if seed is not None else (empty, empty)
        try:
            auth = authenticate_block(transcript, self.pool)
        except LookupError:
            return self._empty(events, block, est, "authentication key pool exhausted")
        refill = min(auth, final_a.size) // 8 * 8
        self.pool.refill(np.packbits(final_a[:refill]).tobytes())
        report = self._report(events, block, est, leak, frames, failed, m, auth, self._phase_error(est, leak),
                              "" if m else "no key")
        return BlockResult(report, final_a[refill:], final_b[refill:])

    def _final_length(self, est: Estimate, leak: int, *, dropped: int) -> int:
        """Lim et al. eq. 1 on the whole block's counts and the whole leak, less every raw-key bit of
        frames dropped by verification: removing D bits lowers the smooth min-entropy by at most D
        (chain rule), whatever Eve knew about them."""
        result = est.key_length(self.settings, leak_ec=leak, eps_sec=self.device.eps_sec,
                                eps_cor=self.device.eps_cor)
        length = result.key_length - dropped
        return math.floor(length) if length > 0 else 0

    def _phase_error(self, est: Estimate, leak: int) -> float:
        return est.key_length(self.settings, leak_ec=leak, eps_sec=self.device.eps_sec,
                              eps_cor=self.device.eps_cor).phase_error

    def _hopeless(self, block: SiftedBlock, est: Estimate) -> str:
        """A reason to stop before error correction, or ``""``."""
        if block.alice.size == 0:
            return "no sifted key"
        if est.qber > QBER_ABORT:
            return f"QBER {est.qber:.1%} above {QBER_ABORT:.0%}"
        leak_guess = 1.0 * block.alice.size * float(binary_entropy(est.qber))  # the Shannon limit
        bound = est.key_length(self.settings, leak_ec=leak_guess, eps_sec=self.device.eps_sec,
                               eps_cor=self.device.eps_cor)
        return "" if bound.key_length > 0 else "decoy bounds leave no secret key"

    def _reconcile(self, block: SiftedBlock, qber: float, rng: np.random.Generator,
                   transcript: Transcript) -> tuple[U8, U8, npt.NDArray[np.bool_], int, int, int]:
        """Reconcile frame by frame and verify each; returns the kept bits of both ends, the mask of
        kept positions, the leak (reconciliation + verification tags), frames and failed frames."""
        n = block.alice.size
        keep = np.zeros(n, dtype=bool)
        corrected = np.empty(n, dtype=np.uint8)
        leak = frames = failed = 0
        for lo, hi, method in self._frames(n):
            a, b = block.alice[lo:hi], block.bob[lo:hi]
            fixed, frame_leak, said = self._reconcile_frame(method, a, b, qber, rng)
            transcript.send("alice", said[0])
            transcript.send("bob", said[1])
            corrected[lo:hi] = fixed
            frames += 1
            leak += frame_leak + TAG_BITS
            hash_keys = fresh_hash_keys(self.public_random)
            tag_a, tag_b = key_tag(a, hash_keys), key_tag(fixed, hash_keys)
            transcript.send("alice", repr((hash_keys, tag_a)).encode())
            ok = tag_a == tag_b
            transcript.send("bob", b"ok" if ok else b"drop")
            keep[lo:hi] = ok
            failed += int(not ok)
        return block.alice[keep], corrected[keep], keep, leak, frames, failed

    def _frames(self, n: int) -> list[tuple[int, int, Reconciler]]:
        size = self.config.frame_bits
        if self.config.reconciler is Reconciler.POLAR:
            size = 1 << int(math.log2(min(size, n))) if n >= 2 else 0
            whole = n // size * size if size >= 2 else 0
            frames = [(lo, lo + size, Reconciler.POLAR) for lo in range(0, whole, size)]
            return frames + ([(whole, n, Reconciler.CASCADE)] if whole < n else [])
        count = max(1, -(-n // size))
        edges = np.linspace(0, n, count + 1).astype(int)
        return [(int(lo), int(hi), Reconciler.CASCADE) for lo, hi in itertools.pairwise(edges)]

    def _reconcile_frame(self, method: Reconciler, a: U8, b: U8, qber: float,
                         rng: np.random.Generator) -> tuple[U8, int, tuple[bytes, bytes]]:
        """Bob's corrected frame, the leak, and what (Alice, Bob) sent."""
        if method is Reconciler.POLAR:
            pr = polar_reconcile(a, b, qber, target_fer=self.config.polar_target_fer)
            return pr.corrected, pr.leak, (np.packbits(pr.syndrome).tobytes(), b"")
        seed = int(rng.integers(0, 2**63))
        cr = cascade(a, b, qber, seed=seed)
        alice_said = seed.to_bytes(8, "big") + np.packbits(cr.parities).tobytes()
        return cr.corrected, cr.leak, (alice_said, np.packbits(cr.replies).tobytes())

    def _empty(self, events: DetectionEvents, block: SiftedBlock, est: Estimate, reason: str) -> BlockResult:
        report = self._report(events, block, est, 0, 0, 0, 0, 0, 0.5, reason)
        empty = np.zeros(0, dtype=np.uint8)
        return BlockResult(report, empty, empty)

    def _report(self, events: DetectionEvents, block: SiftedBlock, est: Estimate, leak: int, frames: int,
                failed: int, final: int, auth: int, phase_error: float, aborted: str) -> BlockReport:
        s1 = vacuum_and_single_bounds(self.settings, est.x_counts.detections, self.device.eps_sec)[1]
        return BlockReport(
            pulses=events.pulses, clicks=events.clicks, sifted_bits=int(block.alice.size),
            test_bits=int(est.z_counts.total), qber_estimate=est.qber, qber=block.true_qber, leak_ec=leak,
            frames=frames, frames_failed=failed, final_bits=final, auth_bits=auth, phase_error=phase_error,
            single_photon_bits=s1, eve_knows=block.eve_knows, aborted=aborted,
        )
