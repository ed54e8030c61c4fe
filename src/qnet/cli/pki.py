"""``qnet pki init DIR --spec SPEC``: a local CA, every KME's and SAE's certificate, and each KME's
configuration, in one command."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from qnet.cli._console import console

__all__ = ["app"]

app = typer.Typer(help="Certificates for the servers (a local CA for mutual TLS).", no_args_is_help=True)

DEFAULT_SPEC = Path("examples/two-nodes.yaml")


@app.command("init")
def init(
    directory: Path = typer.Argument(..., help="Directory to create (refused if it already holds a CA).",
                                     show_default=False),
    spec: Path = typer.Option(DEFAULT_SPEC, "--spec", help="Network spec: which KMEs, SAEs and links."),
    base_port: int = typer.Option(8443, "--base-port", min=1, max=65000, help="Port of the first node's KME."),
    speedup: float = typer.Option(1.0, "--speedup", min=1e-3, max=1e6,
                                  help="Run the simulated links this many times faster than their physics."),
) -> None:
    """Make a CA, a TLS certificate per KME (server and client) and per SAE (client, CN = SAE_ID), an
    ML-DSA-65 signing key per KME, and each KME's configuration (DIR/NODE.json).

    Example:  qnet pki init demo --spec examples/two-nodes.yaml   then   qnet kme serve demo
    """
    from qnet.errors import QNetError
    from qnet.scenarios.deploy import init_deployment
    from qnet.scenarios.validate import load_spec

    net = load_spec(spec)
    try:
        dep = init_deployment(directory, net, base_port=base_port, source={"speedup": speedup})
    except FileExistsError as exc:
        raise QNetError(f"{exc}; choose a new directory") from None
    console.print(f"[green]ok[/] {escape(str(directory))}: CA {escape(str(directory / 'ca.pem'))}", highlight=False)
    for node, url in dep.kmes.items():
        console.print(f"  KME {escape(node)}: {url}  config {escape(str(dep.configs[node]))}", highlight=False)
    for sae, node in dep.saes.items():
        console.print(f"  SAE {escape(sae)} at {escape(node)}: {escape(str(directory / 'sae' / sae))}.pem/.key",
                      highlight=False)
    console.print(f"next:  qnet kme serve {escape(str(directory))}", highlight=False)

