"""Entropies used by key-rate formulas.

- :func:`binary_entropy` is Shannon's h(x) = -x log2 x - (1-x) log2(1-x).
- :func:`thermal_entropy` is the von Neumann entropy of a one-mode Gaussian state with symplectic
  eigenvalue ``nu`` (in shot-noise units), G((nu-1)/2) with G(x) = (x+1) log2(x+1) - x log2 x
  (Weedbrook et al., Rev. Mod. Phys. 84, 621 (2012), eq. 44).
"""

from __future__ import annotations

import math

import numpy as np

from qnet.physics._types import ArrayLike

__all__ = ["binary_entropy", "reconciliation_efficiency", "thermal_entropy"]


def binary_entropy(x: ArrayLike) -> ArrayLike:
    """Shannon binary entropy h(x) in bits; h(0) = h(1) = 0 and h is symmetric about 1/2.

    Values outside [0, 1] are clipped to that interval.

    Examples:
        >>> float(binary_entropy(0.5))
        1.0
        >>> round(float(binary_entropy(0.11)), 4)
        0.4999
    """
    if type(x) is float:  # a scalar fast path: optimisers call this tens of thousands of times
        return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x) if 0.0 < x < 1.0 else 0.0
    p = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -p * np.log2(p) - (1.0 - p) * np.log2(1.0 - p)
    return np.where((p <= 0.0) | (p >= 1.0), 0.0, h)[()]


def thermal_entropy(nu: ArrayLike) -> ArrayLike:
    """Von Neumann entropy (bits) of a Gaussian mode with symplectic eigenvalue ``nu`` >= 1 (SNU).

    Examples:
        >>> float(thermal_entropy(1.0))
        0.0
        >>> round(float(thermal_entropy(3.0)), 4)  # a thermal state with mean photon number 1
        2.0
    """
    x = np.maximum((np.asarray(nu, dtype=float) - 1.0) / 2.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (x + 1.0) * np.log2(x + 1.0) - x * np.log2(x)
    return np.where(x > 0.0, g, 0.0)[()]


def reconciliation_efficiency(leak_bits: float, key_bits: int, qber: float) -> float:
    """f = leak / (n h(QBER)): how many times the Shannon limit error correction disclosed
    (Slepian-Wolf: n h(QBER) bits are necessary). ``inf`` when h(QBER) or n is 0.

    Examples:
        >>> round(reconciliation_efficiency(1100, 10_000, 0.0125), 3)
        1.135
    """
    h = float(binary_entropy(qber))
    return leak_bits / (key_bits * h) if key_bits > 0 and h > 0 else float("inf")
