"""``qnet up SPEC`` and ``qnet down``: the whole QKD network of a spec, live on loopback.

``qnet up`` makes (or, with an existing ``--state-dir``, reuses) the deployment: CA, certificates,
one KME configuration per node; checks that no other process holds its ports; starts one KME
process per node (its SQLite store, its links' key feeds, its KM-to-KM channels) and the controller
through :mod:`qnet.scenarios.launcher`, saying as each answers; once every server answers over
mutual TLS it writes ``DIR/endpoints.json`` for scripts and ETSI 014 clients::

    {"ca_cert": PATH, "kmes": {NODE: URL}, "saes": {SAE_ID: {"node": NODE, "cert": PATH, "key": PATH}},
     "controller": URL, "operator": {"cert": PATH, "key": PATH}, "dashboard": URL}

then says when each link's first key arrives (from the KMEs' ``/metrics``) and prints the table.

The controller (``qnet controller serve``) runs beside the KMEs: each KME reports to it every control
period; the operator's certificate may cut and restore links there. The network stays up until
Ctrl-C, SIGTERM or ``qnet down --state-dir DIR``, which stop every process it started (each server
leads its own process group, which its feeders join; on Linux the servers also die with ``qnet up``);
started again on the same directory, it resumes from the stores. The controller also serves the
network's dashboard, a web page on loopback: ``qnet up`` prints its URL
(``http://127.0.0.1:PORT/?token=TOKEN``, the token from ``controller/controller.json``).
"""

from __future__ import annotations

import enum
import json
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from qnet.cli._console import console, err_console
from qnet.errors import QNetError

__all__ = ["Source", "dashboard_url", "down", "up"]

READY_TIMEOUT_S = 120.0
"""How long the servers get to answer, all together (a loaded machine starts Python slowly)."""
FIRST_KEY_WAIT_S = 60.0
"""How long ``qnet up`` waits for the first key on every link before it prints the table anyway (it
goes on saying when each late link's first key arrives)."""
_KEY_POLL_S = 1.0


class Source(enum.StrEnum):
    """Where the links' keys come from."""

    simulated = "simulated"
    """Photon-level decoy-BB84 simulation of each link, at its physical key rate."""
    prng = "prng"
    """A fast pseudo-random stand-in for load tests (not QKD keys)."""


def up(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The network spec (YAML).", show_default=False),
    state_dir: Path = typer.Option(None, "--state-dir", help="Keep certificates, stores and endpoints.json here "
                                   "(and resume from them next time); a temporary directory if left out."),
    speedup: float = typer.Option(1.0, "--speedup", min=0.001, max=1e6,
                                  help="Run the simulated links this many times faster than real time."),
    base_port: int = typer.Option(8443, "--base-port", min=1, max=65000,
                                  help="The first KME's port (the others follow; the dashboard is 1000 above the "
                                       "controller). Only for a new --state-dir."),
    source: Source = typer.Option(Source.simulated, "--source", case_sensitive=False,
                                  help="simulated: photon-level QKD links at their physical rates; prng: a fast "
                                       "stand-in for load tests (not QKD keys)."),
) -> None:
    """Start the whole network of SPEC on loopback: one KME per node over mutual TLS, the links
    feeding keys at their physical rates, relay through trusted nodes; Ctrl-C stops it.

    Example:  qnet up examples/tokyo-qkd-network.yaml --state-dir tokyo --speedup 10
    """
    from qnet.scenarios.launcher import Interrupted, Launcher, stop_on_signals
    from qnet.scenarios.validate import load_spec

    started = time.monotonic()  # the progress lines count from the command, deployment included
    spec = load_spec(spec_path)
    root = state_dir or Path(tempfile.mkdtemp(prefix="qnet-up-"))
    launcher = Launcher(log_dir=root / "logs")
    with stop_on_signals() as guard:
        owned = False
        try:
            dep = _deployment(root, spec, base_port, {"speedup": speedup, "kind": source.value})
            _check_ports(dep)
            _say_cores(dep)
            owned = True
            _run(root, spec.name, dep, launcher, started)
        except Interrupted as stop:
            err_console.print(f"{stop} received: stopping ..." if owned else f"{stop} received: nothing started")
        finally:
            guard.quiet()
            left = launcher.stop() if launcher.procs else []
            if owned:
                _forget(root)
    if left:
        raise QNetError(f"could not stop: {', '.join(left)} still running")
    if owned:
        err_console.print(f"network {escape(spec.name)} stopped; its state stays in {root}")


def down(
    state_dir: Path = typer.Option(..., "--state-dir", help="The directory a running `qnet up` was given."),
) -> None:
    """Stop the network that `qnet up --state-dir DIR` is running, whatever started it, and wait
    until every one of its processes is gone (exit status 1, naming them, if some could not be stopped)."""
    from qnet.scenarios.launcher import stop_recorded

    start = time.monotonic()
    count = stop_recorded(state_dir)
    console.print(f"stopped the network in {state_dir} ({count} processes, {time.monotonic() - start:.1f} s)")


def _run(root: Path, name: str, dep: Any, launcher: Any, started: float) -> None:
    """Start the feeds and the servers, wait for them and the first keys, print the table, then
    watch until stopped (``started``: when the command began, on the monotonic clock)."""
    from qnet.scenarios.launcher import write_state

    launcher.start_feeders(dep.configs)  # first: the links make key while the servers start
    launcher.start_controller(dep.controller_config)
    write_state(root, launcher)
    for node, path in dep.configs.items():
        launcher.start_kme(node, path, "--no-links")
        write_state(root, launcher)
    endpoints = _wait_and_describe(root, dep, launcher, started)
    keys = _FirstKeys(root, dep, started)
    keys.wait(FIRST_KEY_WAIT_S)
    _print(name, endpoints, root)
    _watch(launcher, keys)


def _forget(root: Path) -> None:
    from qnet.scenarios.launcher import STATE_FILE

    for file in (STATE_FILE, "endpoints.json"):
        (root / file).unlink(missing_ok=True)


def _deployment(root: Path, spec: Any, base_port: int, source: dict[str, Any]) -> Any:
    from qnet.scenarios.deploy import Deployment, init_deployment
    from qnet.scenarios.launcher import STATE_FILE, is_running

    if is_running(root):
        raise QNetError(f"{root}: a network is already running here (stop it with: qnet down --state-dir {root})")
    (root / STATE_FILE).unlink(missing_ok=True)  # a stale record: nothing of it runs
    if not (root / "ca.pem").exists():
        names = [n.name for n in spec.nodes]  # deploy.init_deployment's rule: consecutive, then the controller
        ports = {f"KME of {n}": ("127.0.0.1", base_port + i) for i, n in enumerate(names)}
        ports |= {"controller": ("127.0.0.1", base_port + len(names)),
                  "dashboard": ("127.0.0.1", base_port + len(names) + 1000)}
        _check_free(ports, fresh=True)
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
    _check_roles(root)
    err_console.print(f"resuming the network in {root} from its stores")
    port = json.loads(controller.read_text())["port"]
    return Deployment(root, kmes, configs, {s.sae_id: s.node for s in spec.applications},
                      f"https://127.0.0.1:{port}", controller)


def _check_roles(root: Path) -> None:
    """A state directory from before certificates carried their role (subject OU) cannot be served:
    every server would refuse its certificates."""
    from qnet.errors import QNetError
    from qnet.security.pki import certificate_role

    operator = root / "operator" / "operator.pem"
    if operator.exists() and certificate_role(operator) is None:
        raise QNetError(f"{root} was made by an older qnet: its certificates carry no role (subject OU), and "
                        "the servers grant rights by role now; start the network in a fresh --state-dir")


def _check_ports(dep: Any) -> None:
    """Every server's port must be free before anything starts."""
    ports: dict[str, tuple[str, int]] = {}
    for node, url in dep.kmes.items():
        parts = urlsplit(url)
        ports[f"KME of {node}"] = (parts.hostname or "127.0.0.1", parts.port or 443)
    config = json.loads(Path(dep.controller_config).read_text())
    ports["controller"] = (config.get("host", "127.0.0.1"), int(config["port"]))
    if config.get("dashboard_port"):
        ports["dashboard"] = ("127.0.0.1", int(config["dashboard_port"]))
    _check_free(ports, fresh=False)


def _check_free(ports: dict[str, tuple[str, int]], *, fresh: bool) -> None:
    from qnet.scenarios.launcher import check_ports

    elsewhere = ("start this network on other ports (--base-port N)" if fresh else
                 "start this network on other ports (a new --state-dir with --base-port N)")
    check_ports(ports, hint=f"stop that process (a qnet network: qnet down --state-dir DIR), or {elsewhere}")


def _say_cores(dep: Any) -> None:
    """How many CPU cores the simulated links need to keep real time, against this machine's."""
    need = links_cpu_cores(dep.configs.values())
    if need is None:
        return
    have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    text = f"the links need about {need:.1f} CPU cores to keep real time photon by photon; this machine has {have}"
    sampled = sorted({lk["link_id"] for path in dep.configs.values() for lk in json.loads(Path(path).read_text())
                      .get("links", []) if lk.get("source", {}).get("mode") == "sampled"})
    if sampled:
        text = (f"[yellow]{text}: {len(sampled)} link(s) sample their blocks from the same statistics instead "
                f"(finite-key length and QBER of the expected counts, no photons), to keep real time: "
                f"{', '.join(sampled)}[/]")
    err_console.print(text, highlight=False)


def links_cpu_cores(configs: Any) -> float | None:
    """The CPU cores the simulated links of these KME configurations need to keep real time at
    their speed-up, each link counted once (:func:`qnet.quantum.link.link_cpu_cores`); None if no
    link is simulated."""
    from qnet.scenarios.deploy import source_cpu_cores

    seen: set[str] = set()
    total = 0.0
    for path in configs:
        for link in json.loads(Path(path).read_text()).get("links", []):
            src = link.get("source", {})
            if link["link_id"] in seen or src.get("kind", "simulated") != "simulated":
                continue
            seen.add(link["link_id"])
            total += source_cpu_cores(src)
    return total if seen else None


def _context(root: Path) -> ssl.SSLContext:
    """A TLS context with the operator's certificate: every server of the network accepts it."""
    ctx = ssl.create_default_context(cafile=str(root / "ca.pem"))
    ctx.load_cert_chain(str(root / "operator" / "operator.pem"), str(root / "operator" / "operator.key"))
    return ctx


def _wait_and_describe(root: Path, dep: Any, launcher: Any, started: float) -> dict[str, Any]:
    """Wait until every server answers over mutual TLS, saying as each does; write and return endpoints.json."""
    urls = {"controller": dep.controller_url, **dep.kmes}
    with err_console.status(f"starting {len(dep.kmes)} KMEs and the controller ...") as status:
        answered = 0

        def ready(name: str, _seconds: float) -> None:
            nonlocal answered
            answered += 1
            err_console.print(f"  {escape(launcher.what[name])} answers at {urls[name]} "
                              f"({time.monotonic() - started:.1f} s)", highlight=False)
            status.update(f"starting servers: {answered} of {len(urls)} answer ...")

        launcher.wait_ready(urls, context=_context(root), timeout_s=READY_TIMEOUT_S, on_ready=ready)
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
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers(dashboard) and time.monotonic() < deadline:  # served beside the controller's API
            time.sleep(0.2)
    (root / "endpoints.json").write_text(json.dumps(endpoints, indent=2))
    return endpoints


class _FirstKeys:
    """Watches the KMEs' stores until every link has key to serve at one of its ends (its KME
    answers by then), and says when each link's first key arrived. It reads the stores, not the
    KMEs' ``/metrics``: on a busy machine eleven scrapes a second cost the links' feeds CPU."""

    def __init__(self, root: Path, dep: Any, started: float) -> None:
        from qnet.keys.store import KeyStore
        from qnet.servers.config import load_config

        self.pending: dict[str, tuple[str, ...]] = {}
        self.stores: dict[str, KeyStore] = {}
        for node, path in dep.configs.items():
            config = load_config(Path(path))
            self.stores[node] = KeyStore(config.store_url, node)
            for link in config.links:
                self.pending.setdefault(link.link_id, tuple(link.ends))
        self.start = started

    def poll(self) -> None:
        """Look at the ends of the links still without key; report the links that now have some."""
        keyed = [link for link, ends in self.pending.items()
                 if any(end in self.stores and self.stores[end].stock(link) > 0 for end in ends)]
        for link in keyed:
            ends = "-".join(self.pending.pop(link))
            name = link if link == ends else f"{link} ({ends})"
            err_console.print(f"  first key on link {escape(name)}, {time.monotonic() - self.start:.0f} s after "
                              "the start", highlight=False)
        if not self.pending:
            self.close()

    def close(self) -> None:
        """Release the stores."""
        for store in self.stores.values():
            store.close()
        self.stores = {}

    def wait(self, timeout_s: float) -> None:
        """Poll until every link has key or ``timeout_s`` passes, showing how many still wait."""
        total = len(self.pending)
        deadline = time.monotonic() + timeout_s
        with err_console.status("waiting for the first key on every link ...") as status:
            while self.pending and time.monotonic() < deadline:
                self.poll()
                status.update(f"waiting for the first key: {total - len(self.pending)} of {total} links have key ...")
                if self.pending:
                    time.sleep(_KEY_POLL_S)
        if self.pending:
            err_console.print(f"[yellow]no key yet after {timeout_s:.0f} s on {len(self.pending)} of {total} links "
                              f"({escape(', '.join(self.pending))}); qnet up says when it arrives[/]", highlight=False)


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


def _watch(launcher: Any, keys: _FirstKeys) -> None:
    """Until stopped: say if a server exits on its own, and when a late link's first key arrives."""
    reported: set[str] = set()
    next_poll = time.monotonic()
    while True:
        for name, code in launcher.exited().items():
            if name not in reported:
                reported.add(name)
                err_console.print(f"[bold red]the {escape(launcher.what[name])} exited ({code}); "
                                  f"see {launcher.log(name)}[/]")
        if keys.pending and time.monotonic() >= next_poll:
            keys.poll()
            next_poll = time.monotonic() + 5 * _KEY_POLL_S
        time.sleep(0.5)
