"""Single-photon detectors: efficiency, dark counts, dead time and after-pulsing.

Models (all per gate/pulse, for a detector gated at the source's repetition rate):

- Click probability for Poisson light of mean photon number ``mu`` through total transmittance
  ``eta`` (channel x detector efficiency), with background probability ``Y0`` per gate:
  Q = 1 - (1 - Y0) exp(-eta mu) (Lo, Ma, Chen, PRL 94, 230504 (2005); Ma, Qi, Zhao, Lo, PRA 72,
  012326 (2005), eq. 2 with the exact Y0 term).
- After-pulsing, to first order: each click causes a spurious click in a later gate with
  probability ``p_ap``, uncorrelated with the bit (error probability 1/2), so a click probability
  D becomes D (1 + p_ap) (Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), sec. IV, who
  take p_ap = 4 %; measured InGaAs values at GHz gating are a few per cent, Yuan, Kardynal,
  Sharpe, Shields, Appl. Phys. Lett. 91, 041114 (2007)).
- Dead time ``tau`` of a non-paralysable detector: a true click rate ``n`` is observed as
  ``n / (1 + n tau)`` (Knoll, *Radiation Detection and Measurement*, 4th ed., sec. 4.VII), so the
  detector is live a fraction ``1 / (1 + n tau)`` of the gates and every rate scales by it.
"""

from __future__ import annotations

import numpy as np

from qnet.physics._types import ArrayLike

__all__ = ["click_probability", "live_fraction", "with_afterpulses"]


def click_probability(eta: ArrayLike, mu: ArrayLike, background: float) -> ArrayLike:
    """Probability of a click per pulse: ``1 - (1 - background) * exp(-eta * mu)``.

    Args:
        eta: total transmittance, channel times detector efficiency, in [0, 1].
        mu: mean photon number per pulse leaving the source.
        background: probability per gate of a click with no signal (dark counts, after-pulses).

    Examples:
        >>> float(click_probability(0.0, 0.5, 1e-6))
        1e-06
    """
    signal = -np.expm1(-np.asarray(eta) * np.asarray(mu))  # 1 - e^(-eta mu), exact for tiny eta mu
    return background + (1.0 - background) * signal  # type: ignore[no-any-return]


def with_afterpulses(click_prob: ArrayLike, afterpulse_prob: float) -> ArrayLike:
    """Click probability including first-order after-pulses: ``D * (1 + p_ap)``."""
    return np.asarray(click_prob) * (1.0 + afterpulse_prob)


def live_fraction(click_prob: ArrayLike, rep_rate_hz: float, dead_time_s: float) -> ArrayLike:
    """Fraction of gates in which a non-paralysable detector with dead time ``dead_time_s`` is live.

    Examples:
        >>> float(live_fraction(1e-3, 1e9, 1e-6))  # 1 Mclick/s and 1 us dead time
        0.5
    """
    return 1.0 / (1.0 + np.asarray(click_prob) * rep_rate_hz * dead_time_s)
