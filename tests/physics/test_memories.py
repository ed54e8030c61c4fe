"""Quantum memories (qnet.physics.memories): the T1/T2 Pauli twirl against Kraus operators, the
Bell-state bookkeeping against density matrices, Werner decay and cut-offs, and Memory's checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import yaml

from qnet.physics.memories import (
    Memory,
    apply_pauli_channel,
    depolarising_channel,
    pauli_twirl_t1_t2,
    time_to_fidelity_s,
    werner_fidelity,
    werner_fidelity_after,
)
from tests.conftest import VECTORS

VECTOR: dict[str, Any] = {v["name"]: v for v in yaml.safe_load((VECTORS / "entanglement_components.yaml").read_text())}

I2 = np.eye(2, dtype=complex)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
Z = np.diag([1.0, -1.0]).astype(complex)
PHI_P = np.array([1, 0, 0, 1], dtype=complex) / math.sqrt(2)
BELL = [np.kron(P, I2) @ PHI_P for P in (I2, Z, X, Y)]  # Phi+, Phi-, Psi+, Psi- up to phase


def _kraus_pauli_probabilities(t: float, t1: float, t2: float) -> np.ndarray:
    """Amplitude damping (gamma = 1 - e^{-t/T1}) then pure dephasing completing e^{-t/T2}, as Kraus
    operators; the Pauli transfer matrix's diagonal gives the twirled probabilities."""
    gamma = 1.0 - math.exp(-t / t1)
    lam = math.exp(-t / t2) / math.sqrt(1.0 - gamma)
    kraus = [np.array([[1, 0], [0, math.sqrt(1 - gamma)]]), np.array([[0, math.sqrt(gamma)], [0, 0]])]
    kraus = [math.sqrt((1 + s * lam) / 2) * (k if s > 0 else Z @ k) for k in kraus for s in (1, -1)]
    r = [np.trace(P @ sum(k @ P @ k.conj().T for k in kraus)).real / 2 for P in (X, Y, Z)]
    rxx, ryy, rzz = r
    return np.array([1 + rxx + ryy + rzz, 1 + rxx - ryy - rzz, 1 - rxx + ryy - rzz, 1 - rxx - ryy + rzz]) / 4


@pytest.mark.parametrize(("t", "t1", "t2"), [(0.5, 2.0, 1.0), (1.0, 1.0, 2.0), (3.0, 10.0, 0.5), (0.2, 0.3, 0.6)])
def test_twirl_matches_the_kraus_operators(t: float, t1: float, t2: float) -> None:
    """The closed form equals the Pauli-transfer-matrix diagonal of explicit Kraus operators."""
    assert pauli_twirl_t1_t2(t, t1_s=t1, t2_s=t2) == pytest.approx(_kraus_pauli_probabilities(t, t1, t2), abs=1e-12)


def test_twirl_vector_is_reproduced_independently() -> None:
    """The vector's value (computed here) is reproduced by the model and by the Kraus computation."""
    v = VECTOR["T1/T2 Pauli twirl"]
    assert pauli_twirl_t1_t2(v["t_s"], t1_s=v["t1_s"], t2_s=v["t2_s"]) == pytest.approx(v["pauli"], abs=1e-6)
    assert _kraus_pauli_probabilities(v["t_s"], v["t1_s"], v["t2_s"]) == pytest.approx(v["pauli"], abs=1e-6)


def test_twirl_limits() -> None:
    """Long storage leaves p_I = p_X = p_Y = p_Z = 1/4; pure dephasing has no X or Y part."""
    assert pauli_twirl_t1_t2(1e3, t1_s=1.0, t2_s=1.0) == pytest.approx((0.25,) * 4)
    _, p_x, p_y, p_z = pauli_twirl_t1_t2(1.0, t1_s=math.inf, t2_s=2.0)
    assert (p_x, p_y) == (0.0, 0.0)
    assert p_z == pytest.approx((1 - math.exp(-0.5)) / 2)


def test_twirl_rejects_unphysical_t2() -> None:
    """T2 above 2 T1 is not a physical qubit."""
    with pytest.raises(ValueError, match="t2_s must be <= 2"):
        pauli_twirl_t1_t2(1.0, t1_s=1.0, t2_s=2.5)


def _bell_weights_after(bell: tuple[float, ...], channel: tuple[float, ...]) -> list[float]:
    rho = sum(w * np.outer(b, b.conj()) for w, b in zip(bell, BELL, strict=True))
    rho = sum(p * np.kron(P, I2) @ rho @ np.kron(P, I2).conj().T for p, P in zip(channel, (I2, X, Y, Z), strict=True))
    return [float((b.conj() @ rho @ b).real) for b in BELL]


@pytest.mark.parametrize("seed", range(5))
def test_pauli_channel_on_a_bell_diagonal_state_matches_density_matrices(seed: int) -> None:
    """apply_pauli_channel's Klein-group bookkeeping equals acting on the 4x4 density matrix."""
    rng = np.random.default_rng(seed)
    bell, channel = tuple(rng.dirichlet(np.ones(4))), tuple(rng.dirichlet(np.ones(4)))
    assert apply_pauli_channel(bell, channel) == pytest.approx(_bell_weights_after(bell, channel), abs=1e-12)


def test_depolarising_memory_scales_the_werner_parameter() -> None:
    """On one qubit of a Werner pair, the depolarising channel multiplies w by exp(-t/tau)."""
    w0, t, tau = 0.8, 0.3, 1.0
    bell = (werner_fidelity(w0),) + ((1 - werner_fidelity(w0)) / 3,) * 3
    after = apply_pauli_channel(bell, depolarising_channel(t, tau))
    assert after[0] == pytest.approx(werner_fidelity(w0 * math.exp(-t / tau)))
    assert werner_fidelity_after(t, coherence_time_s=tau, fidelity0=bell[0]) == pytest.approx(after[0])


def test_cut_off_time_is_where_the_fidelity_reaches_the_threshold() -> None:
    """Storing for time_to_fidelity_s lands on the threshold; a bit less stays above it."""
    v = VECTOR["Werner cut-off time"]
    t = time_to_fidelity_s(v["threshold"], coherence_time_s=v["tau_s"], fidelity0=v["fidelity0"], qubits=v["qubits"])
    assert t == pytest.approx(v["time_s"], rel=1e-6)
    f = werner_fidelity_after(t, coherence_time_s=v["tau_s"], fidelity0=v["fidelity0"], qubits=v["qubits"])
    assert f == pytest.approx(v["threshold"])
    assert werner_fidelity_after(0.99 * t, coherence_time_s=v["tau_s"], fidelity0=v["fidelity0"],
                                 qubits=v["qubits"]) > v["threshold"]


def test_cut_off_edge_cases() -> None:
    """Already below the threshold: 0; a threshold at 1/4 is never reached: infinite."""
    assert time_to_fidelity_s(0.9, coherence_time_s=1.0, fidelity0=0.85) == 0.0
    assert time_to_fidelity_s(0.25, coherence_time_s=1.0) == math.inf


def test_memory_channel_and_cutoff() -> None:
    """A Memory's channel is the twirl of its T1 and T2; the cut-off bounds usable storage."""
    m = Memory(efficiency=0.8, t1_s=2.0, t2_s=1.0, cutoff_s=0.1, count=4)
    assert m.pauli_channel(0.5) == pauli_twirl_t1_t2(0.5, t1_s=2.0, t2_s=1.0)
    assert m.usable(0.1) and not m.usable(0.1001)
    assert Memory().usable(1e9)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"efficiency": -0.1}, "efficiency"),
    ({"t1_s": 0.0}, "t1_s"),
    ({"t2_s": -1.0}, "t2_s"),
    ({"t1_s": 1.0, "t2_s": 3.0}, "t2_s"),
    ({"cutoff_s": 0.0}, "cutoff_s"),
    ({"count": 0}, "count"),
    ({"count": 2.5}, "count"),
])
def test_memory_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    """A bad Memory parameter raises ValueError naming it."""
    with pytest.raises(ValueError, match=rf"Memory\.{field}"):
        Memory(**kwargs)
