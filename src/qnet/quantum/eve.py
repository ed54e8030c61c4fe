"""Eavesdroppers on a BB84 link: intercept-resend and photon-number splitting.

- **Intercept-resend** (Bennett et al., J. Cryptology 5, 3 (1992)): on a fraction of the pulses
  that carry photons, Eve measures in a random basis and sends Bob a pulse with the same photon
  number prepared in her basis with her result. Where her basis was wrong Bob's sifted bit is random,
  so full interception gives a QBER of 25 %.
- **Photon-number splitting** (Brassard, Lütkenhaus, Mor, Sanders, PRL 85, 1330 (2000)): Eve counts
  the photons of every pulse without disturbing them. From multi-photon pulses she keeps one photon
  and sends the others to Bob over a lossless line; single-photon pulses she blocks, or passes
  losslessly just often enough that Bob's gain for the *signal* intensity is what the channel would
  give. She introduces no errors and learns every multi-photon bit. Decoy states expose her: the
  weak and vacuum decoys, with fewer multi-photon pulses, lose far more than the channel would take
  (Hwang, PRL 91, 057901 (2003); Lo, Ma, Chen 2005).

Eve acts on the photon-number statistics (which pulses click, and whether she knows the bit); the
simulator of :mod:`qnet.quantum.bb84` asks her through :func:`signal_click_probabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

__all__ = ["Eve", "EveAttack", "signal_click_probabilities"]


class EveAttack(StrEnum):
    """The attacks qnet can simulate."""

    INTERCEPT_RESEND = "intercept-resend"
    PNS = "pns"


@dataclass(frozen=True)
class Eve:
    """An eavesdropper on one link.

    Attributes:
        attack: which attack.
        fraction: share of the photon-carrying pulses she intercepts (intercept-resend only).
    """

    attack: EveAttack
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction!r}")


def signal_click_probabilities(
    eve: Eve | None,
    photons: npt.NDArray[np.int64],
    photon_probs: npt.NDArray[np.float64],
    *,
    eta_channel: float,
    eta_detector: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per photon number n: the probability that a pulse makes Bob click through its photons, and
    whether Eve knows the bit of such a click. Eve cannot tell the intensities apart, so the same
    answer holds for every intensity; PNS calibrates it on the signal's statistics.

    Args:
        eve: the eavesdropper, or ``None``.
        photons: photon numbers n = 0, 1, ...
        photon_probs: Poisson probabilities P(n) of the signal intensity.
        eta_channel: channel transmittance.
        eta_detector: Bob's detector efficiency.
    """
    honest: npt.NDArray[np.float64] = 1.0 - (1.0 - eta_channel * eta_detector) ** photons.astype(np.float64)
    if eve is None or eve.attack is EveAttack.INTERCEPT_RESEND:
        return honest, np.zeros(photons.shape, dtype=bool)
    return _pns(photons, photon_probs, honest, eta_detector)


def _pns(
    photons: npt.NDArray[np.int64],
    photon_probs: npt.NDArray[np.float64],
    honest: npt.NDArray[np.float64],
    eta_detector: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Eve's PNS: forward n - 1 photons of multi-photon pulses losslessly (scaled by t), single
    photons with probability s, so that the signal's gain matches the honest channel."""
    target = float(np.sum(photon_probs * honest))  # signal photons that would click honestly
    multi = np.where(photons >= 2, 1.0 - (1.0 - eta_detector) ** np.maximum(photons - 1, 0), 0.0)
    single = np.where(photons == 1, eta_detector, 0.0)
    from_multi = float(np.sum(photon_probs * multi))
    if from_multi >= target:
        t, s = (target / from_multi if from_multi > 0 else 0.0), 0.0
    else:
        t = 1.0
        p1 = float(np.sum(photon_probs * (photons == 1)))
        s = min(1.0, (target - from_multi) / (p1 * eta_detector)) if p1 > 0 else 0.0
    click: npt.NDArray[np.float64] = t * multi + s * single
    return click, np.asarray(photons >= 2, dtype=bool)
