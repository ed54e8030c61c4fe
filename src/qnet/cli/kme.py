"""``qnet kme serve``: run KMEs (ETSI GS QKD 014 over mutual TLS) from a deployment directory."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console

if TYPE_CHECKING:
    from qnet.scenarios.launcher import Launcher

__all__ = ["app", "wait_for_port"]

PORT_HINT = ("stop that process (a qnet network: qnet down --state-dir DIR), or make this deployment on other "
             "ports (qnet pki init DIR --base-port N)")

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
    """Serve the KMEs of a deployment until Ctrl-C or SIGTERM: each in its own process, with its
    SQLite store, its links' simulated QKD feeds, and KM-to-KM channels to its peers.

    Example:  qnet pki init demo && qnet kme serve demo
    """
    from qnet.scenarios.launcher import die_with_parent

    die_with_parent()  # started by qnet up (or the tests): end with it, even when it is killed
    configs = _configs(target, node)
    if len(configs) == 1:
        _serve_one(configs[0], feeders=not no_links)
        return
    controller = target / "controller" / "controller.json"
    _serve_many(configs, controller if target.is_dir() and node is None and controller.exists() else None,
                no_links=no_links)


@app.command("feed")
def feed(
    configs: list[Path] = typer.Argument(..., metavar="NODE.json...", show_default=False,
                                         help="The configurations of the KMEs whose links to feed."),
) -> None:
    """Run the QKD device pairs of these KMEs' links in one process until SIGTERM: each link's
    simulation writes the same keys into both ends' stores. `qnet up` runs one such process per CPU
    core beside KMEs started with --no-links; a KME served alone runs its own.

    Example:  qnet kme serve demo/A.json --no-links & qnet kme feed demo/A.json
    """
    from qnet.errors import QNetError
    from qnet.scenarios.launcher import die_with_parent

    die_with_parent()
    missing = [str(p) for p in configs if not p.is_file()]
    if missing:
        raise QNetError(f"no such KME configuration: {', '.join(missing)}")
    from qnet.servers.config import load_config
    from qnet.servers.feeder import feeder_main

    for path in configs:
        load_config(path)  # a bad configuration is named here, before anything runs
    feeder_main([str(p) for p in configs])


def _serve_many(configs: list[Path], controller: Path | None, *, no_links: bool) -> None:
    """Each KME (and the controller) in a child process of its own, through the launcher; all stop
    together on Ctrl-C or SIGTERM."""
    import json

    from qnet.errors import QNetError
    from qnet.scenarios.launcher import Interrupted, Launcher, check_ports, stop_on_signals

    ports: dict[str, tuple[str, int]] = {}
    for path in configs:
        cfg = json.loads(path.read_text())
        ports[f"KME of {cfg.get('kme_id', path.stem)}"] = (cfg.get("host", "127.0.0.1"), int(cfg["port"]))
    if controller is not None:
        cfg = json.loads(controller.read_text())
        ports["controller"] = (cfg.get("host", "127.0.0.1"), int(cfg["port"]))
        if cfg.get("dashboard_port"):
            ports["dashboard"] = ("127.0.0.1", int(cfg["dashboard_port"]))
    check_ports(ports, hint=PORT_HINT)
    launcher = Launcher()
    early: dict[str, int] = {}
    with stop_on_signals() as guard:
        try:
            if not no_links:
                launcher.start_feeders({p.stem: p for p in configs})
            for path in configs:
                launcher.start_kme(path.stem, path, "--no-links")
            if controller is not None:
                launcher.start_controller(controller)
            _wait_all(launcher)
        except Interrupted:
            pass
        finally:
            guard.quiet()
            early = launcher.exited()  # before the stop: what ended on its own
            left = launcher.stop()
    if left:
        raise QNetError(f"could not stop: {', '.join(left)} still running")
    failed = [name for name, code in early.items() if code != 0]
    if failed:
        raise QNetError(f"exited with an error: {', '.join(failed)} (see the messages above)")


def _wait_all(launcher: Launcher) -> None:
    """Until every server has exited; say which exits on its own."""
    reported: set[str] = set()
    while len(reported) < len(launcher.procs):
        for name, code in launcher.exited().items():
            if name not in reported:
                reported.add(name)
                err_console.print(f"the {escape(launcher.what[name])} exited ({code})")
        time.sleep(0.3)


def _serve_one(path: Path, *, feeders: bool) -> None:
    import logging

    from qnet.scenarios.launcher import check_ports
    from qnet.servers.config import load_config
    from qnet.servers.kme import serve as run_server
    from qnet.servers.node import KMENode

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(path)
    check_ports({f"KME of {config.kme_id}": (config.host, config.port)}, hint=PORT_HINT)  # before opening anything
    node = KMENode(config, path.resolve())
    console.print(f"KME {escape(config.kme_id)}: https://{config.host}:{config.port}  "
                  f"(ETSI GS QKD 014 at /api/v1/keys, OpenAPI at /openapi.json; Ctrl-C stops)", highlight=False)
    try:
        run_server(node, feeders=feeders)  # a port in use raises PortInUseError before anything starts
    except KeyboardInterrupt:
        err_console.print(f"KME {escape(config.kme_id)} stopped")
