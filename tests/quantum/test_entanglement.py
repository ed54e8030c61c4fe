"""The entanglement-network simulation against closed forms, and its formalisms against each other.

- Nested waiting time: E[max of 2^n geometric(p)] (tests/vectors/entanglement.yaml; computed here by
  inclusion-exclusion, the issue lists 149.7487, 207.7899, 270.9245 for p = 0.01).
- Chain fidelity without decay: F_n = (1 + 3 w^n)/4, w = (4F-1)/3 (Dür et al., PRA 59, 169 (1999)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from qnet.physics import bell
from qnet.quantum.entanglement.analysis import chain_fidelity, expected_max_geometric
from qnet.quantum.entanglement.components import LinkModel, MemoryModel
from qnet.quantum.entanglement.simulation import Policy, Purification, simulate
from qnet.quantum.entanglement.states import Decay, formalism
from qnet.quantum.entanglement.topology import Request, chain, grid, swap_plan

VECTORS = yaml.safe_load((Path(__file__).parent.parent / "vectors" / "entanglement.yaml").read_text())


def ideal_link(p: float, fidelity: float = 1.0, length_km: float = 0.0, attempt_s: float = 1e-6) -> LinkModel:
    return LinkModel(length_km, scheme="ideal", success_probability_override=p, attempt_s_override=attempt_s,
                     raw_fidelity=fidelity)


@pytest.mark.parametrize("row", VECTORS["nested_attempts"], ids=lambda r: f"{r['links']}links")
def test_nested_waiting_time_matches_closed_form(row: dict[str, float]) -> None:
    links = int(row["links"])
    assert expected_max_geometric(row["p"], links) == pytest.approx(row["attempts"], abs=5e-5)
    graph = chain(links + 1, link=ideal_link(row["p"]), memory=MemoryModel(count=2))
    firsts = []
    for seed in range(200):
        report = simulate(graph, [Request("r0", f"r{links}", memories=1)], 0.01, seed=seed)
        assert report.flows[0].first_pair_s is not None
        firsts.append(report.flows[0].first_pair_s / 1e-6)
    mean, sem = float(np.mean(firsts)), float(np.std(firsts, ddof=1) / np.sqrt(len(firsts)))
    assert abs(mean - row["attempts"]) < 4 * sem, (mean, sem)


@pytest.mark.parametrize(("links", "order"), [(4, "nested"), (3, "sequential"), (5, "nested")])
def test_chain_fidelity_without_decay(links: int, order: str) -> None:
    graph = chain(links + 1, link=ideal_link(0.3, 0.97, length_km=5.0), memory=MemoryModel(count=4))
    report = simulate(graph, [Request("r0", f"r{links}", memories=2)], 0.02, Policy(order=order), seed=1)
    flow = report.flows[0]
    assert flow.pairs > 20
    assert flow.fidelity_mean == pytest.approx(chain_fidelity(0.97, links), abs=1e-12)


def noisy_chain(nodes: int, cutoff_s: float = 0.05) -> tuple[object, list[Request]]:
    memory = MemoryModel(count=4, decay=Decay(t2_s=0.2, coherence_s=0.3), cutoff_s=cutoff_s)
    graph = chain(nodes, link=ideal_link(0.05, 0.95, length_km=10.0, attempt_s=1e-4), memory=memory)
    return graph, [Request("r0", f"r{nodes - 1}", memories=2)]


def test_formalisms_agree_step_by_step() -> None:
    """Bell-diagonal and density-matrix runs of the same Pauli-noise scenario and seed: the same pairs at
    the same times with the same fidelities to 1e-9 (T1 twirled is what BD tracks; DM keeps T1 exact, and
    the Bell diagonal of amplitude damping equals its twirl, so fidelities agree)."""
    graph, requests = noisy_chain(5)
    policy = Purification(rounds=1, spans="links")
    runs = [simulate(graph, requests, 0.05, Policy(formalism=f, purification=policy, swap_depolarising=0.02),
                     seed=3) for f in ("bell_diagonal", "density_matrix")]
    a, b = (r.flows[0].deliveries for r in runs)
    assert len(a) == len(b) > 5
    assert [d.time_s for d in a] == [d.time_s for d in b]
    assert np.allclose([d.fidelity for d in a], [d.fidelity for d in b], atol=1e-9)


def test_stabilizer_formalism_agrees_with_density_matrix_on_clifford_cases() -> None:
    """Swap and DEJMPS on Pauli-noisy pairs: stim samples vs the exact density matrix, within 4 sigma."""
    rng = np.random.default_rng(0)
    exact_dm, stab = formalism("density_matrix"), formalism("stabilizer", seed=5)
    a_state, b_state = bell.werner(0.9), (0.85, 0.08, 0.04, 0.03)
    exact = exact_dm.fidelity(exact_dm.swap(exact_dm.create(a_state), exact_dm.create(b_state), bell.PHI_PLUS))
    samples = []
    for _ in range(3000):
        pair = stab.swap(stab.create(a_state), stab.create(b_state), bell.PHI_PLUS)
        samples.append(stab.fidelity(pair))
        stab.discard(pair)
    assert abs(np.mean(samples) - exact) < 4 * np.sqrt(exact * (1 - exact) / len(samples))
    kept, p = bell.dejmps(a_state, b_state)
    good = []
    for _ in range(3000):
        pair = stab.purify(stab.create(a_state), stab.create(b_state), "dejmps", rng)
        if pair is not None:
            good.append(stab.fidelity(pair))
            stab.discard(pair)
    assert abs(len(good) / 3000 - p) < 4 * np.sqrt(p * (1 - p) / 3000)
    f = np.mean(good)
    assert abs(f - kept[0]) < 4 * np.sqrt(kept[0] * (1 - kept[0]) / len(good))


def test_stabilizer_chain_runs_and_tracks_fidelity() -> None:
    graph, requests = noisy_chain(5)
    bd = simulate(graph, requests, 0.05, Policy(), seed=3).flows[0]
    st = simulate(graph, requests, 0.05, Policy(formalism="stabilizer"), seed=3).flows[0]
    assert st.pairs == bd.pairs > 5  # the same event sequence; only the states differ in kind
    assert abs(st.fidelity_mean - bd.fidelity_mean) < 4 * np.sqrt(0.25 / st.pairs) + 0.02


def test_purify_then_swap_on_three_routers_delivers_better_pairs() -> None:
    graph = chain(3, link=ideal_link(0.2, 0.85, length_km=10.0, attempt_s=1e-5), memory=MemoryModel(count=8))
    request = [Request("r0", "r2", memories=4)]
    plain = simulate(graph, request, 0.05, Policy(), seed=2).flows[0]
    purified = simulate(graph, request, 0.05, Policy(purification=Purification(rounds=1)), seed=2).flows[0]
    assert purified.pairs > 20
    assert purified.pairs < plain.pairs
    swapped_purified = bell.swap(*(bell.dejmps(bell.werner(0.85), bell.werner(0.85))[0],) * 2)
    assert purified.fidelity_mean == pytest.approx(bell.fidelity(swapped_purified), abs=1e-12)
    assert purified.fidelity_mean > plain.fidelity_mean + 0.05


@pytest.mark.parametrize("scheme", ["recurrence", "pumping"])
def test_two_rounds_of_purification(scheme: str) -> None:
    graph = chain(2, link=ideal_link(0.5, 0.8, length_km=1.0, attempt_s=1e-6), memory=MemoryModel(count=6))
    policy = Policy(purification=Purification(rounds=2, scheme=scheme, spans="end"))
    flow = simulate(graph, [Request("r0", "r1", memories=3)], 0.01, policy, seed=1).flows[0]
    once, _ = bell.dejmps(bell.werner(0.8), bell.werner(0.8))
    second = bell.dejmps(once, once)[0] if scheme == "recurrence" else bell.dejmps(once, bell.werner(0.8))[0]
    assert flow.pairs > 10
    assert flow.fidelity_mean == pytest.approx(bell.fidelity(second), abs=1e-12)


def test_long_chain_keeps_delivering() -> None:
    """SeQUeNCe's 33-router chain stalls after 0.25 s; qnet's keeps delivering to the end of the run."""
    graph = chain(33, link=ideal_link(0.16, 0.99, length_km=20.0, attempt_s=2e-4),
                  memory=MemoryModel(count=10, decay=Decay(coherence_s=1.0), cutoff_s=1.0))
    flow = simulate(graph, [Request("r0", "r32", memories=5)], 0.5, seed=1).flows[0]
    times = np.array([d.time_s for d in flow.deliveries])
    assert len(times) > 100
    assert np.sum(times > 0.375) > 0.15 * len(times)


def test_cutoff_discards_old_pairs() -> None:
    graph, requests = noisy_chain(9, cutoff_s=2e-3)
    report = simulate(graph, requests, 0.05, seed=1)
    assert report.cutoffs > 0
    assert all(d.age_s <= 2e-3 + 1e-12 for d in report.flows[0].deliveries)


def test_network_requests_share_memories_and_refuse_when_full() -> None:
    graph = grid(3, 3, link=ideal_link(0.3, 0.98, length_km=5.0), memory=MemoryModel(count=4))
    requests = [Request("r0-0", "r2-2", memories=2), Request("r0-2", "r2-0", memories=2),
                Request("r1-0", "r1-2", memories=2), Request("r0-1", "r2-1", memories=2)]
    report = simulate(graph, requests, 0.01, seed=0)
    assert all(f.pairs > 0 for f in report.flows)
    assert len(report.flows) + len(report.refused) == 4
    assert 0 < report.memory_occupancy <= 1


def test_swap_plans() -> None:
    assert swap_plan(8, "nested") == {4: (0, 8), 2: (0, 4), 1: (0, 2), 3: (2, 4), 6: (4, 8), 5: (4, 6), 7: (6, 8)}
    assert swap_plan(2, "sequential") == {1: (0, 2)}
    with pytest.raises(ValueError, match="swapping order"):
        swap_plan(4, "random")


def test_bad_requests_are_refused_clearly() -> None:
    graph = chain(3, link=ideal_link(0.5), memory=MemoryModel())
    with pytest.raises(ValueError, match="not in the network"):
        simulate(graph, [Request("r0", "nowhere")], 0.01)
    with pytest.raises(ValueError, match="two different routers"):
        Request("r0", "r0")
    with pytest.raises(ValueError, match="duration_s"):
        simulate(graph, [Request("r0", "r2")], -1.0)
