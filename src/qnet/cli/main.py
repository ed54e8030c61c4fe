"""The ``qnet`` Typer app and its entry point."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape

from qnet import __version__
from qnet.cli import audit, controller, keyrate, kme, link, pki, simulate, up, validate
from qnet.cli._console import err_console
from qnet.errors import QNetError

__all__ = ["app", "main"]

app = typer.Typer(
    name="qnet",
    help=(
        "qnet: a quantum network stack. Plan QKD links from physics, validate network specs.\n\n"
        "Start with:  qnet keyrate --spec examples/tokyo-qkd-network.yaml"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """qnet command line."""


app.command(name="validate")(validate.validate)
app.command(name="keyrate")(keyrate.keyrate)
app.add_typer(link.app, name="link")
app.add_typer(pki.app, name="pki")
app.add_typer(kme.app, name="kme")
app.add_typer(controller.app, name="controller")
app.add_typer(audit.app, name="audit")
app.command(name="up")(up.up)
app.command(name="down")(up.down)
app.command(name="simulate")(simulate.simulate)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        status = app(args=args, prog_name="qnet", standalone_mode=False)
    except QNetError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except Exception as exc:  # Click's usage errors arrive here in non-standalone mode
        return _usage_or_internal(exc)
    return status if isinstance(status, int) else 0


def _usage_or_internal(exc: Exception) -> int:
    # Click's usage errors (Typer vendors Click in recent releases, so match by behaviour)
    show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
    if callable(show) and isinstance(exit_code, int):
        show(file=sys.stderr)
        return exit_code
    if os.environ.get("QNET_DEBUG"):
        raise exc
    err_console.print(
        f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
        "This is a bug in qnet; run again with QNET_DEBUG=1 for the traceback and report it."
    )
    return 70


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
