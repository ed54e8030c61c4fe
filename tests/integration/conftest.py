"""Live KMEs for integration tests: a deployment made by ``init_deployment`` on free loopback
ports, each server started by the launcher ``qnet up`` uses (:mod:`qnet.scenarios.launcher`), in its
own process group, reached over mutual TLS.

Start-up waits on readiness (a TLS request answered) within a generous deadline, scaled by the
``QNET_TEST_TIMEOUT_SCALE`` environment variable on slow machines; whatever a test started is
stopped by its fixture, and anything left over (a test that failed between start and stop) by the
session's finalizer. On Linux the servers also die with the test process.
"""

from __future__ import annotations

import signal
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from qnet.scenarios.deploy import Deployment, init_deployment
from qnet.scenarios.launcher import Launcher
from qnet.scenarios.validate import load_spec
from tests.helpers import free_ports, scaled

ROOT = Path(__file__).resolve().parents[2]
TWO_NODES = ROOT / "examples" / "two-nodes.yaml"
START_TIMEOUT_S = 120.0
"""How long a server gets to answer after it starts (before scaling)."""

_LAUNCHED: list[Launcher] = []
"""Every launcher a test made; the session's finalizer stops what they still run."""


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_servers() -> Iterator[None]:
    """Whatever a test left running (it failed before its own clean-up) stops with the session."""
    yield
    for launcher in _LAUNCHED:
        launcher.stop()


@dataclass
class LiveNet:
    """A running deployment."""

    dep: Deployment
    launcher: Launcher = field(default_factory=Launcher)

    @property
    def root(self) -> Path:
        return self.dep.root

    @property
    def ca(self) -> str:
        return str(self.root / "ca.pem")

    @property
    def procs(self) -> dict[str, Any]:
        """name -> the server's process."""
        return self.launcher.procs

    def url(self, node: str) -> str:
        return self.dep.kmes[node]

    def cert(self, sae: str, kind: str = "sae") -> tuple[str, str]:
        return str(self.root / kind / f"{sae}.pem"), str(self.root / kind / f"{sae}.key")

    def context(self, sae: str = "operator", kind: str = "operator") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(*self.cert(sae, kind))
        return ctx

    def client(self, sae: str, kind: str = "sae", **kwargs: Any) -> httpx.Client:
        return httpx.Client(verify=self.context(sae, kind), timeout=20, **kwargs)

    def start(self, node: str, *args: str) -> None:
        """Start ``node``'s KME (logged to ``ROOT/NODE.log``) and wait until it answers."""
        self.launcher.start_kme(node, self.dep.configs[node], *args)
        self.launcher.wait_ready({node: self.url(node)}, context=self.context(), timeout_s=scaled(START_TIMEOUT_S))

    def start_controller(self) -> None:
        assert self.dep.controller_config is not None and self.dep.controller_url is not None
        self.launcher.start_controller(self.dep.controller_config)
        self.launcher.wait_ready({"controller": self.dep.controller_url}, context=self.context(),
                                 timeout_s=scaled(START_TIMEOUT_S))

    def kill(self, node: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``node``'s process group (its feeders too) and wait until it is gone."""
        self.launcher.kill(node, sig, timeout_s=scaled(20))

    def stop(self) -> None:
        """Stop every server (SIGTERM to each group, SIGKILL what is left after the grace period)."""
        left = self.launcher.stop()
        assert not left, f"still running after SIGKILL: {left}"

    def wait_for_stock(self, master: str, slave: str, node: str, count: int, timeout_s: float = 90) -> int:
        deadline = time.monotonic() + scaled(timeout_s)
        with self.client(master) as http:
            while True:
                stock = http.get(f"{self.url(node)}/api/v1/keys/{slave}/status").json()["stored_key_count"]
                if stock >= count or time.monotonic() > deadline:
                    return int(stock)
                time.sleep(0.3)


def start_net(root: Path, *, source: dict[str, Any] | None = None, spec: Path = TWO_NODES) -> LiveNet:
    """The controller and every KME of ``spec``, each in its own process group, all answering; if
    one fails to start, the others are stopped before the error propagates."""
    net = load_spec(spec)
    names = [n.name for n in net.nodes]
    ports = dict(zip([*names, "controller", "dashboard"], free_ports(len(names) + 2), strict=True))
    dep = init_deployment(root, net, ports=ports, source=source)
    assert dep.controller_config is not None and dep.controller_url is not None
    live = LiveNet(dep, Launcher(log_dir=root))
    _LAUNCHED.append(live.launcher)
    try:  # all at once, then wait for them together: quicker than one by one
        live.launcher.start_controller(dep.controller_config)
        for node in names:
            live.launcher.start_kme(node, dep.configs[node])
        urls = {"controller": dep.controller_url, **dep.kmes}
        live.launcher.wait_ready(urls, context=live.context(), timeout_s=scaled(START_TIMEOUT_S))
    except BaseException:
        live.launcher.stop()
        raise
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


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """The six-node ring (tests/integration/specs/ring6.yaml) on PRNG feeds, one per test module."""
    net = start_net(tmp_path_factory.mktemp("ring6"), source={"kind": "prng", "max_units": 5000},
                    spec=Path(__file__).resolve().parent / "specs" / "ring6.yaml")
    try:
        yield net
    finally:
        net.stop()
