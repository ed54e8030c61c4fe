"""Each example network's plan matches its expected-output file (examples/expected/), so a change in
the physics or the planner shows up as a diff to review. Regenerate a file with
`qnet keyrate --spec examples/NAME.yaml > examples/expected/NAME.keyrate.txt` after checking why."""

from __future__ import annotations

from pathlib import Path

import pytest

from qnet.cli.main import main
from tests.conftest import EXAMPLES

SPECS = sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_plan_matches_expected_output(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`qnet keyrate --spec` prints exactly the stored plan."""
    expected = (EXAMPLES / "expected" / f"{spec.stem}.keyrate.txt").read_text()
    assert main(["keyrate", "--spec", str(spec)]) == 0
    assert capsys.readouterr().out == expected
