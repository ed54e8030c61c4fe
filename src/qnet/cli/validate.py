"""``qnet validate SPEC``: check a network spec file and report every problem."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console

__all__ = ["validate"]


def validate(
    spec: Path = typer.Argument(..., help="Network spec file (YAML).", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only set the exit status."),
) -> None:
    """Check a network spec file: fields, names, links, protocol parameters, demands.

    Every problem is printed with its path, e.g. [bold]links[3].length_km: must be > 0[/], and the
    exit status is 1. A valid spec prints a one-line summary and exits 0.

    Example:  qnet validate examples/tokyo-qkd-network.yaml
    """
    from qnet.errors import SpecError
    from qnet.scenarios.validate import load_spec

    try:
        net = load_spec(spec)
    except SpecError as exc:
        if not quiet:
            err_console.print(f"[bold red]{escape(exc.source)}[/]: {len(exc.problems)} problem(s)", highlight=False)
            for problem in exc.problems:
                err_console.print(f"  {problem}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    if not quiet:
        console.print(
            f"[green]ok[/] {escape(str(spec))}: network {escape(repr(net.name))}, {len(net.nodes)} nodes, "
            f"{len(net.links)} links, "
            f"{len(net.applications)} SAEs, {len(net.demands)} demands", highlight=False,
        )
