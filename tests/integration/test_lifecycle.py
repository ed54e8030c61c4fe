"""Every process a qnet command starts ends with it: ``qnet down`` stops a ``qnet up`` started in
the background (SIGINT ignored, as a shell starts it); SIGTERM or a kill -9 of ``qnet up`` ends its
KMEs, controller and feeders; SIGTERM to ``qnet kme serve`` stops its feeder; a port in use is one
clear error. The commands run as real processes on loopback (``--source prng`` for speed)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.helpers import free_base_port
from tests.integration.conftest import ROOT, scaled

TWO_NODES = ROOT / "examples" / "two-nodes.yaml"
QNET = [sys.executable, "-m", "qnet"]


def _in_background(argv: list[str]) -> list[str]:
    """``argv`` run as a shell runs a background job: with SIGINT ignored (``exec`` keeps that)."""
    return ["sh", "-c", f"trap '' INT; exec {shlex.join(argv)}"]


def _until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + scaled(timeout_s)
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _up(state: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(_in_background([*QNET, "up", str(TWO_NODES), "--state-dir", str(state), "--source",
                                                "prng", "--base-port", str(free_base_port([0, 1, 2, 1002]))]),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _servers(up: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The server processes ``qnet up`` has started so far: its children running ``serve``, and
    those its server host forked (they keep the host's command line)."""
    try:
        children = psutil.Process(up.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if "serve" in _cmd(child).split()
            or ("qnet.cli.forkhost" in _cmd(child) and _parent(child) != up.pid)]


def _parent(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def _cmd(proc: psutil.Process) -> str:
    """The command line of ``proc`` ("" if it is gone: processes come and go while we look)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _leftovers(state: Path, known: list[psutil.Process]) -> list[str]:
    """Processes still running that belong to the network in ``state``: any of ``known``, any member
    of their process groups (the feeders), any process whose command line names ``state``."""
    groups = set()
    for proc in known:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    groups.discard(os.getpgid(0))
    left = {p.pid: p for p in known if _alive(p)}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            mine = str(state) in " ".join(proc.info["cmdline"] or []) or os.getpgid(proc.pid) in groups
        except (OSError, psutil.Error):
            continue
        if mine and proc.pid != os.getpid() and _alive(proc):
            left[proc.pid] = proc
    return [f"{pid}: {_cmd(proc)[:160]}" for pid, proc in left.items() if _alive(proc)]


def _descendants(up: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(up.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()


@dataclass
class Network:
    """One ``qnet up`` of the two-node spec in ``state``, its output in ``log``."""

    state: Path
    log: Path
    up: subprocess.Popen[bytes] | None = None
    seen: list[psutil.Process] = field(default_factory=list)
    """Every descendant of ``qnet up`` seen so far."""

    def start(self) -> subprocess.Popen[bytes]:
        self.up = _up(self.state, self.log)
        return self.up

    def wait_up(self) -> None:
        up = self.up
        assert up is not None

        def ready() -> bool:
            assert up.poll() is None, self.log.read_text()
            return (self.state / "endpoints.json").exists()
        _until(ready, 120, "qnet up to write endpoints.json")

    def look(self) -> list[psutil.Process]:
        """Note the descendants of ``qnet up`` now; return them all."""
        if self.up is not None:
            self.seen += _descendants(self.up)
        return self.seen


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """A ``qnet up`` to start; the finalizer kills whatever a failing test left behind."""
    net = Network(tmp_path / "net", tmp_path / "up.log")
    yield net
    if net.up is not None:
        net.look()
        net.up.kill()
        net.up.wait(timeout=30)
    _kill_all(net.seen)


def test_down_stops_a_background_up_that_ignores_sigint(network: Network) -> None:
    """qnet up started with SIGINT ignored (a background job): qnet down exits 0 only once qnet up,
    every server and every feeder is gone."""
    up = network.start()
    network.wait_up()
    # qnet up runs the links' feeders itself (qnet kme feed, one per core), beside KMEs with --no-links
    _until(lambda: len([p for p in _descendants(up) if "kme feed" in _cmd(p)]) >= 1, 60, "the feeder")
    assert not [p for p in _descendants(up) if "multiprocessing.spawn" in _cmd(p)]  # no KME runs its own
    seen = network.look()
    start = time.monotonic()
    down = subprocess.run([*QNET, "down", "--state-dir", str(network.state)], capture_output=True, text=True,
                          timeout=scaled(90))
    took = time.monotonic() - start
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped the network" in down.stdout
    assert up.wait(timeout=scaled(30)) == 0, network.log.read_text()
    assert _leftovers(network.state, seen) == [], f"after qnet down ({took:.1f} s)"
    assert not (network.state / "endpoints.json").exists() and not (network.state / "qnet-up.json").exists()
    for log in (network.state / "logs").glob("*.log"):  # every server stopped cleanly
        assert "Traceback" not in log.read_text(), log


def test_down_says_so_when_nothing_runs(tmp_path: Path) -> None:
    """Without a running network qnet down exits 1, says so, and shows no traceback."""
    r = subprocess.run([*QNET, "down", "--state-dir", str(tmp_path)], capture_output=True, text=True,
                       timeout=scaled(60))
    assert r.returncode == 1 and "no network is running here" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("sig", "when"), [(signal.SIGTERM, "starting"), (signal.SIGKILL, "up")],
                         ids=["sigterm-starting", "kill-9-up"])
def test_every_child_ends_with_qnet_up(network: Network, sig: int, when: str) -> None:
    """SIGTERM to qnet up while its servers start, and a kill -9 of it once it is up (Linux: the
    servers ask for SIGTERM when their parent dies), leave no KME, controller or feeder running.
    (SIGTERM once it is up is what qnet down sends: the test above.)"""
    if sig == signal.SIGKILL and not sys.platform.startswith("linux"):
        pytest.skip("a parent-death signal needs Linux")
    up = network.start()
    if when == "starting":
        _until(lambda: len(_servers(up)) >= 3 or up.poll() is not None, 60, "qnet up to start its servers")
    else:
        network.wait_up()
    seen = network.look()
    assert len(seen) >= 3, network.log.read_text()
    up.send_signal(sig)
    up.wait(timeout=scaled(60))
    _until(lambda: not _leftovers(network.state, seen), 60, "every child of qnet up to end")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A two-node deployment made by qnet pki init (PRNG feeds), and its base port."""
    root, base = tmp_path_factory.mktemp("pki") / "demo", free_base_port([0, 1, 2, 1002])
    subprocess.run([*QNET, "pki", "init", str(root), "--spec", str(TWO_NODES), "--base-port", str(base)],
                   check=True, capture_output=True, timeout=scaled(120))
    for node in ("Alice", "Bob"):
        path = root / f"{node}.json"
        config = json.loads(path.read_text())
        for link in config["links"]:
            link["source"] = {**link["source"], "kind": "prng"}
        path.write_text(json.dumps(config))
    return root, base


def test_sigterm_stops_kme_serve_and_its_feeder(deployment: tuple[Path, int]) -> None:
    """qnet kme serve NODE.json on SIGTERM stops cleanly (exit 0, "stopped") and its feeder with it."""
    root, _ = deployment
    kme = subprocess.Popen(_in_background([*QNET, "kme", "serve", str(root / "Alice.json")]), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[psutil.Process] = []
    try:
        def feeder() -> bool:
            assert kme.poll() is None, kme.communicate()
            return any("multiprocessing.spawn" in _cmd(p) for p in _descendants(kme))
        _until(feeder, 60, "the KME's feeder")
        seen = [psutil.Process(kme.pid), *_descendants(kme)]
        kme.send_signal(signal.SIGTERM)
        _, err = kme.communicate(timeout=scaled(60))
        assert kme.returncode == 0, err
        assert b"stopped" in err and b"Traceback" not in err, err
        _until(lambda: not [p for p in seen if _alive(p)], 30, "the feeder to end")
    finally:
        kme.kill()
        kme.wait(timeout=30)
        _kill_all(seen)


@pytest.mark.parametrize("command", ["up", "kme serve DIR", "kme serve NODE.json", "controller serve"])
def test_a_port_in_use_is_one_clear_error(deployment: tuple[Path, int], tmp_path: Path, command: str) -> None:
    """Another process on one of the ports: exit status 1, one message naming the port, no traceback,
    nothing left running."""
    root, base = deployment
    args = {"up": ["up", str(TWO_NODES), "--state-dir", str(tmp_path / "net"), "--source", "prng",
                   "--base-port", str(base)],
            "kme serve DIR": ["kme", "serve", str(root)],
            "kme serve NODE.json": ["kme", "serve", str(root / "Bob.json")],
            "controller serve": ["controller", "serve", str(root / "controller" / "controller.json")]}[command]
    taken = base + 2 if command == "controller serve" else base + 1  # the controller's port, or Bob's
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        r = subprocess.run([*QNET, *args], capture_output=True, text=True, timeout=scaled(120),
                           stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"port {taken} " in r.stderr and "in use" in r.stderr, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert _leftovers(root if command != "up" else tmp_path / "net", []) == []


def test_up_help_lists_the_sources(capsys: pytest.CaptureFixture[str]) -> None:
    """`qnet up --help` lists --source's choices and shows no type label on flags; a wrong one is a
    usage error that names the choices."""
    from qnet.cli.main import main

    assert main(["up", "--help"]) == 0
    out = capsys.readouterr().out
    assert "<simulated|prng>" in out and "<bool>" not in out
    assert main(["up", str(TWO_NODES), "--source", "qrng"]) == 2
    assert "'simulated', 'prng'" in capsys.readouterr().err


def test_kme_feed_names_a_missing_or_bad_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`qnet kme feed` (what qnet up runs, one per core) refuses a path that is no KME configuration,
    naming it, before it runs anything; no traceback."""
    from qnet.cli.main import main

    assert main(["kme", "feed", str(tmp_path / "nope.json")]) == 1
    err = capsys.readouterr().err
    assert "no such KME configuration" in err and "nope.json" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"kme_id": "A"}')
    assert main(["kme", "feed", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "Traceback" not in err
