"""Distances between places on (and above) a spherical Earth.

- Great-circle distance by the haversine formula (Sinnott, Sky & Telescope 68(2), 159 (1984)),
  mean Earth radius 6371.0088 km (IUGG).
- Straight-line (slant) distance between points at altitude, from Earth-centred Cartesian
  coordinates on the same sphere: the line of sight to a satellite or aircraft.
"""

from __future__ import annotations

import math

from qnet.units import EARTH_RADIUS_KM

__all__ = ["great_circle_km", "slant_range_km"]


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees.

    Examples:
        >>> round(great_circle_km(0.0, 0.0, 0.0, 1.0), 1)  # one degree of the equator
        111.2
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _cartesian(lat: float, lon: float, altitude_km: float) -> tuple[float, float, float]:
    r = EARTH_RADIUS_KM + altitude_km
    p, lam = math.radians(lat), math.radians(lon)
    return r * math.cos(p) * math.cos(lam), r * math.cos(p) * math.sin(lam), r * math.sin(p)


def slant_range_km(
    lat1: float, lon1: float, alt1_km: float, lat2: float, lon2: float, alt2_km: float
) -> float:
    """Straight-line distance in km between two points at given altitudes.

    Examples:
        >>> slant_range_km(35.0, 139.0, 0.0, 35.0, 139.0, 500.0)  # a satellite at zenith
        500.0
    """
    a, b = _cartesian(lat1, lon1, alt1_km), _cartesian(lat2, lon2, alt2_km)
    return round(math.dist(a, b), 9)
