"""Physics against reference values (tests/vectors/*.yaml): numbers read from papers, and numbers
computed here, each labelled as such with what cross-checks it."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import yaml

from qnet.physics import key_rate, max_distance_km, plob_bound, single_repeater_bound
from qnet.physics.channels import fibre_transmittance
from tests.conftest import VECTORS

CASES: list[dict[str, Any]] = yaml.safe_load((VECTORS / "key_rates.yaml").read_text())
BOUNDS: dict[str, list[dict[str, float]]] = yaml.safe_load((VECTORS / "bounds.yaml").read_text())

POINTS = [
    pytest.param(case, point, id=f"{case['name']} @ {point['distance_km']} km")
    for case in CASES
    for point in case.get("points", [])
]
REACHES = [pytest.param(case, id=case["name"]) for case in CASES if "reach_km" in case]
AT_LEAST = [pytest.param(case, id=case["name"]) for case in CASES if "reach_at_least_km" in case]


@pytest.mark.parametrize(("case", "point"), POINTS)
def test_rate_matches_reference_value(case: dict[str, Any], point: dict[str, float]) -> None:
    """Each reference rate is reproduced to the stated relative tolerance (origin in the vector)."""
    got = key_rate(case["protocol"], point["distance_km"], case["params"]).rate_per_pulse
    assert got == pytest.approx(point["rate_per_pulse"], rel=case["rtol"])


@pytest.mark.parametrize("case", REACHES)
def test_reach_matches_reference_value(case: dict[str, Any]) -> None:
    """The distance at which the key rate falls to zero matches the reference reach."""
    reach = max_distance_km(case["protocol"], case["params"])
    assert reach == pytest.approx(case["reach_km"], abs=case["atol_km"])


@pytest.mark.parametrize("case", AT_LEAST)
def test_reach_is_at_least_the_papers_claim(case: dict[str, Any]) -> None:
    """Where a paper says "over X km", the model's reach is at least X."""
    assert max_distance_km(case["protocol"], case["params"]) >= case["reach_at_least_km"]


def _h(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-300, 0.5)
    return np.asarray(-x * np.log2(x) - (1 - x) * np.log2(1 - x))


def _gys_closed_form(distance_km: float, decoy: str) -> float:
    """Lo, Ma, Chen (2005) eq. 1 with GYS parameters, maximised over a fine grid of mu: numpy only,
    no code shared with qnet.physics.bb84 (exact Y_1, e_1 for infinite decoys; GLLP's worst-case
    multi-photon fraction without decoys)."""
    eta, y0, e_d, f = 10 ** (-0.21 * distance_km / 10) * 0.045, 1.7e-6, 0.033, 1.22
    mu = np.linspace(1e-4, 1.5, 150_001)
    gain = 1 - (1 - y0) * np.exp(-eta * mu)
    qber = (0.5 * y0 + e_d * (1 - np.exp(-eta * mu))) / gain
    if decoy == "infinite":
        y1 = y0 + eta - y0 * eta
        q1, e1 = y1 * mu * np.exp(-mu), np.full_like(mu, (0.5 * y0 + e_d * eta) / y1)
    else:
        q1 = gain - (1 - (1 + mu) * np.exp(-mu))
        e1 = np.where(q1 > 0, qber * gain / np.maximum(q1, 1e-300), 0.5)
    rate = 0.5 * (np.where(q1 > 0, q1 * (1 - _h(e1)), q1) - f * gain * _h(qber))
    return float(rate.max())


def _closed_form_reach(decoy: str) -> float:
    lo, hi = 0.0, 300.0
    while hi - lo > 0.01:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _gys_closed_form(mid, decoy) > 0 else (lo, mid)
    return lo


def test_computed_gys_values_match_an_independent_closed_form() -> None:
    """The GYS vectors are computed here; an independent evaluation of the same formulas agrees
    with each rate to 1e-3 and with each reach to its tolerance."""
    cases = {c["name"]: c for c in CASES}
    rates = cases["decoy BB84, infinite decoys, GYS parameters"]
    for point in rates["points"]:
        got = _gys_closed_form(point["distance_km"], "infinite")
        assert got == pytest.approx(point["rate_per_pulse"], rel=1e-3)
    for name, decoy in (("decoy BB84, infinite decoys, GYS parameters, reach", "infinite"),
                        ("BB84 without decoys (GLLP only), GYS parameters, reach", "none")):
        assert _closed_form_reach(decoy) == pytest.approx(cases[name]["reach_km"], abs=cases[name]["atol_km"])


@pytest.mark.parametrize("point", BOUNDS["plob"], ids=lambda p: f"{p['distance_km']} km")
def test_plob_bound_values(point: dict[str, float]) -> None:
    """PLOB -log2(1 - eta) over 0.2 dB/km fibre (Pirandola et al. 2017)."""
    eta = fibre_transmittance(point["distance_km"], 0.2)
    assert plob_bound(eta) == pytest.approx(point["bits_per_use"], rel=1e-3)


@pytest.mark.parametrize("point", BOUNDS["single_repeater"], ids=lambda p: f"{p['distance_km']} km")
def test_single_repeater_bound_values(point: dict[str, float]) -> None:
    """One-relay bound -log2(1 - sqrt(eta)) (Pirandola 2019)."""
    eta = fibre_transmittance(point["distance_km"], 0.2)
    assert single_repeater_bound(eta) == pytest.approx(point["bits_per_use"], rel=1e-3)


def test_every_vector_says_where_its_number_comes_from() -> None:
    """A reference value says whether it was read from a paper (naming the table, figure or the
    sentence quoted) or computed here (naming what cross-checks it); none is called published
    unless a paper is where it was read."""
    for case in CASES:
        source = case.get("source", "")
        assert re.search(r"\((19|20)\d\d\)", source), case["name"]
        assert case.get("origin") in {"paper", "computed"}, case["name"]
        if case["origin"] == "paper":
            assert re.search(r"Table|Fig\.|abstract|eq\.", source) and '"' in source, case["name"]
        else:
            assert "computed here" in source.lower() and case.get("cross_check"), case["name"]
            assert "published" not in source.lower(), case["name"]
