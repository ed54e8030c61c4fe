"""``qnet simulate --key-managers`` (:func:`qnet.scenarios.kmsim.simulate_key_managers`): reproducible
from its seed, and in agreement with the fluid model on what a network within its capacity delivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qnet.scenarios.kmsim import simulate_key_managers
from qnet.scenarios.simulate import simulate
from qnet.scenarios.validate import load_spec

ROOT = Path(__file__).resolve().parents[2]
RATES = {"Alice-Relay": 60_000.0, "Relay-Bob": 60_000.0}
QBERS = dict.fromkeys(RATES, 0.02)


def _run(seed: int, **kwargs: Any) -> dict[str, Any]:
    spec = load_spec(ROOT / "examples" / "three-nodes.yaml")
    out = simulate_key_managers(spec, 20, rates=RATES, qbers=QBERS, seed=seed, **kwargs).as_dict()
    return {k: v for k, v in out.items() if k not in ("wall_s", "planning_s")}


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    first, again, other = _run(5), _run(5), _run(6)
    assert first == again
    assert first["requests"] != other["requests"] and first["made_bits"] != other["made_bits"]
    assert first["body"] == "key-managers" and len(first["decisions"]) == 20  # one relay a period


def test_key_managers_and_fluid_model_agree_on_a_network_within_its_capacity() -> None:
    """Same seed, same demand streams: the same key asked for; both deliver all of it but the first
    period's (the pools start empty), within 5 % of each other."""
    spec = load_spec(ROOT / "examples" / "three-nodes.yaml")
    km = simulate_key_managers(spec, 60, rates=RATES, qbers=QBERS, seed=2)
    fluid = simulate(spec, 60, rates=RATES, qbers=QBERS, seed=2)
    (a,), (b,) = km.demands, fluid.demands
    assert a.requested_bits == b.requested_bits > 0
    assert a.delivered_bits == pytest.approx(b.delivered_bits, rel=0.05)
    assert a.blocking_probability < 0.05 and a.route == ["Alice", "Relay", "Bob"]
