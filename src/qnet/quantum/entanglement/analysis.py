"""Closed forms that the entanglement-network simulation is checked against.

- Waiting time of a nested repeater with deterministic swapping and memories that keep their pairs:
  all ``m`` links must be up at once, so the number of attempts is the maximum of ``m`` independent
  geometric variables of parameter p, whose mean is ``sum_{k=1}^{m} C(m,k) (-1)^(k+1) / (1 - (1-p)^k)``
  (inclusion-exclusion on ``P(max > t) = 1 - (1 - (1-p)^t)^m``; the deterministic-swapping case of
  Shchukin, Schmidt, van Loock, PRA 100, 032322 (2019)).
- The fidelity after swapping ``n`` Werner pairs of fidelity F with perfect Bell measurements:
  the Werner parameter ``w = (4F - 1)/3`` multiplies, ``F_n = (1 + 3 w^n)/4`` (Dür, Briegel, Cirac,
  Zoller, PRA 59, 169 (1999), eq. 8 iterated).
"""

from __future__ import annotations

from math import comb

__all__ = ["chain_fidelity", "expected_max_geometric"]


def expected_max_geometric(p: float, m: int) -> float:
    """Mean number of attempts until all ``m`` links are up at once (per-attempt success ``p``).

    Examples:
        >>> round(expected_max_geometric(0.01, 2), 4)
        149.7487
    """
    if not 0.0 < p <= 1.0 or m < 1:
        raise ValueError(f"need 0 < p <= 1 and m >= 1, got p={p!r}, m={m!r}")
    q = 1.0 - p
    return float(sum(comb(m, k) * (-1) ** (k + 1) / (1.0 - q**k) for k in range(1, m + 1)))


def chain_fidelity(fidelity: float, links: int) -> float:
    """Fidelity of an end-to-end pair swapped from ``links`` Werner pairs of ``fidelity`` (no decay).

    Examples:
        >>> round(chain_fidelity(0.9, 2), 6)  # F^2 + (1-F)^2/3
        0.813333
    """
    w = (4.0 * fidelity - 1.0) / 3.0
    return (1.0 + 3.0 * w**links) / 4.0
