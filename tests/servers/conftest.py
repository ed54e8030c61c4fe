"""Live KMEs for integration tests: a deployment made by ``init_deployment`` on free loopback
ports, each KME in its own process (``python -m qnet kme serve NODE.json``), reached over mutual TLS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from qnet.cli.kme import wait_for_port
from qnet.scenarios.deploy import Deployment, init_deployment
from qnet.scenarios.validate import load_spec

ROOT = Path(__file__).resolve().parents[2]
TWO_NODES = ROOT / "examples" / "two-nodes.yaml"


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class LiveNet:
    """A running deployment."""

    dep: Deployment
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.dep.root

    @property
    def ca(self) -> str:
        return str(self.root / "ca.pem")

    def url(self, node: str) -> str:
        return self.dep.kmes[node]

    def cert(self, sae: str, kind: str = "sae") -> tuple[str, str]:
        return str(self.root / kind / f"{sae}.pem"), str(self.root / kind / f"{sae}.key")

    def client(self, sae: str, kind: str = "sae", **kwargs: Any) -> httpx.Client:
        import ssl

        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(*self.cert(sae, kind))
        return httpx.Client(verify=ctx, timeout=20, **kwargs)

    def start(self, node: str, *args: str) -> None:
        with open(self.root / f"{node}.log", "ab") as log:  # the child keeps its own descriptor
            self.procs[node] = subprocess.Popen([sys.executable, "-m", "qnet", "kme", "serve",
                                                 str(self.dep.configs[node]), *args], stdout=log, stderr=log)
        port = int(self.url(node).rsplit(":", 1)[1])
        assert wait_for_port("127.0.0.1", port, 60), (self.root / f"{node}.log").read_text()

    def start_controller(self) -> None:
        assert self.dep.controller_config is not None and self.dep.controller_url is not None
        with open(self.root / "controller.log", "ab") as log:
            self.procs["controller"] = subprocess.Popen(
                [sys.executable, "-m", "qnet", "controller", "serve", str(self.dep.controller_config)],
                stdout=log, stderr=log)
        port = int(self.dep.controller_url.rsplit(":", 1)[1])
        assert wait_for_port("127.0.0.1", port, 60), (self.root / "controller.log").read_text()

    def kill(self, node: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(node)
        os.kill(proc.pid, sig)
        proc.wait(timeout=20)

    def stop(self) -> None:
        for node in list(self.procs):
            self.kill(node, signal.SIGINT)

    def wait_for_stock(self, master: str, slave: str, node: str, count: int, timeout_s: float = 90) -> int:
        deadline = time.monotonic() + timeout_s
        with self.client(master) as http:
            while True:
                stock = http.get(f"{self.url(node)}/api/v1/keys/{slave}/status").json()["stored_key_count"]
                if stock >= count or time.monotonic() > deadline:
                    return int(stock)
                time.sleep(0.3)


def start_net(root: Path, *, source: dict[str, Any] | None = None, spec: Path = TWO_NODES) -> LiveNet:
    """The controller and every KME of ``spec``, each in its own process."""
    net = load_spec(spec)
    names = [n.name for n in net.nodes]
    ports = dict(zip([*names, "controller", "dashboard"], free_ports(len(names) + 2), strict=True))
    live = LiveNet(init_deployment(root, net, ports=ports, source=source))
    live.start_controller()
    for node in names:
        live.start(node)
    return live


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """Alice and Bob, 25 km of simulated decoy-BB84 link between them, keys waiting."""
    net = start_net(tmp_path_factory.mktemp("kme"), source={"speedup": 4.0, "pulses_per_block": 10**8})
    try:
        assert net.wait_for_stock("SAE_A", "SAE_B", "Alice", 300) >= 300
        yield net
    finally:
        net.stop()
