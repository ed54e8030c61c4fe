"""``qnet controller serve``: the network's controller (ITU-T Y.3804 control API over mutual TLS)."""

from __future__ import annotations

from pathlib import Path

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
    """Serve the controller until Ctrl-C. Every KME of the deployment reports to it each control
    period; operators (certificate CN "operator") cut and restore links; SAEs open sessions.

    Example:  qnet controller serve demo/controller/controller.json
    """
    import logging

    from qnet.servers.config import load_controller_config
    from qnet.servers.controller import serve as run_server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_controller_config(config_path)
    console.print(f"controller: https://{config.host}:{config.port}/control/v1  (OpenAPI at /openapi.json; "
                  "Ctrl-C stops)", highlight=False)
    try:
        run_server(config)
    except KeyboardInterrupt:
        err_console.print(f"controller {escape(str(config_path))} stopped")
