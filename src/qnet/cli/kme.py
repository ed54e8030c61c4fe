"""``qnet kme serve``: run KMEs (ETSI GS QKD 014 over mutual TLS) from a deployment directory."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console

__all__ = ["app", "wait_for_port"]

app = typer.Typer(help="Key management entities: the ETSI GS QKD 014 key delivery servers.", no_args_is_help=True)


def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> bool:
    """Whether something listens on ``host:port`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _configs(target: Path, node: str | None) -> list[Path]:
    from qnet.errors import QNetError

    if target.is_file():
        return [target]
    if not target.is_dir():
        raise QNetError(f"{target}: no such file or directory (make one with: qnet pki init {target})")
    configs = sorted(p for p in target.glob("*.json") if p.name != "endpoints.json")
    if node is not None:
        configs = [p for p in configs if p.stem == node]
        if not configs:
            raise QNetError(f"{target}: no KME configuration for node {node!r}")
    if not configs:
        raise QNetError(f"{target}: no KME configurations (make them with: qnet pki init {target})")
    return configs


@app.command("serve")
def serve(
    target: Path = typer.Argument(..., help="A deployment directory (qnet pki init) or one KME's NODE.json.",
                                  show_default=False),
    node: str = typer.Option(None, "--node", help="Serve only this node's KME."),
    no_links: bool = typer.Option(False, "--no-links", help="Do not start the links' key feeds."),
) -> None:
    """Serve the KMEs of a deployment until Ctrl-C: each in its own process, with its SQLite store,
    its links' simulated QKD feeds, and KM-to-KM channels to its peers.

    Example:  qnet pki init demo && qnet kme serve demo
    """
    configs = _configs(target, node)
    if len(configs) == 1:
        _serve_one(configs[0], feeders=not no_links)
        return
    procs = [subprocess.Popen([sys.executable, "-m", "qnet", "kme", "serve", str(c), *(["--no-links"] * no_links)])
             for c in configs]
    controller = target / "controller" / "controller.json"
    if target.is_dir() and node is None and controller.exists():
        procs.append(subprocess.Popen([sys.executable, "-m", "qnet", "controller", "serve", str(controller)]))
    try:
        for proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _serve_one(path: Path, *, feeders: bool) -> None:
    import logging

    from qnet.servers.config import load_config
    from qnet.servers.kme import serve as run_server
    from qnet.servers.node import KmeNode

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(path)
    node = KmeNode(config, path.resolve())
    console.print(f"KME {escape(config.kme_id)}: https://{config.host}:{config.port}  "
                  f"(ETSI GS QKD 014 at /api/v1/keys, OpenAPI at /openapi.json; Ctrl-C stops)", highlight=False)
    try:
        run_server(node, feeders=feeders)
    except KeyboardInterrupt:
        err_console.print(f"KME {escape(config.kme_id)} stopped")
