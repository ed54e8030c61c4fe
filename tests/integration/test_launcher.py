"""The launcher of live networks (:mod:`qnet.scenarios.launcher`): recorded process groups stopped
whole, SIGKILL after the grace period, the truth about what could not be stopped, readiness errors
that name the server and its reason, ports in use named, signals turned into one clean stop. Plain
``python -c`` processes stand in for the servers, so these run in seconds (tests/integration/test_lifecycle.py
runs the real ones)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qnet.errors import PortInUseError, QNetError
from qnet.scenarios import launcher
from qnet.scenarios.launcher import (
    STATE_FILE,
    Interrupted,
    Launcher,
    check_ports,
    group_members,
    stop_on_signals,
    stop_recorded,
)
from tests.integration.conftest import scaled

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

IDLE = "import time; print('ready', flush=True); time.sleep(600)"
"""A process that just runs (stands in for qnet up)."""
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(600)")
"""A server that ignores SIGTERM."""
CHILD_TOO = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
             "print('ready', flush=True); time.sleep(600)")
"""A server with a child of its own (as a KME has its feeder), in its process group."""


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of their groups is killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        for pid in group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _start(spawned: list[subprocess.Popen[bytes]], code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    spawned.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _record(root: Path, up: subprocess.Popen[bytes], groups: dict[str, subprocess.Popen[bytes]]) -> None:
    stat = Path(f"/proc/{up.pid}/stat").read_text()
    start = int(stat[stat.rindex(")") + 2:].split()[19])
    (root / STATE_FILE).write_text(json.dumps({"pid": up.pid, "start": start,
                                               "groups": {n: p.pid for n, p in groups.items()},
                                               "what": {n: f"KME of {n}" for n in groups}}))
    (root / "endpoints.json").write_text("{}")


def test_stop_recorded_stops_every_group_whole_and_kills_what_ignores_sigterm(
        tmp_path: Path, spawned: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """qnet down's core: SIGTERM to the recorded qnet up and to each server's group (a server's own
    child included), SIGKILL to what ignores it; every process gone, the record removed."""
    monkeypatch.setattr(launcher, "_KILL_WAIT_S", scaled(2))
    up = _start(spawned, IDLE)
    servers = {"A": _start(spawned, CHILD_TOO), "B": _start(spawned, STUBBORN)}
    _until(lambda: len(group_members(servers["A"].pid)) == 2)
    _record(tmp_path, up, servers)
    assert stop_recorded(tmp_path, grace_s=0.5) == 4
    for proc in (up, *servers.values()):
        proc.wait(timeout=scaled(10))
        assert group_members(proc.pid) == []
    assert up.returncode == -signal.SIGTERM and servers["B"].returncode == -signal.SIGKILL
    assert not (tmp_path / STATE_FILE).exists() and not (tmp_path / "endpoints.json").exists()


def _until(done: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + scaled(timeout_s)
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_stop_recorded_names_what_it_could_not_stop(tmp_path: Path, spawned: list[subprocess.Popen[bytes]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """When a process survives even SIGKILL (here: signals that reach nothing), qnet down says so,
    naming it, and keeps the record."""
    up, server = _start(spawned, IDLE), _start(spawned, IDLE)
    _record(tmp_path, up, {"A": server})
    monkeypatch.setattr(launcher, "_signal_group", lambda *_: None)
    monkeypatch.setattr(launcher, "_signal_pid", lambda *_: None)
    monkeypatch.setattr(launcher, "_KILL_WAIT_S", 0.2)
    with pytest.raises(QNetError, match=rf"could not stop the network; still running: qnet up \(pid {up.pid}\); "
                                        rf"KME of A \(pid {server.pid}\)"):
        stop_recorded(tmp_path, grace_s=0.2)
    assert (tmp_path / STATE_FILE).exists()


def test_a_stale_record_is_an_error_and_is_removed(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    """A record whose processes are all gone: an error saying so (nothing was stopped), and the record goes."""
    up = _start(spawned, IDLE)
    _record(tmp_path, up, {})
    up.kill()
    up.wait(timeout=30)
    with pytest.raises(QNetError, match="are gone; removed the stale"):
        stop_recorded(tmp_path)
    assert not (tmp_path / STATE_FILE).exists()
    with pytest.raises(QNetError, match="no network is running here"):
        stop_recorded(tmp_path)


def test_wait_ready_names_a_server_that_exits_and_why(tmp_path: Path) -> None:
    """A server that exits during start-up: the error names it, its exit status and its log's error line."""
    run = Launcher(log_dir=tmp_path)
    run.start_kme("Alice", tmp_path / "Alice.json")
    try:
        with pytest.raises(QNetError, match=r"the KME of Alice exited \(status 1\): .*Alice\.json.*; see "):
            run.wait_ready({"Alice": "https://127.0.0.1:9"}, context=ssl.create_default_context(),
                           timeout_s=scaled(120))
    finally:
        run.stop()


def test_check_ports_names_every_port_in_use() -> None:
    """Ports held by another socket are named, each with what needed it; free ports pass."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        a.listen()
        b.bind(("127.0.0.1", 0))
        b.listen()
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"ports {pa} \(KME of A\), {pb} \(controller\) on 127\.0\.0\.1 "
                                                 r"are already in use by another process: try elsewhere"):
            check_ports({"KME of A": ("127.0.0.1", pa), "controller": ("127.0.0.1", pb)}, hint="try elsewhere")
    check_ports({"KME of A": ("127.0.0.1", pa)})


def test_stop_on_signals_turns_the_first_signal_into_one_clean_stop() -> None:
    """SIGTERM (and SIGINT, even if it was ignored) raise Interrupted once; after quiet() later ones
    do nothing; the old handlers come back."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(Interrupted, match="SIGINT"), stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(scaled(5))
        with stop_on_signals() as guard:
            guard.quiet()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_forked_servers_log_and_report_their_exit_and_the_host_ends_with_the_launcher(tmp_path: Path) -> None:
    """Servers forked from the server host (one import of the servers' code for all): each writes
    to its own log, its exit status reaches the launcher (0 for --help, Click's 2 for a usage
    error), each led its own session, and stopping the launcher's last server ends the host."""
    run = Launcher(log_dir=tmp_path)
    ok = run.start("help", "kme", "--help", forked=True)
    bad = run.start("bad", "no-such-command", forked=True)
    assert ok.wait(timeout=scaled(120)) == 0 and bad.wait(timeout=scaled(30)) == 2
    assert run.exited() == {"help": 0, "bad": 2}
    assert "Usage: qnet kme" in (tmp_path / "help.log").read_text()
    assert "No such command" in (tmp_path / "bad.log").read_text()
    host = run._host
    assert host is not None and host.proc.poll() is None
    assert run.stop() == [] and host.proc.wait(timeout=scaled(30)) == 0


def test_a_dead_host_is_an_error_and_the_launcher_starts_a_new_one(tmp_path: Path) -> None:
    """If the host dies (kill -9), asking it to fork is a clear error naming it, and the launcher's
    next server starts on a fresh host."""
    run = Launcher(log_dir=tmp_path)
    assert run.start("help", "--help", forked=True).wait(timeout=scaled(120)) == 0
    host = run._host
    assert host is not None
    os.kill(host.proc.pid, signal.SIGKILL)
    host.proc.wait(timeout=scaled(30))
    with pytest.raises(QNetError, match=r"the server host exited \(signal SIGKILL\); see .*server-host\.log"):
        host.fork("again", ["--help"], None)
    assert run.start("again", "--help", forked=True).wait(timeout=scaled(120)) == 0
    assert run._host is not host
    run.stop()


def test_a_server_stopped_as_soon_as_it_is_forked_gets_sigterm_not_sigkill(tmp_path: Path) -> None:
    """The host says a server's pid only once it leads its own session with its own handlers, so a
    stop sent at once (Ctrl-C while qnet up starts) reaches it: it ends by SIGTERM within the grace
    period, never by SIGKILL after it. A controller that would otherwise serve stands in."""
    from qnet.scenarios.deploy import init_deployment
    from qnet.scenarios.validate import load_spec
    from tests.helpers import free_ports

    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "two-nodes.yaml")
    ports = dict(zip(["Alice", "Bob", "controller", "dashboard"], free_ports(4), strict=True))
    dep = init_deployment(tmp_path / "net", spec, ports=ports, source={"kind": "prng"})
    assert dep.controller_config is not None
    run = Launcher(log_dir=tmp_path)
    assert run.start("warm", "--help", forked=True).wait(timeout=scaled(120)) == 0  # the host is up
    for i in range(3):
        proc = run.start_controller(dep.controller_config, name=f"ctl-{i}")
        start = time.monotonic()
        assert run.stop([f"ctl-{i}"], grace_s=scaled(8)) == []
        assert time.monotonic() - start < scaled(8)
        assert proc.poll() != -signal.SIGKILL
    run.stop()
