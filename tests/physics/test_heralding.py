"""Heralded entanglement (qnet.physics.heralding): the closed forms against a brute-force
simulation of spins, photons, loss, a beam splitter and threshold detectors with dark counts; the
SPDC gain against a photon-number series; the Bell measurement, attempt period and emitter."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
import yaml

from qnet.physics.heralding import (
    BellStateMeasurement,
    attempt_period_s,
    barrett_kok,
    emitter_photon_numbers,
    herald_round_trip_s,
    phase_coherence,
    single_click,
    spdc_gain_qber,
    spdc_pair_fidelity,
    thermal_probability,
)
from tests.conftest import VECTORS

VECTOR: dict[str, Any] = {v["name"]: v for v in yaml.safe_load((VECTORS / "entanglement_components.yaml").read_text())}

# --- a brute-force model: amplitudes over (spin A, spin B, record), where the record (lost photons,
# photon numbers at the two detectors) labels orthogonal states of everything but the spins.
Amplitudes = dict[tuple[Any, ...], complex]


def _emit(state: Amplitudes, eta_a: float, eta_b: float, phase: float) -> Amplitudes:
    """Bright spins (1) emit a photon; each survives its arm or is lost to its own environment; the
    survivors meet on a 50:50 beam splitter (outputs c, d); the record gains (lost_a, lost_b, n_c, n_d)."""
    out: Amplitudes = defaultdict(complex)
    for (sa, sb, *record), amp in state.items():
        arms = [[(False, 1.0)] if not s else [(True, math.sqrt(e)), (False, math.sqrt(1 - e))]
                for s, e in ((sa, eta_a), (sb, eta_b))]
        for (ta, amp_a), (tb, amp_b) in itertools.product(*arms):
            lost = (bool(sa) and not ta, bool(sb) and not tb)
            for (nc, nd), amp_bs in _beam_splitter(ta, tb, phase):
                out[(sa, sb, *record, *lost, nc, nd)] += amp * amp_a * amp_b * amp_bs
    return out


def _beam_splitter(ta: bool, tb: bool, phase: float) -> list[tuple[tuple[int, int], complex]]:
    b = complex(math.cos(phase), math.sin(phase))
    if ta and tb:  # a+ b+ -> (c+^2 - d+^2)/2: bunching (Hong-Ou-Mandel)
        return [((2, 0), b / math.sqrt(2)), ((0, 2), -b / math.sqrt(2))]
    if ta:
        return [((1, 0), 1 / math.sqrt(2)), ((0, 1), 1 / math.sqrt(2))]
    if tb:
        return [((1, 0), b / math.sqrt(2)), ((0, 1), -b / math.sqrt(2))]
    return [((0, 0), 1.0)]


def _click_prob(n: int, dark: float) -> float:
    return 1.0 if n else dark


def _herald_weight(record: tuple[Any, ...], dark: float, pattern: tuple[str, ...]) -> float:
    """Probability of exactly the clicks ``pattern`` (one detector per round) given photon numbers."""
    weight = 1.0
    for r, which in enumerate(pattern):
        nc, nd = record[4 * r + 2], record[4 * r + 3]
        pc, pd = _click_prob(nc, dark), _click_prob(nd, dark)
        weight *= pc * (1 - pd) if which == "c" else pd * (1 - pc)
    return weight


def _spin_state(state: Amplitudes, dark: float, pattern: tuple[str, ...]) -> np.ndarray:
    """Unnormalised spin density matrix heralded by ``pattern``."""
    vectors: dict[tuple[Any, ...], np.ndarray] = defaultdict(lambda: np.zeros(4, dtype=complex))
    for (sa, sb, *record), amp in state.items():
        vectors[tuple(record)][2 * sa + sb] += amp
    rho = np.zeros((4, 4), dtype=complex)
    for rec, v in vectors.items():
        rho += _herald_weight(rec, dark, pattern) * np.outer(v, v.conj())
    return rho


PHI_P, PHI_M = np.array([1, 0, 0, 1]) / math.sqrt(2), np.array([1, 0, 0, -1]) / math.sqrt(2)
PSI_P, PSI_M = np.array([0, 1, 1, 0]) / math.sqrt(2), np.array([0, 1, -1, 0]) / math.sqrt(2)
ZA, XB = np.diag([1, 1, -1, -1]), np.kron(np.eye(2), np.array([[0, 1], [1, 0]]))


def _corrected_bell(heralds: dict[tuple[str, ...], np.ndarray]) -> tuple[float, tuple[float, ...]]:
    """Total herald probability and (I, Z, X, Y) weights after the Pauli correction: Z on A when an
    odd number of clicks were at detector d (d heralds Psi- where c heralds Psi+), then X on B."""
    total = np.zeros((4, 4), dtype=complex)
    for pattern, rho in heralds.items():
        corrected = ZA @ rho @ ZA if pattern.count("d") % 2 else rho
        total += XB @ corrected @ XB
    p = float(np.trace(total).real)
    return p, tuple(float((b @ total @ b).real) / p for b in (PHI_P, PHI_M, PSI_P, PSI_M))


def _brute_single_click(alpha: float, eta_a: float, eta_b: float, dark: float,
                        phase: float = 0.0) -> tuple[float, tuple[float, ...]]:
    amp = {0: math.sqrt(1 - alpha), 1: math.sqrt(alpha)}
    state: Amplitudes = {(sa, sb): amp[sa] * amp[sb] for sa in (0, 1) for sb in (0, 1)}
    state = _emit(state, eta_a, eta_b, phase)
    return _corrected_bell({(w,): _spin_state(state, dark, (w,)) for w in "cd"})


def _brute_barrett_kok(eta_a: float, eta_b: float, dark: float, phase: float = 0.0) -> tuple[float, tuple[float, ...]]:
    state: Amplitudes = {(sa, sb): 0.5 for sa in (0, 1) for sb in (0, 1)}
    state = _emit(state, eta_a, eta_b, phase)
    state = {(1 - sa, 1 - sb, *rec): a for (sa, sb, *rec), a in state.items()}  # pi pulse on both spins
    state = _emit(state, eta_a, eta_b, phase)
    patterns = itertools.product("cd", repeat=2)
    return _corrected_bell({pattern: _spin_state(state, dark, pattern) for pattern in patterns})


@pytest.mark.parametrize(("alpha", "eta_a", "eta_b", "dark"), [
    (0.1, 0.01, 0.01, 1e-5), (0.3, 0.5, 0.5, 0.0), (0.05, 0.9, 0.9, 1e-3), (0.5, 0.2, 0.2, 0.02),
    (0.1, 0.05, 0.2, 1e-4), (0.2, 0.7, 0.01, 0.0),  # unequal arms
])
def test_single_click_matches_brute_force(alpha: float, eta_a: float, eta_b: float, dark: float) -> None:
    """The closed form equals the simulated spins, photons and detectors, for equal and unequal arms."""
    p, bell = _brute_single_click(alpha, eta_a, eta_b, dark)
    h = single_click(eta_a, eta_b, alpha, dark)
    assert h.probability == pytest.approx(p, rel=1e-10)
    assert h.bell == pytest.approx(bell, abs=1e-10)


def test_single_click_vector() -> None:
    """The vector (computed here) is reproduced by the model and by the brute-force simulation."""
    v = VECTOR["single-click heralding"]
    h = single_click(v["eta"], v["eta"], v["alpha"], v["dark_count_prob"])
    p, bell = _brute_single_click(v["alpha"], v["eta"], v["eta"], v["dark_count_prob"])
    for got in ((h.probability, h.bell), (p, bell)):
        assert got[0] == pytest.approx(v["probability"], rel=1e-6)
        assert got[1] == pytest.approx(v["bell"], abs=1e-6)


def test_single_click_phase_noise_is_the_coherence_factor() -> None:
    """Averaging the simulation over a Gaussian optical phase (Gauss-Hermite) equals coherence = exp(-s^2/2)."""
    sigma = 0.4
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    runs = [_brute_single_click(0.1, 0.3, 0.3, 1e-4, phase=sigma * x) for x in nodes]
    bell = np.sum([w * np.array(b) for w, (_, b) in zip(weights, runs, strict=True)], axis=0) / weights.sum()
    h = single_click(0.3, 0.3, 0.1, 1e-4, coherence=phase_coherence(sigma))
    assert h.bell == pytest.approx(tuple(bell), abs=1e-9)


def test_single_click_first_order_behaviour() -> None:
    """For small alpha and eta: p ~ 2 alpha eta and F ~ 1 - alpha (Humphreys et al. 2018)."""
    h = single_click(1e-4, 1e-4, 0.02)
    assert h.probability == pytest.approx(2 * 0.02 * 1e-4, rel=1e-3)
    assert h.fidelity == pytest.approx(1 - 0.02, abs=1e-3)


@pytest.mark.parametrize(("eta_a", "eta_b", "dark"), [(0.2, 0.3, 1e-3), (0.9, 0.9, 0.0), (0.05, 0.5, 0.01)])
def test_barrett_kok_matches_brute_force(eta_a: float, eta_b: float, dark: float) -> None:
    """The closed form equals the simulated two rounds with a spin flip between them."""
    p, bell = _brute_barrett_kok(eta_a, eta_b, dark)
    h = barrett_kok(eta_a, eta_b, dark)
    assert h.probability == pytest.approx(p, rel=1e-10)
    assert h.bell == pytest.approx(bell, abs=1e-10)


def test_barrett_kok_vector_and_ideal_limit() -> None:
    """The vector is reproduced twice; without noise p = eta_A eta_B / 2 and F = 1 (Barrett, Kok 2005)."""
    v = VECTOR["Barrett-Kok heralding"]
    h = barrett_kok(v["eta_a"], v["eta_b"], v["dark_count_prob"])
    p, bell = _brute_barrett_kok(v["eta_a"], v["eta_b"], v["dark_count_prob"])
    assert (h.probability, p) == pytest.approx((v["probability"], v["probability"]), rel=1e-6)
    assert h.bell == pytest.approx(v["bell"], abs=1e-6) and bell == pytest.approx(v["bell"], abs=1e-6)
    ideal = barrett_kok(0.3, 0.7)
    assert ideal.probability == pytest.approx(0.3 * 0.7 / 2) and ideal.fidelity == pytest.approx(1.0)


def test_barrett_kok_ignores_a_stable_phase_that_single_click_does_not() -> None:
    """A fixed optical phase cancels between Barrett-Kok's two rounds; it rotates the single-click state."""
    assert _brute_barrett_kok(0.4, 0.4, 0.0, phase=0.9)[1][0] == pytest.approx(1.0)
    assert _brute_single_click(0.01, 0.4, 0.4, 0.0, phase=0.9)[1][0] < 0.9


def test_herald_exposes_the_state_the_simulator_reads() -> None:
    """``state`` is the Bell-coefficient tuple (qnet.quantum.entanglement reads it), summing to 1."""
    h = single_click(0.02, 0.03, 0.1, 1e-5)
    assert h.state == h.bell and sum(h.state) == pytest.approx(1.0)
    assert isinstance(h, tuple) and h.probability == h[0]


def test_unequal_arms_cost_fidelity_at_equal_alpha() -> None:
    """One alpha for unequal arms leaves a less entangled pair: the balance factor 2 sqrt(ab)/(a + b)."""
    equal, unequal = single_click(0.1, 0.1, 1e-3), single_click(0.19, 0.01, 1e-3)
    assert unequal.probability == pytest.approx(equal.probability, rel=1e-3)
    assert unequal.fidelity < equal.fidelity


def test_dark_counts_lower_fidelity_and_add_heralds() -> None:
    """More dark counts: more heralds, lower fidelity, for both schemes."""
    pairs = [(single_click(0.01, 0.01, 0.1, d), barrett_kok(0.01, 0.01, d)) for d in (1e-6, 1e-4)]
    for low, high in zip(*pairs, strict=True):
        assert high.probability > low.probability and high.fidelity < low.fidelity


def test_bell_state_measurement_linear_optics_vs_deterministic() -> None:
    """Linear optics identifies half the Bell states; dark counts add false heralds of the mixed state."""
    lin, det = BellStateMeasurement.linear_optics(dark_count_prob=1e-3), BellStateMeasurement.deterministic()
    assert lin.success_probability(0.8, 0.5) == pytest.approx(0.2)
    assert det.success_probability(0.8, 0.5) == pytest.approx(0.4)
    h = lin.herald(0.1, 0.1)
    true, false = 0.5 * 0.01, 2 * 0.1 * 0.9 * 2 * 1e-3 + 0.81 * 4 * 1e-6
    assert h.probability == pytest.approx(true + false)
    assert h.fidelity == pytest.approx(true / (true + false) + false / (true + false) / 4)
    assert det.herald(0.1, 0.1).fidelity == 1.0
    with pytest.raises(ValueError, match="identified_fraction"):
        BellStateMeasurement(identified_fraction=0.0)


def test_attempt_period() -> None:
    """5 us per km each way; the source's repetition rate is a floor."""
    assert herald_round_trip_s(25.0) == pytest.approx(2.5e-4)
    assert attempt_period_s(25.0, source_rate_hz=1e3) == pytest.approx(1e-3)
    assert attempt_period_s(25.0, source_rate_hz=1e6, preparation_s=5e-6) == pytest.approx(2.55e-4)
    with pytest.raises(ValueError, match="half_distance_km"):
        herald_round_trip_s(-1.0)


def test_thermal_distribution_sums_to_one_with_mean_mu() -> None:
    """P(n) = mu^n / (1 + mu)^(n + 1) is normalised with mean mu."""
    n = np.arange(400)
    p = np.array([thermal_probability(int(k), 0.7) for k in n])
    assert p.sum() == pytest.approx(1.0) and (n * p).sum() == pytest.approx(0.7)


def _gain_by_series(mu: float, eta_a: float, eta_b: float, y_a: float, y_b: float) -> float:
    """Sum over n pairs, P(n) = (n + 1) lam^n / (1 + lam)^(n + 2), of P(both sides click | n)."""
    lam, n = mu / 2, np.arange(2000)
    p_n = (n + 1) * lam**n / (1 + lam) ** (n + 2)
    none_a, none_b = (1 - y_a) * (1 - eta_a) ** n, (1 - y_b) * (1 - eta_b) ** n
    return float(np.sum(p_n * (1 - none_a - none_b + none_a * none_b)))


def test_spdc_gain_matches_the_photon_number_series() -> None:
    """Ma-Fung-Lo's closed-form gain equals the series over the two-mode thermal distribution."""
    v = VECTOR["SPDC coincidence gain and QBER"]
    args = (v["mean_pairs"], v["eta_a"], v["eta_b"], v["background_a"], v["background_b"])
    q, e = spdc_gain_qber(mean_pairs=args[0], eta_a=args[1], eta_b=args[2], background_a=args[3],
                          background_b=args[4], misalignment=v["misalignment"])
    assert q == pytest.approx(_gain_by_series(*args), rel=1e-9)
    assert (q, e) == pytest.approx((v["gain"], v["qber"]), rel=1e-6)


def test_spdc_qber_limits() -> None:
    """Few pairs, no background: E -> e_d; more pairs: E grows (multi-pair); e_d = 1/2 gives 1/2."""
    assert spdc_gain_qber(mean_pairs=1e-6, eta_a=0.1, eta_b=0.1, misalignment=0.02)[1] == pytest.approx(0.02, abs=1e-5)
    qbers = [spdc_gain_qber(mean_pairs=mu, eta_a=0.5, eta_b=0.5)[1] for mu in (0.01, 0.1, 1.0)]
    assert qbers == sorted(qbers) and qbers[0] > 0
    assert spdc_gain_qber(mean_pairs=0.1, eta_a=0.5, eta_b=0.5, background_a=1e-3,
                          misalignment=0.5)[1] == pytest.approx(0.5)
    assert spdc_pair_fidelity(0.1) == pytest.approx(1 - 1.5 * 0.1)


def test_emitter_photon_numbers() -> None:
    """The truncated distribution has mean eta and reproduces g2 = 2 p2 / eta^2."""
    p0, p1, p2 = emitter_photon_numbers(0.6, 0.05)
    assert p0 + p1 + p2 == pytest.approx(1.0)
    assert p1 + 2 * p2 == pytest.approx(0.6) and 2 * p2 / 0.6**2 == pytest.approx(0.05)
    with pytest.raises(ValueError, match="g2"):
        emitter_photon_numbers(0.9, 3.0)
