"""Physics against published reference values (tests/vectors/*.yaml, each naming its source)."""

from __future__ import annotations

from typing import Any

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


@pytest.mark.parametrize(("case", "point"), POINTS)
def test_rate_matches_published_value(case: dict[str, Any], point: dict[str, float]) -> None:
    """Each published rate is reproduced to the stated relative tolerance (source in the vector)."""
    got = key_rate(case["protocol"], point["distance_km"], case["params"]).rate_per_pulse
    assert got == pytest.approx(point["rate_per_pulse"], rel=case["rtol"])


@pytest.mark.parametrize("case", REACHES)
def test_reach_matches_published_value(case: dict[str, Any]) -> None:
    """The distance at which the key rate falls to zero matches the published reach."""
    reach = max_distance_km(case["protocol"], case["params"])
    assert reach == pytest.approx(case["reach_km"], abs=case["atol_km"])


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


def test_every_vector_names_its_source() -> None:
    """A reference value without a source is not a reference value: each names a paper with its
    year, and says so when it is a regression value rather than a published number."""
    import re

    for case in CASES:
        assert re.search(r"\((19|20)\d\d\)", case.get("source", "")), case["name"]
