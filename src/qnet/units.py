"""Units and conversions used at qnet's boundaries.

Conventions (see DESIGN.md): quantities crossing a boundary carry their unit in their name
(``length_km``, ``attenuation_db_per_km``, ``rep_rate_hz``); simulation time is an integer number of
picoseconds so that event ordering never drifts; everything else is SI.

Examples:
    >>> db_to_transmittance(3.0)  # doctest: +ELLIPSIS
    0.501...
    >>> transmittance_to_db(0.01)
    20.0
    >>> seconds_to_ps(1.5)
    1500000000000
    >>> parse_duration_s("24h")
    86400.0
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

__all__ = [
    "EARTH_RADIUS_KM",
    "PS_PER_S",
    "db_to_transmittance",
    "parse_duration_s",
    "ps_to_seconds",
    "seconds_to_ps",
    "transmittance_to_db",
]

PS_PER_S = 10**12
"""Picoseconds per second: the simulation clock's tick is one picosecond."""

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), used for great-circle distances."""

FloatArray = npt.NDArray[np.float64]


def db_to_transmittance(loss_db: float | FloatArray) -> float | FloatArray:
    """Turn a loss in dB into a power transmittance in [0, 1]: ``10 ** (-loss_db / 10)``.

    A float for a float, an array for an array.
    """
    eta = np.power(10.0, -np.asarray(loss_db, dtype=float) / 10.0)
    return float(eta) if eta.ndim == 0 else eta


def transmittance_to_db(transmittance: float) -> float:
    """Turn a power transmittance in (0, 1] into a loss in dB.

    Raises:
        ValueError: if the transmittance is not in (0, 1].
    """
    if not 0.0 < transmittance <= 1.0:
        raise ValueError(f"transmittance must be in (0, 1], got {transmittance!r}")
    return round(-10.0 * math.log10(transmittance), 12)


def seconds_to_ps(seconds: float) -> int:
    """Turn seconds into the simulation clock's integer picoseconds (rounded to nearest)."""
    return round(seconds * PS_PER_S)


def ps_to_seconds(ps: int) -> float:
    """Turn integer picoseconds into seconds."""
    return ps / PS_PER_S


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d)?\s*$")
_DURATION_UNIT_S = {"ms": 1e-3, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(text: str) -> float:
    """Parse a duration such as ``"90s"``, ``"15min"``, ``"24h"`` or ``"7d"`` into seconds.

    A bare number is seconds.

    Raises:
        ValueError: naming the text when it is not a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15min, 24h, 7d)")
    value, unit = match.groups()
    return float(value) * _DURATION_UNIT_S[unit or "s"]
