"""No key-rate model may beat its capacity bound, at any distance, for any device parameters.

Point-to-point protocols (BB84, CV-QKD) and MDI-QKD (whose rate scales with eta) are held to the
repeaterless PLOB bound of the channel alone, detector losses excluded (the loosest honest form).
Twin-field QKD has an untrusted relay in the middle and is held to the one-relay bound, which it
must respect; it does beat PLOB at long distance, as it is designed to (checked below).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qnet.physics import key_rate, plob_bound, single_repeater_bound
from qnet.physics.channels import fibre_transmittance

distances = st.floats(min_value=0.0, max_value=500.0)
prob = st.floats(min_value=1e-3, max_value=1.0)
dark = st.floats(min_value=0.0, max_value=1e-3)
mis = st.floats(min_value=0.0, max_value=0.1)
f_ec = st.floats(min_value=1.0, max_value=1.5)
atten = st.floats(min_value=0.15, max_value=0.4)

SETTINGS = settings(max_examples=60, deadline=None)


def _check(protocol: str, distance: float, params: dict[str, object], *, relay: bool = False) -> None:
    point = key_rate(protocol, distance, params)
    eta = float(fibre_transmittance(distance, params["attenuation_db_per_km"]))  # type: ignore[arg-type]
    bound = single_repeater_bound(eta) if relay else plob_bound(eta)
    assert point.rate_per_pulse >= 0.0
    assert point.rate_per_pulse <= bound * (1 + 1e-9)


@SETTINGS
@given(distances, atten, prob, dark, mis, f_ec, st.sampled_from(["infinite", "none"]),
       st.floats(min_value=0.0, max_value=0.1))
def test_bb84_never_beats_plob(d: float, a: float, eff: float, y0: float, ed: float, f: float,
                               decoy: str, ap: float) -> None:
    """Decoy BB84 (infinite decoys or none) stays under PLOB."""
    _check("bb84-decoy", d, {"attenuation_db_per_km": a, "detector_efficiency": eff,
                             "dark_count_prob": y0, "misalignment": ed, "ec_efficiency": f,
                             "decoy": decoy, "afterpulse_prob": ap, "sifting_factor": 1.0})


@settings(max_examples=15, deadline=None)
@given(distances, atten, prob, dark, mis, st.floats(min_value=0.0, max_value=0.2),
       st.floats(min_value=0.0, max_value=1e-6))
def test_bb84_vacuum_weak_never_beats_plob(d: float, a: float, eff: float, y0: float, ed: float,
                                           ap: float, tau: float) -> None:
    """Practical two-decoy BB84, with after-pulses and dead time, stays under PLOB."""
    _check("bb84-decoy", d, {"attenuation_db_per_km": a, "detector_efficiency": eff,
                             "dark_count_prob": y0, "misalignment": ed, "decoy": "vacuum+weak",
                             "sifting_factor": 1.0, "ec_efficiency": 1.0, "afterpulse_prob": ap,
                             "dead_time_s": tau})


@settings(max_examples=10, deadline=None)
@given(st.floats(min_value=0.0, max_value=250.0), prob, dark, mis, st.floats(min_value=0.0, max_value=0.1),
       st.sampled_from([1e4, 1e6, 1e8, 1e10]))
def test_finite_key_never_beats_plob(d: float, eff: float, y0: float, ed: float, ap: float,
                                     block: float) -> None:
    """The finite-key rate (Lim et al. 2014) stays under PLOB and never fails, for any block size."""
    _check("bb84-decoy", d, {"attenuation_db_per_km": 0.2, "detector_efficiency": eff,
                             "dark_count_prob": y0, "misalignment": ed, "decoy": "vacuum+weak",
                             "afterpulse_prob": ap, "block_size": block, "ec_efficiency": 1.0})


@SETTINGS
@given(distances, atten, st.floats(min_value=0.1, max_value=1e3), st.floats(min_value=0.0, max_value=0.2),
       prob, st.floats(min_value=0.0, max_value=0.2), st.floats(min_value=0.5, max_value=1.0))
def test_cv_qkd_never_beats_plob(d: float, a: float, va: float, eps: float, eta: float, vel: float,
                                 beta: float) -> None:
    """GG02 with trusted detector noise stays under PLOB of the channel."""
    _check("cv-qkd", d, {"attenuation_db_per_km": a, "modulation_variance": va, "excess_noise": eps,
                         "detector_efficiency": eta, "electronic_noise": vel,
                         "reconciliation_efficiency": beta})


@SETTINGS
@given(distances, atten, prob, st.floats(min_value=0.0, max_value=1e-4), mis, f_ec)
def test_mdi_qkd_never_beats_plob(d: float, a: float, eff: float, pd: float, ed: float, f: float) -> None:
    """MDI-QKD stays under PLOB."""
    _check("mdi-qkd", d, {"attenuation_db_per_km": a, "detector_efficiency": eff, "dark_count_prob_per_detector": pd,
                          "misalignment": ed, "ec_efficiency": f})


@SETTINGS
@given(distances, atten, prob, st.floats(min_value=0.0, max_value=1e-4), mis, f_ec,
       st.integers(min_value=2, max_value=64))
def test_tf_qkd_never_beats_one_relay_bound(d: float, a: float, eff: float, pd: float, ed: float,
                                            f: float, m: int) -> None:
    """Twin-field QKD stays under the one-relay bound -log2(1 - sqrt(eta))."""
    _check("tf-qkd", d, {"attenuation_db_per_km": a, "detector_efficiency": eff, "dark_count_prob_per_detector": pd,
                         "misalignment": ed, "ec_efficiency": f, "phase_slices": m}, relay=True)


def test_tf_qkd_beats_plob_at_long_distance_with_good_detectors() -> None:
    """The point of twin-field QKD: with near-ideal detectors its sqrt(eta) scaling overtakes the
    repeaterless bound (Lucamarini et al., Nature 557, 400 (2018): beyond ~200 km ideally)."""
    params = {"detector_efficiency": 1.0, "dark_count_prob_per_detector": 1e-11, "misalignment": 0.01}
    far = key_rate("tf-qkd", 400.0, params)
    near = key_rate("tf-qkd", 50.0, params)
    assert far.rate_per_pulse > plob_bound(fibre_transmittance(400.0, 0.2))
    assert near.rate_per_pulse < plob_bound(fibre_transmittance(50.0, 0.2))
