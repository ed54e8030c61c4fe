"""Fundamental limits of quantum key distribution over lossy channels.

- The repeaterless PLOB bound: no point-to-point protocol can distil more than
  -log2(1 - eta) secret bits per use of a pure-loss channel of transmittance eta (Pirandola,
  Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043 (2017), eq. 19).
- With one middle relay (e.g. the untrusted Charlie of twin-field QKD) splitting the channel into two
  equal halves, the end-to-end capacity of the chain is -log2(1 - sqrt(eta)) (Pirandola, Commun.
  Phys. 2, 51 (2019), the repeater-chain capacity min_i -log2(1 - eta_i) for eta_i = sqrt(eta)).
"""

from __future__ import annotations

import numpy as np

from qnet.physics._types import ArrayLike

__all__ = ["plob_bound", "single_repeater_bound"]


def plob_bound(transmittance: ArrayLike) -> ArrayLike:
    """PLOB bound -log2(1 - eta) in secret bits per channel use; infinite at eta = 1.

    Examples:
        >>> round(float(plob_bound(0.01)), 6)  # 100 km of 0.2 dB/km fibre
        0.0145
    """
    eta = np.clip(np.asarray(transmittance, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return (-np.log1p(-eta) / np.log(2.0))[()]  # type: ignore[no-any-return]


def single_repeater_bound(transmittance: ArrayLike) -> ArrayLike:
    """Capacity -log2(1 - sqrt(eta)) of a pure-loss channel cut in two by one middle relay."""
    return plob_bound(np.sqrt(np.clip(np.asarray(transmittance, dtype=float), 0.0, 1.0)))
