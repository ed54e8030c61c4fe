"""The all-photonic repeater (qnet.physics.all_optical): tree-code measurement probabilities
against a Monte Carlo of lost photons on explicit trees, a station's success against a Monte Carlo
of the whole protocol, analytic limits, and the photon count against the QuISP document.

No number from Azuma, Tamaki, Lo's figures is tested: the paper's text was not available here."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import yaml

from qnet.physics.all_optical import (
    arm_bsm_success,
    photons_per_rgs,
    rgs_key_rate,
    rgs_link_success,
    tree_arbitrary_basis_success,
    tree_indirect_z,
    tree_x_success,
    tree_z_success,
)
from qnet.physics.bounds import plob_bound
from qnet.physics.channels import fibre_transmittance
from tests.conftest import VECTORS

VECTOR: dict[str, Any] = {v["name"]: v for v in yaml.safe_load((VECTORS / "entanglement_components.yaml").read_text())}
SAMPLES = 20_000


def _arrivals(rng: np.random.Generator, loss: float, branching: Sequence[int]) -> list[np.ndarray]:
    """Arrival flags per tree level: level k (1-based) has shape (SAMPLES, b0, ..., b_{k-1})."""
    shape, levels = [SAMPLES], []
    for b in branching:
        shape.append(b)
        levels.append(rng.random(tuple(shape)) >= loss)
    return levels


def _z_ok(levels: list[np.ndarray], k: int) -> np.ndarray:
    """Whether each qubit of level k (1-based) can be Z-measured: it arrived, or one of its
    children arrived with all of that child's children Z-measurable (indirect Z)."""
    return np.asarray(np.logical_or(levels[k - 1], _indirect(levels, k)), dtype=bool)


def _indirect(levels: list[np.ndarray], k: int) -> np.ndarray:
    """Indirect Z of every qubit of level k (0: the root, one per sample)."""
    if k >= len(levels):
        return np.zeros(levels[k - 1].shape if k else (SAMPLES,), dtype=bool)
    child_ok = levels[k].copy()
    if k + 1 < len(levels):
        child_ok &= _z_ok(levels, k + 2).all(axis=-1)
    return np.asarray(child_ok.any(axis=-1))


def _monte_carlo_tree(loss: float, branching: Sequence[int], seed: int) -> tuple[float, float]:
    """Encoded X (root's indirect Z: a level-1 qubit in X, its children in Z) and encoded Z (every
    level-1 qubit Z-measured) success rates on sampled trees."""
    levels = _arrivals(np.random.default_rng(seed), loss, branching)
    return float(_indirect(levels, 0).mean()), float(_z_ok(levels, 1).all(axis=-1).mean())


def _tolerance(p: float) -> float:
    return 5 * float(np.sqrt(p * (1 - p) / SAMPLES)) + 1e-12


@pytest.mark.parametrize(("loss", "branching"), [(0.1, (3, 2)), (0.3, (4, 3)), (0.2, (2, 2, 2)), (0.4, (5,))])
def test_tree_measurements_match_a_monte_carlo(loss: float, branching: tuple[int, ...]) -> None:
    """R_0 and (1 - eps + eps R_1)^b0 agree with sampled trees to 5 standard errors."""
    x_mc, z_mc = _monte_carlo_tree(loss, branching, seed=sum(branching))
    x, z = tree_x_success(loss, branching), tree_z_success(loss, branching)
    assert abs(x - x_mc) < _tolerance(x) and abs(z - z_mc) < _tolerance(z)


def _monte_carlo_station(loss: float, arms: int, branching: Sequence[int], seed: int) -> float:
    """One station: arm Bell measurements (1/2 when both photons arrive) until the first success;
    the two 1st-leaf trees next to it in encoded X, the other 2(m - 1) in encoded Z."""
    rng = np.random.default_rng(seed)
    bsm = (rng.random((SAMPLES, arms)) >= loss) & (rng.random((SAMPLES, arms)) >= loss)
    bsm &= rng.random((SAMPLES, arms)) < 0.5
    x_ok = np.stack([_indirect(_arrivals(rng, loss, branching), 0) for _ in range(2)], axis=-1).all(axis=-1)
    z_ok = np.stack([_z_ok(_arrivals(rng, loss, branching), 1).all(axis=-1) for _ in range(2 * (arms - 1))],
                    axis=-1).all(axis=-1)
    return float((bsm.any(axis=-1) & x_ok & z_ok).mean())


def test_station_success_matches_a_monte_carlo() -> None:
    """Q equals a Monte Carlo of the whole station (vector computed here, cross-checked this way)."""
    v = VECTOR["RGS station success"]
    q = rgs_link_success(v["loss"], v["arms"], tuple(v["branching"]))
    assert q == pytest.approx(v["link_success"], rel=1e-6)
    assert abs(q - _monte_carlo_station(v["loss"], v["arms"], tuple(v["branching"]), seed=7)) < _tolerance(q)


def test_indirect_z_recursion_small_cases() -> None:
    """R for one level is 1 - eps^b0; for (b0, b1) R_0 = 1 - (1 - (1 - eps) eps'^b1 ...)^b0 with R_2 = 0."""
    eps = 0.25
    assert tree_indirect_z(eps, (3,)) == pytest.approx((1 - eps**3,))
    r0, r1 = tree_indirect_z(eps, (3, 2))
    assert r1 == pytest.approx(1 - eps**2)
    assert r0 == pytest.approx(1 - (1 - (1 - eps) * (1 - eps) ** 2) ** 3)


def test_no_loss_limits() -> None:
    """Without loss every tree measurement succeeds; the station fails only if all m linear-optics
    Bell measurements do (1/2^m); a complete Bell measurement makes Q = 1."""
    assert tree_x_success(0.0, (4, 2)) == tree_z_success(0.0, (4, 2)) == 1.0
    assert rgs_link_success(0.0, 5, (4, 2)) == pytest.approx(1 - 0.5**5)
    assert rgs_link_success(0.0, 5, (4, 2), bsm_efficiency=1.0) == 1.0
    assert rgs_link_success(1.0, 5, (4, 2)) == 0.0


def test_success_falls_as_loss_rises_and_trees_help() -> None:
    """Q decreases with loss; at the same loss a tree beats a bare photon, and more arms beat fewer
    Bell-measurement failures."""
    losses = np.linspace(0.0, 0.5, 11)
    q = [rgs_link_success(float(e), 6, (5, 3)) for e in losses]
    assert all(a >= b for a, b in itertools.pairwise(q))
    assert rgs_link_success(0.1, 6, (5, 3)) > rgs_link_success(0.1, 6, ())
    assert arm_bsm_success(0.1, 8) > arm_bsm_success(0.1, 4)


def test_arbitrary_basis_is_more_conservative_than_encoded_x() -> None:
    """Varnava's arbitrary-basis event implies the encoded-X event, so its probability is not larger."""
    for eps in (0.05, 0.2, 0.4):
        assert tree_arbitrary_basis_success(eps, (4, 3)) <= tree_x_success(eps, (4, 3))


def test_photon_count_matches_the_quisp_document() -> None:
    """2m (1 + sum of prod b_i) photons: 60 for m = 3, b = (3, 2), as the QuISP RGS document states."""
    v = VECTOR["RGS photon count"]
    assert photons_per_rgs(v["arms"], tuple(v["branching"])) == v["photons"]
    assert photons_per_rgs(2, ()) == 4


def test_chain_beats_the_repeaterless_bound_per_mode() -> None:
    """Over 1000 km, secret bits per optical mode sent exceed PLOB for the whole line by orders of
    magnitude (a sanity check of the repeater, not a published number)."""
    r = rgs_key_rate(1000.0, sources=199, arms=14, branching=(10, 5), efficiency=0.99)
    per_mode = r.key_per_cycle / (photons_per_rgs(14, (10, 5)) * 199)
    assert per_mode > 1e6 * plob_bound(fibre_transmittance(1000.0, 0.2))
    assert r.key_per_source == pytest.approx(r.key_per_cycle / 199)


def test_qber_lowers_the_key() -> None:
    """1 - 2 h(e): 11 % QBER leaves almost nothing, 12 % none."""
    base = rgs_key_rate(200.0, sources=19, arms=8, branching=(6, 3))
    assert rgs_key_rate(200.0, sources=19, arms=8, branching=(6, 3), qber=0.05).key_per_cycle < base.key_per_cycle
    assert rgs_key_rate(200.0, sources=19, arms=8, branching=(6, 3), qber=0.12).key_per_cycle == 0.0


def test_bad_parameters() -> None:
    """Branching must be positive integers, loss a probability."""
    with pytest.raises(ValueError, match="branching"):
        tree_indirect_z(0.1, (3, 0))
    with pytest.raises(ValueError, match="loss"):
        tree_z_success(1.5, (3,))
