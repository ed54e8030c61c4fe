"""Benchmark: planning the finite-key rates of a network's links, and the previous planner side by side.

Goal (issue 8): planning the finite-key rates of the 50-node, 85-link mesh of
``benchmarks/simulate.py`` (its links' settings, rates and QBERs for the live block lengths) took
54 s on the reference machines, more than the 24 h simulation itself; make it >= 10x faster.

Anchor, measured side by side in the same run: the previous commit's planner (``--anchor-commit``,
22c0b75: per link and block length, five Nelder-Mead searches from fixed starts, then a fine one),
extracted with ``git archive`` into a temporary directory. Each planner runs in a fresh interpreter
of this venv, on one core, with that source tree first on ``PYTHONPATH``; the time is planning only
(imports excluded), best of ``--repeat`` runs. Both plan the same spec, and their rates are compared
link by link.

``--reach`` also prints the reach (km) of each block size of Lim et al. (2014) Fig. 1 with their
parameters, by bisection, at eps_sec = 1e-10 and 1e-14.

Run: python benchmarks/finite_key.py [--repeat 3] [--anchor-commit 22c0b75] [--reach]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from _common import emit, machine, one_core

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 10.0
LIM = {"attenuation_db_per_km": 0.2, "detector_efficiency": 0.1, "dark_count_prob": 1.2e-6,
       "afterpulse_prob": 0.04, "misalignment": 0.005, "ec_efficiency": 1.16, "eps_cor": 1e-15,
       "decoy": "vacuum+weak"}


def child() -> None:
    """Plan the 50-node mesh once with whichever qnet is first on the path; print JSON."""
    from simulate import network  # imported here: the parent chooses which source tree is first

    import qnet
    from qnet.scenarios.simulate import link_qbers, link_rates

    spec = network(50)
    start = time.perf_counter()
    rates, qbers = link_rates(spec), link_qbers(spec)
    print(json.dumps({"plan_s": time.perf_counter() - start, "links": len(spec.links), "rates": rates,
                      "qbers": qbers, "qnet": str(Path(qnet.__file__).parent)}))


def plan_with(src: Path, repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` fresh-interpreter plans with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent)
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    best = min(runs, key=lambda r: r["plan_s"])
    return {**best, "runs_s": [r["plan_s"] for r in runs]}


def anchor_tree(commit: str, into: Path) -> Path:
    """The ``src`` tree of ``commit`` (git archive, the working tree untouched)."""
    data = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def reach_km(block: float, eps_sec: float) -> float:
    """The longest fibre (to 0.25 km) with key, Lim et al.'s device and n_X = ``block``."""
    from qnet.physics import key_rate

    lo, hi = 0.0, 260.0
    while hi - lo > 0.25:
        mid = (lo + hi) / 2
        ok = key_rate("bb84-decoy", mid, {**LIM, "block_size": block, "eps_sec": eps_sec}).rate_per_pulse > 0
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo


def compare(new: dict[str, Any], old: dict[str, Any]) -> dict[str, float]:
    """Rates of the new plan over the old, link by link (links with key in both)."""
    ratios = [new["rates"][k] / v for k, v in old["rates"].items() if v > 0 and new["rates"].get(k, 0) > 0]
    lost = sum(1 for k, v in old["rates"].items() if v > 0 and new["rates"].get(k, 0) <= 0)
    return {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios), "links_lost": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--anchor-commit", default="22c0b75")
    parser.add_argument("--reach", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    pinned = one_core()
    print(f"finite-key planning of the 50-node mesh; {machine()}, {pinned}")
    new = plan_with(ROOT / "src", args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        old = plan_with(anchor_tree(args.anchor_commit, Path(tmp)), args.repeat)
    ratio = old["plan_s"] / new["plan_s"]
    agree = compare(new, old)
    print(f"{new['links']} links: qnet {new['plan_s']:.2f} s (runs {', '.join(f'{t:.2f}' for t in new['runs_s'])}); "
          f"anchor {args.anchor_commit} {old['plan_s']:.2f} s; ratio {ratio:.1f}x (goal {GOAL_RATIO:.0f}x)")
    print(f"rates new / old per link: min {agree['min']:.4f}, median {agree['median']:.4f}, max {agree['max']:.4f}; "
          f"links with key only in the old plan: {agree['links_lost']}")
    result: dict[str, Any] = {"benchmark": "finite_key", "machine": machine(), "links": new["links"],
                              "plan_s": new["plan_s"], "anchor_s": old["plan_s"], "ratio": ratio,
                              "anchor_commit": args.anchor_commit, "rates_new_over_old": agree}
    if args.reach:
        blocks = (1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
        result["reach_km"] = {f"{b:g}": [reach_km(b, 1e-10), reach_km(b, 1e-14)] for b in blocks}
        print("reach (km) at eps_sec 1e-10 / 1e-14, Lim et al. 2014 parameters (paper: 135 km at n_X = 1e4):")
        for block, (loose, strict) in result["reach_km"].items():
            print(f"  n_X = {block:>5}: {loose:6.1f} / {strict:6.1f}")
    emit(result)


if __name__ == "__main__":
    main()
