"""The all-photonic repeater of Azuma, Tamaki, Lo (Nat. Commun. 6, 6787 (2015)) as a rate model.

Sources spaced L0 = L / (n + 1) apart each emit a repeater graph state (RGS): 2m "1st-leaf"
qubits, all joined, each with an "arm" (2nd-leaf) photon; the 1st-leaf qubits are encoded in
trees with branching vector b = (b0, b1, ..., bl) to survive loss. Half the RGS goes to the
station on each side (L0 / 2 away), where the m arm photons from the left and the m from the right
meet pairwise in linear-optics Bell measurements (success 1/2, both photons needed); the 1st-leaf
qubits next to the first successful pair are measured in X, all others in Z, and the chain of n + 1
stations connects Alice to Bob. Every photon is lost with probability
eps = 1 - efficiency * 10^(-a (L0 / 2) / 10).

- Indirect Z on a tree qubit of level k (Varnava, Browne, Rudolph, PRL 97, 120501 (2006)):
  R_k = 1 - [1 - (1 - eps)(1 - eps + eps R_{k+2})^{b_{k+1}}]^{b_k}, with R = 0 and b = 0 beyond
  the last level.
- Encoded Z of a 1st-leaf qubit: every level-1 qubit measured in Z, directly or indirectly:
  P_Z = (1 - eps + eps R_1)^{b0}. Encoded X: one level-1 qubit measured in X with all its
  children measured in Z: P_X = R_0.
- One station succeeds with Q = [1 - (1 - (1 - eps)^2 / 2)^m] P_X^2 P_Z^(2(m - 1)), and the chain
  with Q^(n + 1). Without trees (b empty) a 1st-leaf qubit is one photon: P_X = P_Z = 1 - eps.
- Secret key per clock cycle (every source emitting one RGS): Q^(n + 1) (1 - 2 h(e)) for
  entanglement-based BB84 with equal bit and phase error rates e (Shor, Preskill, PRL 85, 441
  (2000)), no sifting loss (asymmetric basis choice).

What was and was not checked: the paper's own text was not available in this session, so the
formulas above are taken as two independent public restatements of the protocol give them -- the
model code of Hilaire et al. (Paulhilaire/performance_repeater_graph_state, for "Resource-efficient
quantum communications using all-photonic graph states generated from a few matter qubits",
arXiv (2020)) and the QuISP RGS document (sfc-aqua/quisp, doc/RGS RuleSets.md) -- which agree on
P_X, P_Z and Q; no number from Azuma et al.'s figures is reproduced here. The error model is the
ideal one (``qber`` is the caller's): the paper's treatment of depolarising errors on the trees is
not implemented. :func:`tree_arbitrary_basis_success` is Varnava et al.'s (more conservative)
probability for a measurement in a non-Pauli basis, kept for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from qnet.physics.channels import fibre_transmittance
from qnet.physics.entropy import binary_entropy

__all__ = [
    "RGSRate",
    "arm_bsm_success",
    "photon_loss",
    "photons_per_rgs",
    "rgs_key_rate",
    "rgs_link_success",
    "tree_arbitrary_basis_success",
    "tree_indirect_z",
    "tree_x_success",
    "tree_z_success",
]


class RGSRate(NamedTuple):
    """The rate model's outputs at one distance."""

    loss: float
    """Per-photon loss probability eps."""
    link_success: float
    """Probability Q that one station connects its two neighbouring RGSs."""
    success: float
    """Probability Q^(n + 1) that Alice and Bob are connected in one clock cycle."""
    key_per_cycle: float
    """Secret bits per clock cycle (each source emitting one RGS)."""
    key_per_source: float
    """Secret bits per clock cycle per RGS source (key_per_cycle / n; key_per_cycle when n = 0)."""


def _check_tree(loss: float, branching: Sequence[int]) -> None:
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f"loss must be in [0, 1], got {loss!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in branching):
        raise ValueError(f"branching must be integers >= 1, got {tuple(branching)!r}")


def tree_indirect_z(loss: float, branching: Sequence[int]) -> tuple[float, ...]:
    """Indirect-Z success probabilities (R_0, ..., R_l) of a tree with branching (b0, ..., bl).

    R_k belongs to a qubit of level k, whose b_k children are at level k + 1 (the root is level 0).

    Examples:
        >>> tree_indirect_z(0.0, (3, 2))
        (1.0, 1.0)
        >>> [round(r, 6) for r in tree_indirect_z(0.1, (2,))]  # 1 - eps^b0
        [0.99]
    """
    _check_tree(loss, branching)
    b = [*branching, 0, 0]
    r = [0.0] * (len(branching) + 2)
    for k in range(len(branching) - 1, -1, -1):
        child = (1.0 - loss) * (1.0 - loss + loss * r[k + 2]) ** b[k + 1]
        r[k] = 1.0 - (1.0 - child) ** b[k]
    return tuple(r[: len(branching)])


def _r(loss: float, branching: Sequence[int], k: int) -> float:
    rs = tree_indirect_z(loss, branching)
    return rs[k] if k < len(rs) else 0.0


def tree_z_success(loss: float, branching: Sequence[int]) -> float:
    """Encoded Z of a tree-encoded qubit: (1 - eps + eps R_1)^b0; 1 - eps without a tree."""
    _check_tree(loss, branching)
    if not branching:
        return 1.0 - loss
    return (1.0 - loss + loss * _r(loss, branching, 1)) ** branching[0]


def tree_x_success(loss: float, branching: Sequence[int]) -> float:
    """Encoded X of a tree-encoded qubit: R_0; 1 - eps without a tree."""
    _check_tree(loss, branching)
    return 1.0 - loss if not branching else _r(loss, branching, 0)


def tree_arbitrary_basis_success(loss: float, branching: Sequence[int]) -> float:
    """Varnava et al.'s arbitrary-basis measurement of the encoded qubit:
    [(1 - eps + eps R_1)^b0 - (eps R_1)^b0] (1 - eps + eps R_2)^b1; 1 - eps without a tree."""
    _check_tree(loss, branching)
    if not branching:
        return 1.0 - loss
    r1, r2 = _r(loss, branching, 1), _r(loss, branching, 2)
    b1 = branching[1] if len(branching) > 1 else 0
    level1 = (1.0 - loss + loss * r1) ** branching[0] - (loss * r1) ** branching[0]
    return level1 * (1.0 - loss + loss * r2) ** b1


def arm_bsm_success(loss: float, arms: int, *, bsm_efficiency: float = 0.5) -> float:
    """Probability that at least one of ``arms`` arm-photon Bell measurements succeeds:
    1 - (1 - f (1 - eps)^2)^m."""
    if arms < 1:
        raise ValueError(f"arms must be >= 1, got {arms!r}")
    return 1.0 - (1.0 - bsm_efficiency * (1.0 - loss) ** 2) ** arms


def rgs_link_success(loss: float, arms: int, branching: Sequence[int], *, bsm_efficiency: float = 0.5) -> float:
    """Q = [1 - (1 - f (1 - eps)^2)^m] P_X^2 P_Z^(2(m - 1)) for one station.

    Args:
        loss: per-photon loss probability eps.
        arms: m, the number of arm pairs measured at a station (the RGS has 2m arms).
        branching: the 1st-leaf tree's branching vector (b0, ..., bl); empty for no tree.
        bsm_efficiency: fraction of Bell states the arm measurement identifies (1/2, linear optics).

    Examples:
        >>> rgs_link_success(0.0, 4, (3, 2))  # no loss: only the Bell measurements can fail
        0.9375
    """
    x, z = tree_x_success(loss, branching), tree_z_success(loss, branching)
    return arm_bsm_success(loss, arms, bsm_efficiency=bsm_efficiency) * x**2 * z ** (2 * (arms - 1))


def photons_per_rgs(arms: int, branching: Sequence[int]) -> int:
    """Photons in one RGS: 2m (1 + sum_j prod_{i <= j} b_i) (one arm photon, plus the tree's
    qubits below its root, per arm).

    Examples:
        >>> photons_per_rgs(3, (3, 2))
        60
    """
    per_tree, level = 0, 1
    for b in branching:
        level *= b
        per_tree += level
    return 2 * arms * (1 + per_tree)


def photon_loss(link_km: float, *, attenuation_db_per_km: float = 0.2, efficiency: float = 1.0) -> float:
    """Per-photon loss over half a link: eps = 1 - efficiency * 10^(-a (L0 / 2) / 10).

    Args:
        link_km: source spacing L0.
        attenuation_db_per_km: fibre attenuation a.
        efficiency: everything else a photon must get through (source, coupling, detector).
    """
    return 1.0 - efficiency * float(fibre_transmittance(link_km / 2.0, attenuation_db_per_km))


def rgs_key_rate(distance_km: float, *, sources: int, arms: int, branching: Sequence[int],
                 attenuation_db_per_km: float = 0.2, efficiency: float = 1.0, bsm_efficiency: float = 0.5,
                 qber: float = 0.0) -> RGSRate:
    """Key rate of an RGS chain of ``sources`` sources (n + 1 stations) over ``distance_km``.

    Args:
        distance_km: Alice to Bob.
        sources: n, RGS sources between them (link length L0 = L / (n + 1)).
        arms: m.
        branching: the 1st-leaf tree's branching vector.
        attenuation_db_per_km: fibre attenuation.
        efficiency: per-photon efficiency apart from the fibre.
        bsm_efficiency: arm Bell measurement's identified fraction.
        qber: end-to-end bit and phase error rate (0: the ideal-error case).

    Examples:
        >>> r = rgs_key_rate(1000.0, sources=199, arms=14, branching=(10, 5), efficiency=0.99)
        >>> round(r.loss, 4), round(r.success, 3)  # 5 km links; 2.5 km and 1 % loss per photon
        (0.1177, 0.362)
    """
    if sources < 0 or distance_km < 0:
        raise ValueError(f"need sources >= 0 and distance_km >= 0, got {sources!r}, {distance_km!r}")
    loss = photon_loss(distance_km / (sources + 1), attenuation_db_per_km=attenuation_db_per_km,
                       efficiency=efficiency)
    q = rgs_link_success(loss, arms, branching, bsm_efficiency=bsm_efficiency)
    success = q ** (sources + 1)
    key = success * max(0.0, 1.0 - 2.0 * float(binary_entropy(qber)))
    return RGSRate(loss, q, success, key, key / sources if sources else key)
