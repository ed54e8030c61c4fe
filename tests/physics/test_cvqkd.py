"""CV-QKD GG02: limits and monotonic behaviour beyond the reference values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qnet.physics import CVQKDParams, cv_qkd_rate, key_rate, max_distance_km
from qnet.physics.cvqkd import holevo_bound_eve, mutual_information_ab
from qnet.physics.entropy import thermal_entropy


def test_mutual_information_of_an_ideal_channel() -> None:
    """Lossless, noiseless, ideal detector: I_AB = 1/2 log2(1 + V_A) (Shannon, homodyne)."""
    p = CVQKDParams(excess_noise=0.0, detector_efficiency=1.0, electronic_noise=0.0)
    assert mutual_information_ab(p, 1.0) == pytest.approx(0.5 * math.log2(5.0), rel=1e-12)


def test_pure_loss_eve_information_is_below_mutual_information() -> None:
    """On a pure-loss channel with perfect reconciliation reverse reconciliation beats Eve
    at every loss (Grosshans et al., Nature 421, 238 (2003))."""
    p = CVQKDParams(excess_noise=0.0, reconciliation_efficiency=1.0)
    for t in (0.9, 0.5, 0.1, 0.01, 1e-4):
        assert mutual_information_ab(p, t) > holevo_bound_eve(p, t) > 0


@pytest.mark.parametrize(("name", "worse"), [
    ("excess_noise", 0.05), ("electronic_noise", 0.2), ("reconciliation_efficiency", 0.9),
])
def test_more_noise_or_worse_reconciliation_lowers_rate(name: str, worse: float) -> None:
    """More excess or electronic noise, or a lower beta, lowers the rate."""
    assert key_rate("cv-qkd", 25.0, {name: worse}).rate_per_pulse < key_rate("cv-qkd", 25.0).rate_per_pulse


def test_large_excess_noise_kills_the_key() -> None:
    """Excess noise of 0.2 SNU leaves no key at 50 km."""
    assert key_rate("cv-qkd", 50.0, {"excess_noise": 0.2}).rate_per_pulse == 0.0


def test_rate_falls_with_distance() -> None:
    """The rate decreases strictly with distance while it is positive."""
    rates = [cv_qkd_rate(CVQKDParams(), 10 ** (-0.02 * d)).rate_per_pulse for d in range(0, 200, 20)]
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_asymptotic_gg02_never_runs_out_of_key() -> None:
    """With beta = 0.95 the asymptotic rate falls like eta but stays positive: the reach is inf,
    not the search limit."""
    assert max_distance_km("cv-qkd", upto_km=600.0) == math.inf


def test_cv_qkd_reports_per_symbol_without_mu() -> None:
    """CV-QKD has no mu and no QBER; rate_bps uses the symbol rate."""
    point = key_rate("cv-qkd", 25.0, {"rep_rate_hz": 1e6})
    assert point.mu is None and point.qber is None
    assert point.rate_bps == pytest.approx(point.rate_per_pulse * 1e6)


def _entropy(cm: np.ndarray) -> float:
    """Von Neumann entropy of a Gaussian state from its covariance matrix (numeric symplectic
    eigenvalues: the moduli of the eigenvalues of i Omega cm, each appearing twice)."""
    n = cm.shape[0] // 2
    omega = np.kron(np.eye(n), np.array([[0.0, 1.0], [-1.0, 0.0]]))
    nus = np.sort(np.abs(np.linalg.eigvals(1j * omega @ cm)))[::2]
    return sum(float(thermal_entropy(nu)) for nu in nus)


def _holevo_numeric(va: float, eps: float, eta: float, v_el: float, t: float) -> float:
    """chi_BE built from scratch in the entanglement-based picture (Lodewyck et al. 2007, sec. III):
    Alice's EPR state through the channel, Bob's detector modelled as a beam splitter of
    transmittance eta fed by half of an EPR state of variance v = 1 + v_el/(1-eta), then Bob's
    homodyne measurement conditions the rest. chi_BE = S(AB) - S(A F G | x_B)."""
    v_a, i2, z = va + 1.0, np.eye(2), np.diag([1.0, -1.0])
    v = 1.0 + v_el / (1.0 - eta)
    cm = np.zeros((8, 8))  # modes: A, B, F (detector input), G (its purification)
    cm[0:2, 0:2] = v_a * i2
    cm[2:4, 2:4] = t * (v_a + 1.0 / t - 1.0 + eps) * i2
    cm[0:2, 2:4] = cm[2:4, 0:2] = math.sqrt(t * (v_a**2 - 1)) * z
    cm[4:6, 4:6] = cm[6:8, 6:8] = v * i2
    cm[4:6, 6:8] = cm[6:8, 4:6] = math.sqrt(v**2 - 1) * z
    s_ab = _entropy(cm[0:4, 0:4])
    bs = np.eye(8)
    bs[2:6, 2:6] = np.block([[math.sqrt(eta) * i2, math.sqrt(1 - eta) * i2],
                             [-math.sqrt(1 - eta) * i2, math.sqrt(eta) * i2]])
    cm = bs @ cm @ bs.T
    rest = [0, 1, 4, 5, 6, 7]
    c = cm[np.ix_(rest, [2, 3])]
    conditioned = cm[np.ix_(rest, rest)] - c @ np.diag([1.0 / cm[2, 2], 0.0]) @ c.T
    return s_ab - _entropy(conditioned)


@pytest.mark.parametrize("distance", [5.0, 25.0, 50.0, 100.0])
@pytest.mark.parametrize(("va", "eps", "eta", "v_el"), [(4.0, 0.01, 0.6, 0.01), (18.5, 0.005, 0.606, 0.041)])
def test_closed_form_matches_covariance_matrix_calculation(distance: float, va: float, eps: float, eta: float,
                                                           v_el: float) -> None:
    """The closed-form symplectic eigenvalues (Fossier et al. 2009) agree with a numeric
    covariance-matrix calculation of the same attack, for the issue's parameters and Lodewyck's."""
    t = 10 ** (-0.02 * distance)
    p = CVQKDParams(modulation_variance=va, excess_noise=eps, detector_efficiency=eta, electronic_noise=v_el)
    assert holevo_bound_eve(p, t) == pytest.approx(_holevo_numeric(va, eps, eta, v_el, t), rel=1e-6)
