"""The ``qnet`` Typer app and its entry point."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape

from qnet import __version__
from qnet.cli import audit, controller, keyrate, kme, link, pki, repeater, send, simulate, up, validate
from qnet.cli._console import err_console
from qnet.cli._help import TOP_HELP, plain_flags
from qnet.errors import QNetError

__all__ = ["app", "main"]

app = typer.Typer(
    name="qnet",
    help=TOP_HELP,
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


# one line each in the top-level list (each command's own --help has the whole text)
app.command(name="validate", short_help="Check a spec file: fields, names, links, parameters, demands.")(
    validate.validate)
app.command(name="keyrate", short_help="Secret-key rate against fibre length, from published physics.")(
    keyrate.keyrate)
app.command(name="simulate", short_help="Simulate days of a network in seconds: pools, faults, re-routes.")(
    simulate.simulate)
app.command(name="up", short_help="Start a network live: KMEs, links, controller, dashboard.")(up.up)
app.command(name="down", short_help="Stop the network that `qnet up --state-dir DIR` runs.")(up.down)
app.command(name="send", short_help="Send a file to an SAE over a QKD-keyed channel (AES-GCM or OTP).")(send.send)
app.command(name="receive", short_help="Receive files that SAEs send with `qnet send`.")(send.receive)
app.add_typer(link.app, name="link", short_help="Simulated QKD links: photons, post-processing, keys.")
app.add_typer(repeater.app, name="repeater",
              short_help="Quantum repeaters: entanglement over chains and router networks.")
app.add_typer(pki.app, name="pki", short_help="A local CA and certificates for mutual TLS.")
app.add_typer(kme.app, name="kme", short_help="Key managers: the ETSI GS QKD 014 key delivery servers.")
app.add_typer(controller.app, name="controller", short_help="The controller: links, alarms, sessions, routes.")
app.add_typer(audit.app, name="audit", short_help="The key-supply audit log: verify it, report consumption.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_group(app)
    plain_flags(command)
    try:
        status = command.main(args=args, prog_name="qnet", standalone_mode=False)
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
