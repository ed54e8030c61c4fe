"""Optical channels: how much light gets through.

- Fibre: the power transmittance of a fibre of length L with attenuation alpha (dB/km) is
  eta = 10^(-alpha L / 10) (e.g. Gisin et al., Rev. Mod. Phys. 74, 145 (2002), sec. II.D; standard
  single-mode fibre at 1550 nm has alpha ~ 0.2 dB/km, ITU-T G.652).
- Free space: a fixed loss (geometric, pointing, receiver) plus atmospheric attenuation per km; the
  satellite models of a later layer give the fixed part from orbit geometry.

Channels here are pure functions of numbers; links that carry these models live in ``qnet.quantum``.
"""

from __future__ import annotations

import numpy as np

from qnet.physics._types import ArrayLike
from qnet.units import db_to_transmittance

__all__ = ["channel_loss_db", "fibre_transmittance", "link_transmittance"]


def channel_loss_db(
    length_km: ArrayLike, attenuation_db_per_km: float, extra_loss_db: float = 0.0
) -> ArrayLike:
    """Total loss in dB of a channel: ``attenuation_db_per_km * length_km + extra_loss_db``.

    Raises:
        ValueError: if a length, the attenuation or the extra loss is negative.
    """
    length = np.asarray(length_km, dtype=float)
    if np.any(length < 0):
        raise ValueError(f"length_km must be >= 0, got {length_km!r}")
    if attenuation_db_per_km < 0 or extra_loss_db < 0:
        raise ValueError(
            f"losses must be >= 0, got attenuation_db_per_km={attenuation_db_per_km!r}, "
            f"extra_loss_db={extra_loss_db!r}"
        )
    return (attenuation_db_per_km * length + extra_loss_db)[()]


def fibre_transmittance(length_km: ArrayLike, attenuation_db_per_km: float = 0.2) -> ArrayLike:
    """Power transmittance of a fibre: ``10 ** (-attenuation_db_per_km * length_km / 10)``.

    Examples:
        >>> float(fibre_transmittance(50.0, 0.2))
        0.1
    """
    return db_to_transmittance(channel_loss_db(length_km, attenuation_db_per_km))


def link_transmittance(
    length_km: ArrayLike, attenuation_db_per_km: float, extra_loss_db: float = 0.0
) -> ArrayLike:
    """Power transmittance of a fibre or free-space link with a fixed extra loss (connectors,
    geometric spread, receiver optics)."""
    return db_to_transmittance(channel_loss_db(length_km, attenuation_db_per_km, extra_loss_db))
