"""The docs are tests: every `$ qnet ...` command in README.md and docs/*.md runs as shown, a shown
output (a ```text block right after) is what it prints, and the Python examples are doctests."""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

from qnet.cli.main import main
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def commands() -> list[tuple[str, str, str | None]]:
    """(doc, command, expected output or None) for each `$ qnet` line in a console block."""
    found = []
    for doc in DOCS:
        blocks = BLOCK.findall(doc.read_text())
        for i, (kind, body) in enumerate(blocks):
            if kind != "console":
                continue
            shown = blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else None
            lines = [ln[2:] for ln in body.splitlines() if ln.startswith("$ qnet ")]
            found += [(doc.name, ln, shown if j == len(lines) - 1 else None) for j, ln in enumerate(lines)]
    return found


@pytest.mark.parametrize(("doc", "command", "shown"), commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_command_runs(doc: str, command: str, shown: str | None, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each documented command exits 0 (1 where the doc shows problems) and prints what is shown."""
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[1:]
    args = [str(tmp_path / a) if a.endswith(".png") else a for a in args]  # plots go to a temp dir
    code = main(args)
    out, err = capsys.readouterr()
    expect_failure = shown is not None and "problem(s)" in shown
    assert code == (1 if expect_failure else 0), out + err
    if shown is not None:
        assert (out + err).strip() == shown.strip()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_examples_in_docs(doc: Path) -> None:
    """The >>> examples in the docs are doctests."""
    text = re.sub(r"^```.*$", "", doc.read_text(), flags=re.M)  # a fence ends an example's output
    test = doctest.DocTestParser().get_doctest(text, {}, doc.name, str(doc), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_readme_opens_with_the_two_commands() -> None:
    """The README starts with the set-up + main job command and the test command."""
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    assert "pip install -e . && qnet up examples/tokyo-qkd-network.yaml" in blocks[0][1]
    assert "pip install -e '.[dev]' && pytest" in blocks[1][1]
