"""``--help`` teaches: the top level says what qnet is and shows the main commands with examples
that name real commands; no flag anywhere shows a type label such as ``<bool>``."""

from __future__ import annotations

import re

import pytest
import typer
from typer.core import TyperGroup

from qnet.cli._help import TOP_HELP
from qnet.cli.main import app, main


def _paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            out += _paths(sub, (*prefix, name))
    return out


COMMANDS = _paths(typer.main.get_group(app))


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main([*args, "--help"]) == 0
    return capsys.readouterr().out


def test_the_top_level_help_says_what_qnet_is_and_how_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    """What qnet is, and one example line for each main command (plan, simulate, run live, stop)."""
    out = _help(capsys)
    assert "quantum key distribution" in out and "ETSI GS QKD 014" in out
    for example in ("qnet keyrate -d", "qnet validate SPEC", "qnet simulate SPEC", "qnet link simulate -d",
                    "qnet up SPEC --state-dir", "qnet down --state-dir"):
        assert example in out, example


def test_every_example_in_the_top_level_help_names_a_real_command() -> None:
    """Each ``qnet WORD [WORD]`` in the text is a command of the app (no example goes stale)."""
    examples = [line for line in TOP_HELP.splitlines() if line.startswith("  qnet ")]
    named = {tuple(m.split()) for line in examples for m in re.findall(r"qnet ([a-z]+(?: [a-z]+)?)", line)}
    known = set(COMMANDS)
    assert len(named) >= 8
    groups = {p[:-1] for p in COMMANDS if p}
    for words in named:  # "qnet up SPEC" reads ("up",); "qnet link simulate" must be a subcommand
        assert words in known or (words[:1] in known and words[:1] not in groups), words


def test_the_top_level_list_has_one_line_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Each command's summary in ``qnet --help`` fits on one line of an 80-column terminal."""
    out = _help(capsys)
    panel = [line for line in out[out.index("Commands"):].splitlines() if line.startswith("│")]
    names = [line.split()[1] for line in panel if not line.startswith("│    ")]
    assert len(panel) == len(names) == len([p for p in COMMANDS if len(p) == 1]), panel


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "qnet")
def test_no_flag_shows_a_type_label(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """Every command's and group's --help: flags (``--help``, ``--json``...) show no ``<bool>``."""
    out = _help(capsys, *path)
    assert "--help" in out
    assert "<bool>" not in out, out


def test_link_simulate_says_n_a_when_eve_aborts_every_block(capsys: pytest.CaptureFixture[str]) -> None:
    """Intercept-resend on every pulse aborts the block before reconciliation: f and the frame
    error rate are reported as not available, never as nan."""
    code = main(["link", "simulate", "-d", "5", "--pulses", "1e8", "--block-pulses", "1e8",
                 "--eve", "intercept-resend", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "nan" not in out.lower().replace("cascade", ""), out
    assert re.search(r"efficiency f\s*│\s*n/a \(no block reconciled\)", out), out
