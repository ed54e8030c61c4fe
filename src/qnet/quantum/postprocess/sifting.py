"""Sifting: keep the clicks where Alice and Bob chose the same basis.

Bob announces which pulses he detected and in which basis; Alice answers which bases matched and,
after that, which intensity each pulse had. The key basis X gives the raw key (all intensities, as in
Lim et al., PRA 89, 022307 (2014)); the test basis Z is revealed in full to count errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qnet.physics.finite_key import BasisCounts
from qnet.quantum.bb84 import X_BASIS, Z_BASIS, DetectionEvents

__all__ = ["SiftedBlock", "sift"]

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SiftedBlock:
    """The sifted key of one block and the public statistics of the test basis.

    Attributes:
        pulses: pulses sent for the block.
        alice: Alice's X-basis bits (the raw key).
        bob: Bob's X-basis bits.
        key_intensity: the intensity of each raw-key bit (public after sifting).
        z_counts: Z-basis detections and errors per intensity (Z bits are revealed).
        eve_knows: share of the raw key Eve knows (a simulation diagnostic, not a public value).
        alice_says: Alice's public messages (which bases matched, the intensities, her Z bits).
        bob_says: Bob's public messages (which pulses clicked and in which basis, his Z bits).
    """

    pulses: int
    alice: U8 = field(repr=False)
    bob: U8 = field(repr=False)
    key_intensity: U8 = field(repr=False)
    z_counts: BasisCounts
    eve_knows: float
    alice_says: bytes = field(repr=False)
    bob_says: bytes = field(repr=False)

    @property
    def x_counts(self) -> tuple[int, int, int]:
        """Raw-key bits per intensity (public)."""
        return tuple(int(v) for v in np.bincount(self.key_intensity, minlength=3)[:3])  # type: ignore[return-value]

    @property
    def true_qber(self) -> float:
        """The raw key's actual error rate (known only to the simulation)."""
        return float(np.mean(self.alice != self.bob)) if self.alice.size else 0.0


def sift(events: DetectionEvents) -> SiftedBlock:
    """Sift one block of detection events."""
    same = events.alice_basis == events.bob_basis
    key = same & (events.alice_basis == X_BASIS)
    test = same & (events.alice_basis == Z_BASIS)
    z_int = events.intensity[test]
    z_err = (events.alice_bit[test] != events.bob_bit[test]).astype(np.int64)
    detections = np.bincount(z_int, minlength=3)[:3]
    errors = np.bincount(z_int, weights=z_err, minlength=3)[:3]
    z_counts = BasisCounts(tuple(float(v) for v in detections), tuple(float(v) for v in errors))  # type: ignore[arg-type]
    intensity = events.intensity[same]  # 0, 1 or 2: two bits each on the wire
    alice_says = b"".join([np.packbits(same).tobytes(), np.packbits(intensity >> 1).tobytes(),
                           np.packbits(intensity & 1).tobytes(), np.packbits(events.alice_bit[test]).tobytes()])
    bob_says = b"".join([events.clicks.to_bytes(8, "big"), np.packbits(events.bob_basis).tobytes(),
                         np.packbits(events.bob_bit[test]).tobytes()])
    knows = float(events.eve_knows[key].mean()) if key.any() else 0.0
    return SiftedBlock(events.pulses, events.alice_bit[key], events.bob_bit[key], events.intensity[key],
                       z_counts, knows, alice_says, bob_says)
