"""BBM92 over a simulated repeater chain: both ends' keys, their timing, and the key rate per pair
against the analytic model of qnet.physics.bbm92."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest

from qnet.keys.source import KeySource
from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.bbm92 import qber_threshold, secret_bits_per_pair, sifting_probability
from qnet.physics.bell import BellDiagonal, werner
from qnet.physics.entropy import binary_entropy
from qnet.quantum.bbm92 import EntangledKeyLink
from qnet.quantum.entanglement.analysis import chain_fidelity
from qnet.quantum.entanglement.components import LinkModel, MemoryModel
from qnet.quantum.entanglement.report import FlowReport, Report
from qnet.quantum.entanglement.simulation import Simulation, simulate
from qnet.quantum.entanglement.topology import Request, chain
from qnet.quantum.postprocess.verification import TAG_BITS

RAW_FIDELITY = 0.98
BLOCK_BITS = 2048


def _chain(raw_fidelity: float = RAW_FIDELITY, success: float = 0.3) -> nx.Graph:
    hop = LinkModel(20.0, scheme="ideal", success_probability_override=success, attempt_s_override=1e-4,
                    raw_fidelity=raw_fidelity)
    return chain(3, link=hop, memory=MemoryModel(count=10))


@pytest.fixture(scope="module")
def report() -> Report:
    """1.5 s of a two-hop chain: about 15,000 pairs of fidelity 0.9605 (no memory decay)."""
    return simulate(_chain(), [Request("r0", "r2")], 1.5, seed=3)


def test_both_ends_take_the_same_keys_with_the_same_ids(report: Report) -> None:
    """The two ends are key sources of one link and hand out identical (key_ID, key) pairs, 256-bit
    keys with UUID key_IDs, in the format of the decoy-BB84 link."""
    link = EntangledKeyLink("r0-r2", report, block_bits=BLOCK_BITS, seed=1)
    assert isinstance(link.alice, KeySource) and isinstance(link.bob, KeySource)
    assert link.alice.link_id == link.bob.link_id == "r0-r2"
    a, b = link.alice.take(2.0), link.bob.take(2.0)
    assert len(a) >= 6
    assert [(k.key_ID, k.key) for k in a] == [(k.key_ID, k.key) for k in b]
    assert {len(k.key) for k in a} == {32}
    assert len({k.key_ID for k in a}) == len(a) and all(uuid.UUID(k.key_ID).version == 8 for k in a)
    assert len({k.key for k in a}) == len(a)
    assert link.alice.take(2.0) == [] and link.explain() == ""


def test_no_key_before_the_first_block_completes(report: Report) -> None:
    """Keys appear at the delivery time of the pair that completes their block, not before; an end
    that asks later gets what the other end got, in the same order."""
    first = EntangledKeyLink("r0-r2", report, block_bits=BLOCK_BITS, seed=1, replicated=True)
    every = first.alice.take(2.0)
    done_s = first.reports[0].completed_s
    times = [d.time_s for d in report.flows[0].deliveries]
    assert done_s >= times[BLOCK_BITS - 1]  # a block needs at least BLOCK_BITS pairs
    assert done_s in times

    link = EntangledKeyLink("r0-r2", report, block_bits=BLOCK_BITS, seed=1, replicated=True)
    assert link.alice.take(done_s - 1e-9) == [] and link.bob.take(done_s - 1e-9) == []
    assert "no block complete yet" in link.explain()
    early = link.alice.take(done_s)
    assert early and all(k.key_ID for k in early)
    rest = link.alice.take(2.0)
    assert link.bob.take(done_s) == early and link.bob.take(2.0) == rest
    assert early + rest == every  # replicated: two copies of the link with one seed make the same keys


def _link_rates(report: Report, seeds: range) -> tuple[float, float, float, float, float]:
    """Over links of several seeds on one run: (secret bits per pair, the model's, its standard
    error, the links' measured Cascade efficiency, the QBER).

    The model: a pair is sifted with probability 1/2 and kept out of the sample with 0.9, and a key
    bit is worth 1 - h(e) - f h(e) (qnet.physics.bbm92), less a 122-bit verification tag per block.
    Its error: each basis's n key bits are amplified with the other basis's QBER sampled on k (about
    half the sample) bits, binomial with variance e(1-e)/k, so n h(e_hat) has variance
    (n h'(e))^2 e(1-e)/k (delta method) and, h being concave, a mean lower by
    n |h''(e)| e(1-e) / 2k = n / (2 k ln 2): point estimates leave slightly more key on average.
    The key bits per pair are binomial (sifting and sampling)."""
    e = 2 * (1 - chain_fidelity(RAW_FIDELITY, 2)) / 3
    slope = math.log2((1 - e) / e)  # h'(e)
    bits = pairs = key_bits = cascade_leak = tags = var = jensen = 0.0
    for seed in seeds:
        link = EntangledKeyLink("r0-r2", report, block_bits=BLOCK_BITS, seed=seed)
        link.alice.take(2.0)
        for r in link.reports:
            assert not r.aborted
            bits, pairs, key_bits = bits + r.final_bits, pairs + r.pairs, key_bits + r.reconciled_bits
            cascade_leak, tags = cascade_leak + r.leak_ec - TAG_BITS, tags + TAG_BITS
            k = r.sample_bits / 2
            for n in (r.key_bits_z, r.key_bits_x):
                var += (n * slope) ** 2 * e * (1 - e) / k
                jensen += n / (2 * k * math.log(2))
    f = cascade_leak / (key_bits * float(binary_entropy(e)))
    kept = sifting_probability() * 0.9
    per_pair = 0.9 * secret_bits_per_pair(werner(chain_fidelity(RAW_FIDELITY, 2)), ec_efficiency=f)
    var += pairs * kept * (1 - kept) * (per_pair / kept) ** 2
    return bits / pairs, per_pair + (jensen - tags) / pairs, math.sqrt(var) / pairs, f, e


def test_key_rate_per_pair_matches_the_model(report: Report) -> None:
    """Secret bits per delivered pair, over ten links on the same run, agree with the model at the
    chain's Werner fidelity F = 0.98^2 + 0.02^2/3 (QBER 2.63 %) and the Cascade efficiency the links
    measured, within three standard errors (:func:`_link_rates`)."""
    rate, model, sigma, f, e = _link_rates(report, range(10))
    assert e == pytest.approx(0.02631, abs=1e-5)
    assert 1.05 < f < 1.4  # Cascade on ~1840-bit frames: above its 1.07 on long frames
    assert abs(rate - model) < 3 * sigma, (rate, model, sigma)
    assert sigma < 0.03 * model  # the check has teeth: a 10 % error in the accounting would fail it


def test_biased_bases_sift_more() -> None:
    """With Z chosen 90 % of the time at both ends, 82 % of the pairs are sifted (efficient BB84)."""
    run = simulate(_chain(success=0.1), [Request("r0", "r2")], 0.6, seed=5)
    link = EntangledKeyLink("r0-r2", run, block_bits=512, basis_bias=0.9, seed=2)
    link.alice.take(1.0)
    sifted = sum(r.sifted_bits for r in link.reports)
    pairs = sum(r.pairs for r in link.reports)
    assert sifted / pairs == pytest.approx(0.82, abs=4 * math.sqrt(0.82 * 0.18 / pairs))


@dataclass(frozen=True)
class _StatePair:
    """A delivery that carries its Bell-diagonal state (the simulator's carries only the fidelity)."""

    time_s: float
    fidelity: float
    age_s: float
    state: BellDiagonal


def _report_of(deliveries: tuple[object, ...]) -> Report:
    flow = FlowReport(source="a", destination="b", hops=1, distance_km=1.0, memories_per_link=1,
                      pairs=len(deliveries), rate_hz=0.0, fidelity_mean=0.0, fidelity_ci95=0.0, first_pair_s=0.0,
                      age_mean_s=0.0, repeaterless_bound_hz=0.0, deliveries=deliveries)
    return Report(duration_s=1.0, formalism="bell_diagonal", order="nested", flows=(flow,), refused=(),
                  events=0, swaps=0, swap_failures=0, purifications=0, purification_failures=0, cutoffs=0,
                  memory_occupancy=0.0)


def test_a_delivered_state_sets_each_basis_error() -> None:
    """A pair with only X errors (p_X = 0.1) flips Z outcomes 10 % of the time and X outcomes never."""
    pairs = tuple(_StatePair(i * 1e-4, 0.9, 0.0, (0.9, 0.0, 0.1, 0.0)) for i in range(6000))
    link = EntangledKeyLink("a-b", _report_of(pairs), block_bits=1024, seed=4)
    link.alice.take(1.0)
    z = np.array([r.qber_z for r in link.reports])
    x = np.array([r.qber_x for r in link.reports])
    assert len(link.reports) == 2
    assert z.mean() == pytest.approx(0.1, abs=4 * math.sqrt(0.09 / 1024))
    assert x.max() == 0.0


def test_a_live_simulation_feeds_the_link_as_it_runs() -> None:
    """Taking from the run's progress callback follows it: keys come out while it runs, never ahead
    of the simulated clock, and both ends agree."""
    sim = Simulation(_chain(), [Request("r0", "r2")], seed=7)
    link = EntangledKeyLink("r0-r2", sim, block_bits=1024, seed=1, replicated=True)
    taken: list[tuple[float, list[object]]] = []
    sim.run(0.6, progress=lambda t: taken.append((t, list(link.alice.take(t)))))
    assert taken[0][1] == [] and sum(len(keys) for _, keys in taken) > 0
    assert all(r.completed_s <= 0.6 for r in link.reports)
    assert sum(r.pairs for r in link.reports) + link.pending()[0] == len(sim.flows[0].deliveries)
    live = [k for _, keys in taken for k in keys]
    assert link.bob.take(0.6) == live
    # the same run read at once, after it ended, gives the same keys: batching changes nothing
    run = simulate(_chain(), [Request("r0", "r2")], 0.6, seed=7)
    after = EntangledKeyLink("r0-r2", run, block_bits=1024, seed=1, replicated=True)
    assert after.alice.take(0.6) == live


def test_a_noisy_chain_gives_no_key_and_says_why() -> None:
    """Raw pairs of F = 0.85 swap to F = 0.85^2 + 0.15^2/3 = 0.730, a QBER of 18.0 %, past the 11 % where BBM92's secret
    fraction vanishes: every block is abandoned before error correction, with the estimates."""
    assert 2 * (1 - chain_fidelity(0.85, 2)) / 3 > qber_threshold()
    run = simulate(_chain(raw_fidelity=0.85, success=0.1), [Request("r0", "r2")], 1.0, seed=2)
    link = EntangledKeyLink("r0-r2", run, block_bits=1024, seed=1)
    assert link.alice.take(1.0) == [] and link.bob.take(1.0) == []
    assert link.reports and all(r.aborted and r.final_bits == 0 and r.leak_ec == 0 for r in link.reports)
    assert "no secret key even with error correction at the Shannon limit" in link.reports[0].aborted
    assert link.explain().startswith(f"{len(link.reports)} of {len(link.reports)} blocks gave no key")
    assert "QBER estimated at" in link.explain() and "mean fidelity 0.730" in link.explain()


def test_a_missing_flow_names_the_refusal() -> None:
    """A flow the run does not have fails with the run's refusals; bad parameters are named."""
    run = simulate(_chain(), [Request("r0", "r2"), Request("r0", "r2")], 0.01)
    with pytest.raises(ValueError, match=r"flow 1 is not in the run, which has 1 flows \(refused: no path from r0 "):
        EntangledKeyLink("x", run, flow=1)
    with pytest.raises(ValueError, match="key_bits must be a positive multiple of 8"):
        EntangledKeyLink("x", _report_of(()), key_bits=100)
    with pytest.raises(TypeError, match="source must be an entanglement Report or Simulation"):
        EntangledKeyLink("x", BB84DecoyParams())
