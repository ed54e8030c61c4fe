"""Quantum frequency conversion (qnet.physics.interfaces): presets against the papers' abstracts,
noise against a density-matrix mixture, and the crossover distance against the gain it balances."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import yaml

from qnet.physics.interfaces import (
    NATIVE_ATTENUATION_DB_PER_KM,
    PRESETS,
    FrequencyConverter,
    conversion_gain,
    crossover_distance_km,
    get_converter,
)
from tests.conftest import VECTORS

VECTORS_LIST: list[dict[str, Any]] = yaml.safe_load((VECTORS / "entanglement_components.yaml").read_text())
VECTOR = {v["name"]: v for v in VECTORS_LIST}
PAPER_PRESETS = [pytest.param(v, id=v["preset"]) for v in VECTORS_LIST if "preset" in v]


@pytest.mark.parametrize("vector", PAPER_PRESETS)
def test_presets_carry_the_numbers_read_from_the_papers(vector: dict[str, Any]) -> None:
    """Each preset's efficiency (and noise rate, where read) is the paper's, and its source says so."""
    qfc = get_converter(vector["preset"])
    assert qfc.efficiency == pytest.approx(vector["efficiency"])
    if "noise_rate_hz" in vector:
        assert qfc.noise_rate_hz == pytest.approx(vector["noise_rate_hz"])
    assert vector["citation"] in qfc.source
    assert (qfc.input_nm, qfc.output_nm) == (vector["input_nm"], vector["output_nm"])


def test_every_preset_says_what_is_illustrative() -> None:
    """A preset without a paper vector for its noise rate calls that rate illustrative."""
    read = {v["preset"] for v in VECTORS_LIST if "noise_rate_hz" in v}
    for name, qfc in PRESETS.items():
        assert qfc.name == name and qfc.source
        if name not in read:
            assert "illustrative" in qfc.source


@pytest.mark.parametrize("vector", VECTORS_LIST, ids=lambda v: v["name"])
def test_every_vector_says_where_its_number_comes_from(vector: dict[str, Any]) -> None:
    """Each entanglement-component vector is read from a paper (quoted, with its year), read from a
    document (quoted), or computed here with an independent cross-check; none computed is called
    published."""
    source = vector["source"]
    assert vector["origin"] in {"paper", "document", "computed"}
    if vector["origin"] == "paper":
        assert re.search(r"\((19|20)\d\d\)", source) and "abstract" in source and '"' in source
    elif vector["origin"] == "document":
        assert '"' in source
    else:
        assert source.startswith("Computed here") and vector.get("cross_check")
        assert "published" not in source.lower()


def test_unknown_converter_lists_the_presets() -> None:
    """A misspelt preset name fails with the known names."""
    with pytest.raises(ValueError, match="Rb-780-to-1522"):
        get_converter("Rb-780")


def _fidelity_by_density_matrix(signal: float, noise: float, fidelity0: float) -> float:
    """A detection is signal (a Werner pair of fidelity F0) or noise (the photon uncorrelated with a
    maximally mixed memory qubit), weighted S : N; fidelity of the 4x4 mixture to Phi+."""
    phi = np.array([1, 0, 0, 1]) / math.sqrt(2)
    w0 = (4 * fidelity0 - 1) / 3
    pair = w0 * np.outer(phi, phi) + (1 - w0) * np.eye(4) / 4
    rho = (signal * pair + noise * np.eye(4) / 4) / (signal + noise)
    return float(phi @ rho @ phi)


@pytest.mark.parametrize(("signal_prob", "window_s", "fidelity0"), [(1e-3, 1e-6, 1.0), (1e-5, 1e-6, 0.95),
                                                                    (1e-6, 1e-5, 0.9)])
def test_converted_fidelity_matches_the_mixture(signal_prob: float, window_s: float, fidelity0: float) -> None:
    """w F0 + (1 - w)/4 equals the density-matrix mixture of signal and noise detections."""
    qfc = PRESETS["Ca-854-to-1310"]
    s, n = signal_prob * qfc.efficiency, 1 - math.exp(-qfc.noise_rate_hz * window_s)
    got = qfc.converted_fidelity(signal_prob, window_s, fidelity0=fidelity0)
    assert got == pytest.approx(_fidelity_by_density_matrix(s, n, fidelity0))


def test_noise_limits() -> None:
    """No noise keeps the fidelity; noise swamping the signal leaves the mixed state's 1/4."""
    quiet = FrequencyConverter(name="q", input_nm=780, output_nm=1550, efficiency=0.3, noise_rate_hz=0.0)
    assert quiet.converted_fidelity(1e-4, 1e-6, fidelity0=0.9) == pytest.approx(0.9)
    loud = FrequencyConverter(name="l", input_nm=780, output_nm=1550, efficiency=0.3, noise_rate_hz=1e12)
    assert loud.converted_fidelity(1e-4, 1e-6) == pytest.approx(0.25, abs=1e-4)
    assert loud.signal_fraction(0.0, 0.0) == 0.0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_crossover_balances_the_transmittances(name: str) -> None:
    """At L* conversion neither gains nor loses; beyond it gains, before it loses."""
    qfc = PRESETS[name]
    native = NATIVE_ATTENUATION_DB_PER_KM[f"{qfc.input_nm:g} nm"]
    cross = crossover_distance_km(qfc, native_db_per_km=native)
    assert conversion_gain(cross, qfc, native_db_per_km=native) == pytest.approx(1.0)
    assert conversion_gain(2 * cross, qfc, native_db_per_km=native) > 1 > conversion_gain(cross / 2, qfc,
                                                                                          native_db_per_km=native)


def test_crossover_vector_and_edge_cases() -> None:
    """The NV vector (computed here, illustrative 8 dB/km); no crossover when native is not lossier."""
    v = VECTOR["conversion crossover, NV 637 nm"]
    qfc = PRESETS["NV-637-to-1588"]
    assert crossover_distance_km(qfc, native_db_per_km=v["native_db_per_km"]) == pytest.approx(v["crossover_km"],
                                                                                               rel=1e-6)
    assert v["crossover_km"] == pytest.approx(10 * math.log10(1 / 0.17) / (8.0 - 0.2), rel=1e-6)
    assert crossover_distance_km(qfc, native_db_per_km=0.2) == math.inf


def test_converter_validation_names_the_field() -> None:
    """A bad parameter raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"FrequencyConverter\.efficiency"):
        FrequencyConverter(name="x", input_nm=780, output_nm=1550, efficiency=1.5, noise_rate_hz=0.0)
    with pytest.raises(ValueError, match=r"FrequencyConverter\.input_nm"):
        FrequencyConverter(name="x", input_nm=0, output_nm=1550, efficiency=0.5, noise_rate_hz=0.0)
