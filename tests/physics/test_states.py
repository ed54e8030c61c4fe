"""Bell-diagonal and density-matrix states: published reference values and agreement between the two.

Reference values (tests/vectors/entanglement.yaml): BBPSSW (Bennett et al., PRL 76, 722 (1996), eq. 2),
DEJMPS (Deutsch et al., PRL 77, 2818 (1996), eq. 8-9), swapping (Dür et al., PRA 59, 169 (1999)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qnet.physics import bell
from qnet.physics import density as dm

VECTORS = yaml.safe_load((Path(__file__).parent.parent / "vectors" / "entanglement.yaml").read_text())


def test_bbpssw_reference() -> None:
    for row in VECTORS["bbpssw"]:
        kept, p = bell.bbpssw(bell.werner(row["fidelity"]), bell.werner(row["fidelity"]))
        assert bell.fidelity(kept) == pytest.approx(row["kept"], abs=5e-7)
        assert p == pytest.approx(row["success"], abs=5e-7)


def test_dejmps_rounds_reference() -> None:
    state = bell.werner(0.9)
    for row in VECTORS["dejmps"]:
        state, _ = bell.dejmps(state, state)
        assert bell.fidelity(state) == pytest.approx(row["kept"], abs=5e-7), row


@pytest.mark.parametrize("f", [0.5, 0.8, 0.9, 0.99])
def test_swap_of_werner_pairs(f: float) -> None:
    assert bell.fidelity(bell.swap(bell.werner(f), bell.werner(f))) == pytest.approx(f**2 + (1 - f) ** 2 / 3, abs=1e-15)


def bell_diagonal() -> st.SearchStrategy[bell.BellDiagonal]:
    return st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 1e-3).map(
        lambda v: tuple(x / sum(v) for x in v))  # type: ignore[arg-type,return-value]


@settings(max_examples=40, deadline=None)
@given(bell_diagonal(), bell_diagonal(), st.floats(0.0, 2.0), st.floats(0.1, 5.0))
def test_density_matrix_agrees_with_bell_diagonal(a: bell.BellDiagonal, b: bell.BellDiagonal, t: float,
                                                  t2: float) -> None:
    """The same Pauli-noise scenario in both formalisms: decay, swap, purify; equal to 1e-9."""
    channel = bell.decay_channel(t, 1e9, t2)
    bd_a = bell.apply_pauli(a, channel)
    rho_a = dm.apply_kraus(dm.bell_diagonal_matrix(a), dm.pauli_channel(channel), [1])
    assert np.allclose(dm.bell_coefficients(rho_a), bd_a, atol=1e-9)
    swapped = bell.swap(bd_a, b)
    rho_s = dm.swap(rho_a, dm.bell_diagonal_matrix(b))
    assert np.allclose(dm.bell_coefficients(rho_s), swapped, atol=1e-9)
    kept, p = bell.dejmps(bd_a, b)
    rho_k, p_dm = dm.dejmps(rho_a, dm.bell_diagonal_matrix(b))
    assert p_dm == pytest.approx(p, abs=1e-9)
    if p > 1e-6:
        assert np.allclose(dm.bell_coefficients(rho_k), kept, atol=1e-9)


def test_amplitude_damping_is_exact_in_density_matrix_only() -> None:
    """T1 damping of Phi+'s second qubit, against the fidelity worked out by hand from the Kraus form."""
    g = 0.3
    rho = dm.apply_kraus(dm.bell_diagonal_matrix(bell.PHI_PLUS), dm.amplitude_damping_kraus(g), [1])
    # <Phi+| K0 |Phi+> = (1 + sqrt(1-g))/2; K1 |Phi+> = sqrt(g)/sqrt2 |10> (overlap 0)
    assert dm.fidelity(rho) == pytest.approx(((1 + np.sqrt(1 - g)) / 2) ** 2, abs=1e-12)
    assert np.trace(rho).real == pytest.approx(1.0)
    # the twirled channel keeps the Bell diagonal of the exact one
    twirl = bell.apply_pauli(bell.PHI_PLUS, bell.decay_channel(-np.log(1 - g), 1.0, 2.0))
    assert np.allclose(dm.bell_coefficients(rho), twirl, atol=1e-12)


def test_decay_channel_limits() -> None:
    assert bell.decay_channel(0.0, 1.0, 1.0) == (1.0, 0.0, 0.0, 0.0)
    p_i, p_z, p_x, p_y = bell.decay_channel(1e6, 1.0, 1.0)
    assert (p_i, p_z, p_x, p_y) == pytest.approx((0.25, 0.25, 0.25, 0.25))
    assert bell.decay_channel(1.0, float("inf"), 1.0)[2] == 0.0  # pure dephasing: no X/Y
    with pytest.raises(ValueError, match="t2_s must be <= 2 t1_s"):
        bell.decay_channel(1.0, 1.0, 3.0)


def test_bad_states_are_refused() -> None:
    with pytest.raises(ValueError, match="state"):
        bell.validate((0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="fidelity"):
        bell.werner(1.5)
