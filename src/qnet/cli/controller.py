"""``qnet controller serve``: the network's controller (ITU-T Y.3804 control API over mutual TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from types import FrameType

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console

__all__ = ["app"]

app = typer.Typer(help="The controller: link states, alarms, link cut/restore, sessions, routes.",
                  no_args_is_help=True)


@app.command("serve")
def serve(
    config_path: Path = typer.Argument(..., metavar="CONFIG", show_default=False,
                                       help="The controller's configuration (DIR/controller/controller.json "
                                            "of a deployment made by qnet pki init or qnet up)."),
) -> None:
    """Serve the controller until Ctrl-C or SIGTERM. Every KME of the deployment reports to it each
    control period; operators (certificate CN "operator") cut and restore links; SAEs open sessions.

    Example:  qnet controller serve demo/controller/controller.json
    """
    import logging

    from qnet.cli.kme import PORT_HINT
    from qnet.scenarios.launcher import check_ports, die_with_parent
    from qnet.servers.config import load_controller_config
    from qnet.servers.controller import serve as run_server

    die_with_parent()  # started by qnet up (or the tests): end with it, even when it is killed

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_controller_config(config_path)
    ports = {"controller": (config.host, config.port)}
    if config.dashboard_port is not None:
        ports["dashboard"] = ("127.0.0.1", config.dashboard_port)
    check_ports(ports, hint=PORT_HINT)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: background jobs start with it ignored
        signal.signal(sig, _interrupt)
    console.print(f"controller: https://{config.host}:{config.port}/control/v1  (OpenAPI at /openapi.json; "
                  "Ctrl-C stops)", highlight=False)
    with contextlib.suppress(KeyboardInterrupt):  # a signal before the servers ran
        run_server(config)
    err_console.print(f"controller {escape(str(config_path))} stopped")


def _interrupt(signum: int, _: FrameType | None) -> None:
    """SIGINT or SIGTERM: stop. Before the servers run, by KeyboardInterrupt; while they run, uvicorn
    has its own handler and stops them, then re-raises the signal here from inside the event loop,
    where the dashboard beside it is still closing: nothing more to do then (an exception there
    would break that close)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise KeyboardInterrupt(signal.Signals(signum).name) from None
