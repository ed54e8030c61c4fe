"""``qnet up SPEC`` and ``qnet down``: the whole QKD network of a spec, live on loopback.

``qnet up`` makes (or, with an existing ``--state-dir``, reuses) the deployment: CA, certificates,
one KME configuration per node; starts one KME process per node (its SQLite store, its links' key
feeds, its KM-to-KM channels) and, once every server answers over mutual TLS, writes
``DIR/endpoints.json`` for scripts and ETSI 014 clients::

    {"ca_cert": PATH, "kmes": {NODE: URL}, "saes": {SAE_ID: {"node": NODE, "cert": PATH, "key": PATH}},
     "controller": URL, "operator": {"cert": PATH, "key": PATH}, "dashboard": URL}

The controller (``qnet controller serve``) runs beside the KMEs: each KME reports to it every control
period; the operator's certificate may cut and restore links there. It stays up until Ctrl-C or
``qnet down --state-dir DIR``; started again on the same directory, it resumes from the stores.
The controller also serves the network's dashboard, a web page on loopback: ``qnet up`` prints its
URL (``http://127.0.0.1:PORT/?token=TOKEN``, the token from ``controller/controller.json``).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from qnet.cli._console import console, err_console
from qnet.errors import QNetError

__all__ = ["dashboard_url", "down", "up"]

PID_FILE = "qnet-up.pid"


def up(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The network spec (YAML).", show_default=False),
    state_dir: Path = typer.Option(None, "--state-dir", help="Keep certificates, stores and endpoints.json here "
                                   "(and resume from them next time); a temporary directory if left out."),
    speedup: float = typer.Option(1.0, "--speedup", min=0.001, max=1e6,
                                  help="Run the simulated links this many times faster than real time."),
    base_port: int = typer.Option(8443, "--base-port", min=1, max=65000, help="The first KME's port."),
    source: str = typer.Option("simulated", "--source", help="simulated (photon-level QKD links) or prng "
                               "(a fast stand-in for load tests; not QKD keys)."),
) -> None:
    """Start the whole network of SPEC on loopback: one KME per node over mutual TLS, the links
    feeding keys at their physical rates, relay through trusted nodes; Ctrl-C stops it.

    Example:  qnet up examples/tokyo-qkd-network.yaml --state-dir tokyo --speedup 10
    """
    from qnet.scenarios.validate import load_spec

    if source not in ("simulated", "prng"):
        raise QNetError(f"--source must be simulated or prng, not {source!r}")
    spec = load_spec(spec_path)
    root = state_dir or Path(tempfile.mkdtemp(prefix="qnet-up-"))
    dep = _deployment(root, spec, base_port, {"speedup": speedup, "kind": source})
    procs = _start(root, dep)
    try:
        endpoints = _wait_and_describe(root, dep, procs)
        _print(spec.name, endpoints, root)
        (root / PID_FILE).write_text(str(os.getpid()))
        signal.signal(signal.SIGTERM, _interrupt)
        _watch(procs)
    except KeyboardInterrupt:
        err_console.print("stopping ...")
    finally:
        _stop(procs)
        (root / PID_FILE).unlink(missing_ok=True)
        (root / "endpoints.json").unlink(missing_ok=True)
    err_console.print(f"network {escape(spec.name)} stopped; its state stays in {root}")


def down(
    state_dir: Path = typer.Option(..., "--state-dir", help="The directory a running `qnet up` was given."),
) -> None:
    """Stop the network that `qnet up --state-dir DIR` is running."""
    pid_file = state_dir / PID_FILE
    if not pid_file.exists():
        raise QNetError(f"{state_dir}: no network is running here (no {PID_FILE})")
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        raise QNetError(f"{state_dir}: the qnet up process {pid} is gone; removed its stale {PID_FILE}") from None
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    console.print(f"stopped the network in {state_dir}")


def _deployment(root: Path, spec: Any, base_port: int, source: dict[str, Any]) -> Any:
    from qnet.scenarios.deploy import Deployment, init_deployment

    if (root / PID_FILE).exists():
        raise QNetError(f"{root}: a network is already running here (stop it with: qnet down --state-dir {root})")
    if not (root / "ca.pem").exists():
        return init_deployment(root, spec, base_port=base_port, source=source)
    configs = {n.name: root / f"{n.name}.json" for n in spec.nodes}
    controller = root / "controller" / "controller.json"
    missing = [str(p) for p in [*configs.values(), controller] if not p.exists()]
    if missing:
        raise QNetError(f"{root} holds another network (missing {', '.join(missing)}); use a fresh --state-dir")
    kmes = {}
    for node, path in configs.items():
        cfg = json.loads(path.read_text())
        kmes[node] = f"https://{cfg['host']}:{cfg['port']}"
    err_console.print(f"resuming the network in {root} from its stores")
    port = json.loads(controller.read_text())["port"]
    return Deployment(root, kmes, configs, {s.sae_id: s.node for s in spec.applications},
                      f"https://127.0.0.1:{port}", controller)


def _start(root: Path, dep: Any) -> dict[str, subprocess.Popen[bytes]]:
    """The controller (logged as ``controller``), then one KME per node."""
    (root / "logs").mkdir(exist_ok=True)
    procs = {}
    commands = {"controller": ["controller", "serve", str(dep.controller_config)]}
    commands |= {node: ["kme", "serve", str(path)] for node, path in dep.configs.items()}
    for name, args in commands.items():
        with open(root / "logs" / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen([sys.executable, "-m", "qnet", *args],
                                           stdout=log, stderr=log, start_new_session=True)
    return procs


def _wait_and_describe(root: Path, dep: Any, procs: dict[str, subprocess.Popen[bytes]],
                       timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until every KME answers over mutual TLS; write and return endpoints.json."""
    import httpx

    first = next(iter(dep.configs))
    ctx = ssl.create_default_context(cafile=str(root / "ca.pem"))
    ctx.load_cert_chain(str(root / "kme" / f"{first}.pem"), str(root / "kme" / f"{first}.key"))
    deadline = time.monotonic() + timeout_s
    with httpx.Client(verify=ctx, timeout=2) as http:
        for node, url in {**dep.kmes, "controller": dep.controller_url}.items():
            while True:
                if procs[node].poll() is not None:
                    raise QNetError(f"the {_what(node)} exited; see {root / 'logs' / (node + '.log')}")
                try:
                    if http.get(f"{url}/openapi.json").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise QNetError(f"the {_what(node)} did not answer within {timeout_s:.0f} s")
                time.sleep(0.2)
    endpoints = {"ca_cert": str((root / "ca.pem").resolve()), "kmes": dict(dep.kmes),
                 "saes": {sae: {"node": node, "cert": str((root / "sae" / f"{sae}.pem").resolve()),
                                "key": str((root / "sae" / f"{sae}.key").resolve())}
                          for sae, node in dep.saes.items()},
                 "controller": dep.controller_url,
                 "operator": {"cert": str((root / "operator" / "operator.pem").resolve()),
                              "key": str((root / "operator" / "operator.key").resolve())}}
    dashboard = dashboard_url(dep.controller_config)
    if dashboard:
        endpoints["dashboard"] = dashboard
        while not _answers(dashboard) and time.monotonic() < deadline:  # served beside the controller's API
            time.sleep(0.2)
    (root / "endpoints.json").write_text(json.dumps(endpoints, indent=2))
    return endpoints


def dashboard_url(controller_config: Path | None) -> str | None:
    """The dashboard's URL, token included, from the controller's configuration (None if it has none)."""
    if controller_config is None or not Path(controller_config).exists():
        return None
    config = json.loads(Path(controller_config).read_text())
    port, token = config.get("dashboard_port"), config.get("dashboard_token")
    return f"http://127.0.0.1:{port}/?token={token}" if port and token else None


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _what(name: str) -> str:
    return "controller" if name == "controller" else f"KME of {name}"


def _print(name: str, endpoints: dict[str, Any], root: Path) -> None:
    table = Table(title=f"{name}: up", title_justify="left")
    table.add_column("node")
    table.add_column("KME (ETSI GS QKD 014)")
    table.add_column("SAEs and their certificates")
    for node, url in endpoints["kmes"].items():
        saes = [f"{sae}: {info['cert']}" for sae, info in endpoints["saes"].items() if info["node"] == node]
        table.add_row(node, url, "\n".join(saes) or "-")
    console.print(table)
    console.print(f"controller (Y.3804 control API): {endpoints['controller']}/control/v1\n"
                  f"CA: {endpoints['ca_cert']}\nendpoints: {(root / 'endpoints.json').resolve()}\n"
                  f"logs: {(root / 'logs').resolve()}\nCtrl-C (or: qnet down --state-dir {root}) stops the network",
                  highlight=False)
    if endpoints.get("dashboard"):
        console.print(f"\n[bold]dashboard:[/] [bold cyan]{escape(endpoints['dashboard'])}[/]  (open it in a browser)\n",
                      highlight=False, soft_wrap=True)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _watch(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Wait for Ctrl-C; say so if a KME exits on its own."""
    reported: set[str] = set()
    while True:
        for node, proc in procs.items():
            if proc.poll() is not None and node not in reported:
                reported.add(node)
                err_console.print(f"[bold red]the {escape(_what(node))} exited ({proc.returncode})[/]")
        time.sleep(0.5)


def _stop(procs: dict[str, subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGINT every server, then SIGKILL whatever still runs after ``grace_s`` in all (the stores are
    transactional: a kill loses nothing)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in procs.values():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
