"""Parameter estimation: the QBER, and finite-size decoy bounds on single-photon contributions.

- QBER: from the test basis Z, which is revealed in full (Lim et al. 2014), or from a random sample
  of the raw key that is revealed and discarded (:func:`sample_qber`).
- Decoy bounds with finite statistics: the lower bounds s_X0, s_X1 on vacuum and single-photon key
  bits and the upper bound phi_X on the single-photon phase error, from Hoeffding's inequality
  (Lim et al., PRA 89, 022307 (2014), eqs. 2-5), on the observed counts: the same formula that
  :mod:`qnet.physics.finite_key` evaluates on expected counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qnet.physics.finite_key import BasisCounts, DecoySettings, FiniteKeyResult, secret_key_length
from qnet.quantum.postprocess.sifting import SiftedBlock

__all__ = ["Estimate", "estimate", "sample_qber"]


@dataclass(frozen=True)
class Estimate:
    """What the parties know about a block before error correction.

    Attributes:
        qber: the estimated error rate of the raw key: the Z-basis error rate over all intensities,
            which the raw key mixes in the same proportions.
        x_counts: raw-key bits per intensity.
        z_counts: Z-basis detections and errors per intensity.
    """

    qber: float
    x_counts: BasisCounts
    z_counts: BasisCounts

    def key_length(self, settings: DecoySettings, *, leak_ec: float, eps_sec: float, eps_cor: float) -> FiniteKeyResult:
        """Secret bits this block can yield after ``leak_ec`` bits of error correction."""
        return secret_key_length(self.x_counts, self.z_counts, settings, leak_ec=leak_ec,
                                 eps_sec=eps_sec, eps_cor=eps_cor)


def estimate(block: SiftedBlock) -> Estimate:
    """Estimate a sifted block's QBER and gather the counts for the decoy bounds."""
    x = BasisCounts(tuple(float(v) for v in block.x_counts), (0.0, 0.0, 0.0))  # type: ignore[arg-type]
    return Estimate(block.z_counts.error_rate, x, block.z_counts)


def sample_qber(alice: npt.NDArray[np.uint8], bob: npt.NDArray[np.uint8], fraction: float,
                rng: np.random.Generator) -> tuple[float, npt.NDArray[np.bool_]]:
    """Reveal a random ``fraction`` of the key bits to estimate the QBER.

    Returns:
        The sample's error rate, and the mask of bits that remain secret.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    revealed = rng.random(alice.size) < fraction
    qber = float(np.mean(alice[revealed] != bob[revealed])) if revealed.any() else 0.5
    return qber, ~revealed
