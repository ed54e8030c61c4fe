"""The value every key-rate model returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RatePoint"]


@dataclass(frozen=True)
class RatePoint:
    """A key rate at one channel transmittance.

    Attributes:
        rate_per_pulse: secret bits per pulse (per symbol for CV-QKD); 0 when no key can be made.
        mu: the signal mean photon number used, or ``None`` (no key, or no such parameter).
        qber: the expected error rate of the sifted key (``None`` where it does not apply).
    """

    rate_per_pulse: float
    mu: float | None = None
    qber: float | None = None
