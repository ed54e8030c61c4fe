"""The one launcher of a live network's servers: ``qnet up``, ``qnet kme serve DIR`` and the
integration tests (``tests/servers/conftest.py``) start, wait for and stop them through it.

Each server runs ``qnet kme serve NODE.json`` (or ``controller serve``) in a process that leads its
own process group (its own session): the group also holds what the server starts (a KME's key
feeders), so one signal to the group reaches them all, and a terminal's Ctrl-C reaches only the
launcher, which then stops its children. On Linux the KMEs and the controller are forked from one
server host (:mod:`qnet.cli.forkhost`), which imports their code once, and other servers
(the key feeds) are ``python -m qnet`` children. Each process asks the kernel to send it SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``), so a crash or a ``kill -9`` of the launcher ends
the host and the servers too. A server is ready when it answers a request over mutual TLS; no
fixed sleep stands in for that.

:func:`write_state` records the launcher's pid and its children's process groups in
``DIR/qnet-up.json``; :func:`stop_recorded` (``qnet down``) stops them from that record, whoever
started them, waits until every process is gone, and names what it could not stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import httpx

from qnet.errors import QNetError

__all__ = ["STATE_FILE", "STOP_GRACE_S", "Interrupted", "Launcher", "Process", "SignalGuard", "check_ports",
           "cpu_cores", "die_with_parent", "group_members", "is_running", "stop_on_signals", "stop_recorded",
           "write_state"]

STATE_FILE = "qnet-up.json"
"""The record of a running network in its state directory: ``{"pid", "start", "groups": {NAME: PGID}}``."""
STOP_GRACE_S = 10.0
"""How long servers get to stop after SIGTERM before SIGKILL (the stores are transactional: a kill loses
nothing, it only skips the goodbyes)."""
_KILL_WAIT_S = 5.0
_POLL_S = 0.05
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_PARENT_ENV = "QNET_LAUNCHER_PID"
_LIBC: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)


class Interrupted(BaseException):  # like KeyboardInterrupt: a request to stop, which `except Exception` lets by
    """SIGINT, SIGTERM or SIGHUP arrived while :func:`stop_on_signals` was in force."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """What :func:`stop_on_signals` yields: :meth:`quiet` makes later signals do nothing."""

    def __init__(self) -> None:
        self.fired: int | None = None
        self._quiet = False

    def quiet(self) -> None:
        """Ignore further stop signals (call it before cleaning up, so a second Ctrl-C cannot cut that short)."""
        self._quiet = True

    def handle(self, signum: int, _: FrameType | None) -> None:
        if self._quiet or self.fired is not None:
            return
        self.fired = signum
        raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[SignalGuard]:
    """Turn the first SIGINT, SIGTERM or SIGHUP into :class:`Interrupted` in the main thread, ignore
    the later ones, and restore the previous handlers on exit.

    SIGINT is installed explicitly: shells start background jobs with SIGINT ignored, and Python
    then never raises KeyboardInterrupt, so ``kill -INT`` would do nothing.
    """
    guard = SignalGuard()
    previous = {sig: signal.signal(sig, guard.handle) for sig in _STOP_SIGNALS}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def die_with_parent() -> None:
    """In a server the launcher started, ask the kernel for SIGTERM when the launcher dies (Linux's
    ``PR_SET_PDEATHSIG``), and exit at once if it already has. Does nothing in a server started by
    hand. The servers' entry points call it first.

    The launcher names itself in the environment (``QNET_LAUNCHER_PID``); the variable is removed
    here, so that what this process starts in turn (a KME's feeders) does not inherit it. (Set in
    the child rather than in a ``preexec_fn``, which is unsafe when the launcher has threads.)
    The kernel sends the signal when the *thread* that started the child ends: start servers from
    a thread that outlives them (the main thread).
    """
    parent = os.environ.pop(_PARENT_ENV, None)
    if parent is None:
        return
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if str(os.getppid()) != parent:  # the launcher died before the request took hold
        os._exit(1)


class Process(Protocol):
    """What the launcher needs of a server's process: a :class:`subprocess.Popen`, or a server the
    host forked (:class:`_Forked`)."""

    pid: int
    returncode: int | Any

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Launcher:
    """The servers of one network, each a ``qnet ...`` process leading its own process group.

    The KMEs and the controller are forked from one server host (:mod:`qnet.cli.forkhost`,
    on Linux), which imports their code once; anything else (the key feeds) is a ``python -m qnet``
    child of its own.

    Args:
        log_dir: where each server's output goes (``LOG_DIR/NAME.log``, appended); inherited if None.
        fork: fork the servers from one host (the default where ``os.fork`` exists).
    """

    def __init__(self, *, log_dir: Path | None = None, fork: bool | None = None) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Process] = {}
        self.what: dict[str, str] = {}
        self.fork = sys.platform.startswith("linux") if fork is None else fork
        self._host: _ServerHost | None = None

    def log(self, name: str) -> Path | None:
        """The log file of server ``name`` (None when its output is inherited)."""
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    def start(self, name: str, *args: str, what: str | None = None, forked: bool = False) -> Process:
        """Start ``qnet ARGS`` as server ``name`` (``what`` names it in messages): forked from the
        server host if ``forked`` (and this launcher forks), else as a ``python -m qnet`` child.

        Raises:
            ValueError: if a server of that name is still running.
            QNetError: if the server host has failed.
        """
        if name in self.procs and self.procs[name].poll() is None:
            raise ValueError(f"server {name!r} is already running (pid {self.procs[name].pid})")
        log = self.log(name)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        proc: Process
        if forked and self.fork:
            if self._host is None or self._host.proc.poll() is not None:
                self._host = _ServerHost(self.log("server-host"))
            proc = self._host.fork(name, args, log)
        else:
            proc = _spawn([sys.executable, "-m", "qnet", *args], log)
        self.procs[name], self.what[name] = proc, what or name
        return proc

    def start_kme(self, node: str, config: Path, *args: str) -> Process:
        """Start the KME of ``node`` from its configuration (``qnet kme serve NODE.json ARGS``)."""
        return self.start(node, "kme", "serve", str(config), *args, what=f"KME of {node}", forked=True)

    def start_feeders(self, configs: Mapping[str, Path], processes: int | None = None) -> list[str]:
        """Start the key feeds of the links of the KMEs configured at ``configs`` (node -> NODE.json)
        in at most ``processes`` processes (``qnet kme feed``; one per CPU core by default), each
        with about the same CPU load (:func:`qnet.scenarios.deploy.feeder_groups`). Start the KMEs
        with ``--no-links`` beside them. Returns the feeders' names."""
        from qnet.scenarios.deploy import feed_cost, feeder_groups  # noqa: PLC0415 - physics: not for qnet down

        costs = {node: feed_cost(json.loads(Path(path).read_text())) for node, path in configs.items()}
        groups = feeder_groups(costs, processes or cpu_cores())
        names = []
        for i, nodes in enumerate(groups, 1):
            name = f"feeds-{i}"
            self.start(name, "kme", "feed", *(str(configs[n]) for n in nodes),
                       what=f"key feeds {i} of {len(groups)} ({', '.join(nodes)})")
            names.append(name)
        return names

    def start_controller(self, config: Path, name: str = "controller") -> Process:
        """Start the controller (and its dashboard) from its configuration."""
        return self.start(name, "controller", "serve", str(config), what="controller", forked=True)

    def wait_ready(self, urls: Mapping[str, str], *, context: ssl.SSLContext, timeout_s: float,
                   on_ready: Callable[[str, float], None] | None = None) -> None:
        """Wait until every server ``name -> base URL`` answers an HTTPS request over mutual TLS
        (any answer: it serves), calling ``on_ready(name, seconds)`` as each does.

        Raises:
            QNetError: naming the server, if one exits (with the error its log ends with) or if
                ``timeout_s`` passes first.
        """
        start = time.monotonic()
        pending = dict(urls)
        with httpx.Client(verify=context, timeout=2.0) as http:
            while pending:
                for name, url in list(pending.items()):
                    self._check_alive(name)
                    with contextlib.suppress(httpx.HTTPError):
                        http.get(f"{url}/")  # any answer (a 404) means it serves
                        del pending[name]
                        if on_ready is not None:
                            on_ready(name, time.monotonic() - start)
                if pending and time.monotonic() - start > timeout_s:
                    names = ", ".join(self.what.get(n, n) for n in pending)
                    raise QNetError(f"did not answer within {timeout_s:.0f} s: {names}{self._see(next(iter(pending)))}")
                if pending:
                    time.sleep(0.2)

    def exited(self) -> dict[str, int]:
        """The servers that have exited, with their exit status (negative: the signal that ended it)."""
        return {name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None}

    def kill(self, name: str, sig: int = signal.SIGKILL, *, timeout_s: float = STOP_GRACE_S + _KILL_WAIT_S) -> None:
        """Send ``sig`` to server ``name``'s whole process group and wait until the group is gone
        (SIGKILL after ``timeout_s``); forget the server."""
        proc = self.procs.pop(name)
        self.what.pop(name, None)
        _stop_groups(_signalable({name: proc}), [proc], sig=sig, grace_s=timeout_s)

    def stop(self, names: Iterable[str] | None = None, *, grace_s: float = STOP_GRACE_S) -> list[str]:
        """SIGTERM each server's process group, wait until every member has ended (``grace_s`` in
        all), then SIGKILL the groups still there.

        Returns:
            What is still running after that (names), normally nothing.
        """
        chosen = list(self.procs) if names is None else [n for n in names if n in self.procs]
        procs = {name: self.procs.pop(name) for name in chosen}
        what = {name: self.what.pop(name, name) for name in chosen}
        left = _stop_groups(_signalable(procs), list(procs.values()), grace_s=grace_s)
        if not self.procs and self._host is not None:
            self._host.close()
            self._host = None
        return [what[name] for name in left]

    def groups(self) -> dict[str, int]:
        """name -> process group id of every server started (each leads its own group)."""
        return {name: proc.pid for name, proc in self.procs.items()}

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise QNetError(f"the {self.what.get(name, name)} exited ({_status(proc.returncode)})"
                            f"{self._reason(name)}{self._see(name)}")

    def _see(self, name: str) -> str:
        log = self.log(name)
        return f"; see {log}" if log is not None else ""

    def _reason(self, name: str) -> str:
        """The error line the server's log ends with, if any (a port in use says which)."""
        log = self.log(name)
        if log is None or not log.exists():
            return ""
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()[-20:] if ln.strip()]
        starts = [i for i, ln in enumerate(lines) if ln.startswith("error:")]
        if not starts:
            return ""
        return ": " + " ".join(lines[starts[-1]:]).removeprefix("error:").strip()  # rich wraps long lines


def _signalable(procs: Mapping[str, Process]) -> dict[str, int]:
    """name -> process group of the servers that may still have one: a forked server the host has
    already reaped has left its pid free for another process, which must not be signalled."""
    return {name: p.pid for name, p in procs.items() if not (isinstance(p, _Forked) and p.poll() is not None)}


def _spawn(argv: list[str], log: Path | None) -> subprocess.Popen[bytes]:
    """Start ``argv`` leading its own session, output to ``log`` (inherited if None), dying with us."""
    env = {**os.environ, _PARENT_ENV: str(os.getpid())}  # the child then dies with us: die_with_parent
    with open(log, "ab") if log is not None else contextlib.nullcontext() as out:  # the child keeps its own
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                env=env)


class _ServerHost:
    """The launcher's end of the server host (:mod:`qnet.cli.forkhost`)."""

    START_S = 120.0  # the host imports the servers' code first: seconds on a loaded machine

    def __init__(self, log: Path | None) -> None:
        req_r, self.req = os.pipe()
        self.rep, rep_w = os.pipe()
        try:
            env = {**os.environ, _PARENT_ENV: str(os.getpid())}
            with open(log, "ab") if log is not None else contextlib.nullcontext() as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "qnet.cli.forkhost", str(req_r), str(rep_w)],
                    pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    start_new_session=True, env=env)
        finally:
            os.close(req_r)
            os.close(rep_w)
        os.set_blocking(self.rep, False)
        self.log, self.buffer = log, b""
        self.forked: dict[str, int | str] = {}
        """name -> pid, or the reason it could not be forked."""
        self.exits: dict[int, int] = {}

    def fork(self, name: str, args: Iterable[str], log: Path | None) -> _Forked:
        request = {"name": name, "args": list(args), "log": None if log is None else str(log)}
        try:
            os.write(self.req, (json.dumps(request) + "\n").encode())
        except OSError:
            self._failed()
        deadline = time.monotonic() + self.START_S
        while name not in self.forked:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._failed()
            self.drain(0.05)
        pid = self.forked.pop(name)
        if isinstance(pid, str):
            raise QNetError(f"the server host could not start {name}: {pid}")
        return _Forked(self, pid)

    def drain(self, wait_s: float = 0.0) -> None:
        """Read what the host has said (waiting up to ``wait_s`` for something)."""
        if wait_s > 0:
            select.select([self.rep], [], [], wait_s)
        while True:
            try:
                chunk = os.read(self.rep, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.buffer += chunk
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if "code" in message:
                    self.exits[int(message["pid"])] = int(message["code"])
                elif "error" in message:
                    self.forked[str(message["name"])] = str(message["error"])
                else:  # a new server: a status kept for an earlier holder of its pid is not its own
                    self.exits.pop(int(message["pid"]), None)
                    self.forked[str(message["name"])] = int(message["pid"])

    def close(self) -> None:
        """Tell the host to end (it stops what it still runs) and wait for it."""
        with contextlib.suppress(OSError):
            os.close(self.req)
        try:
            self.proc.wait(timeout=STOP_GRACE_S + _KILL_WAIT_S + 5)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.rep)

    def _failed(self) -> None:
        code = self.proc.poll()
        state = "is not answering" if code is None else f"exited ({_status(code)})"
        see = f"; see {self.log}" if self.log is not None else ""
        raise QNetError(f"the server host {state}{see}")


class _Forked:
    """A server the host forked, as a :class:`Process` (the host reaps it and reports its status)."""

    def __init__(self, host: _ServerHost, pid: int) -> None:
        self.host, self.pid = host, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.host.drain()
            self.returncode = self.host.exits.get(self.pid)
            if self.returncode is None and self.host.proc.poll() is not None and not _pid_alive(self.pid):
                self.returncode = -signal.SIGTERM  # the host has gone, and its servers with it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            if self.host.proc.poll() is None:
                self.host.drain(0.05)
            else:  # the host has gone: its pipe reads as ready for ever
                time.sleep(_POLL_S)
        return code


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _status(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def check_ports(ports: Mapping[str, tuple[str, int]], *, hint: str = "") -> None:
    """Check that no other process holds any of the ports ``what -> (host, port)``, by binding each.

    Raises:
        PortInUseError: naming every port found in use (and ``hint``).
    """
    from qnet.errors import PortInUseError  # noqa: PLC0415
    from qnet.servers.kme import listen_socket  # noqa: PLC0415 (FastAPI: not for qnet down)

    busy: list[tuple[str, int, str]] = []
    for what, (host, port) in ports.items():
        try:
            listen_socket(host, port, what).close()
        except PortInUseError as exc:
            busy += exc.busy
    if busy:
        raise PortInUseError(busy, hint)


# -- process groups --------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) of a process from /proc (None if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def group_members(pgid: int, *, born_after: int | None = None) -> list[int]:
    """The live processes (zombies left out) of process group ``pgid``; with ``born_after`` (clock
    ticks since boot), only those started since (a recycled group id is not ours). On systems without
    /proc: ``[pgid]`` while the group has any member."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != pgid or stat[0] in ("Z", "X"):
            continue
        if born_after is None or stat[2] >= born_after:
            members.append(int(entry.name))
    return sorted(members)


def _pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` runs (and, given ``start``, is the one started then, not a recycled pid)."""
    stat = _stat(pid)
    if stat is not None:
        return stat[0] not in ("Z", "X") and (start is None or stat[2] == start)
    if Path("/proc/self/stat").exists():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait(done: Callable[[], bool], timeout_s: float, reap: Iterable[Process] = ()) -> bool:
    deadline = time.monotonic() + timeout_s
    procs = list(reap)
    while True:
        for proc in procs:
            proc.poll()  # our own children: reap them, or they linger as zombies
        if done():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)


def _stop_groups(groups: Mapping[str, int], procs: Iterable[Process] = (), *,
                 sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S, born_after: int | None = None) -> list[str]:
    """Signal every group, wait ``grace_s`` for all of them to empty, SIGKILL the rest; the names of
    the groups that still have members after that."""
    procs = list(procs)
    for pgid in groups.values():
        _signal_group(pgid, sig)

    def alive() -> list[str]:
        return [name for name, pgid in groups.items() if group_members(pgid, born_after=born_after)]

    if not _wait(lambda: not alive(), grace_s, procs):
        for name in alive():
            _signal_group(groups[name], signal.SIGKILL)
        _wait(lambda: not alive(), _KILL_WAIT_S, procs)
    for proc in procs:  # a member that just ended is a zombie until reaped (its Popen would warn)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_KILL_WAIT_S)
    return alive()


# -- the record of a running network (qnet up -> qnet down) ----------------------------------------------


def _start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[2]


def write_state(root: Path, launcher: Launcher, **extra: Any) -> Path:
    """Record this process and ``launcher``'s servers in ``ROOT/qnet-up.json`` (rewritten whole, so
    call it again after starting more)."""
    path = root / STATE_FILE
    record = {"pid": os.getpid(), "start": _start_time(os.getpid()), "groups": launcher.groups(),
              "what": dict(launcher.what), **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
    return path


def _read_state(root: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _running(record: Mapping[str, Any]) -> dict[str, list[int]]:
    """What of a record still runs: description -> pids."""
    out: dict[str, list[int]] = {}
    pid, start = int(record["pid"]), record.get("start")
    if _pid_alive(pid, start):
        out["qnet up"] = [pid]
    what = record.get("what", {})
    for name, pgid in record.get("groups", {}).items():
        members = group_members(int(pgid), born_after=start)
        if members:
            out[str(what.get(name, name))] = members
    return out


def is_running(root: Path) -> bool:
    """Whether a network recorded in ``root`` still has a process running."""
    record = _read_state(root)
    return record is not None and bool(_running(record))


def stop_recorded(root: Path, *, grace_s: float = STOP_GRACE_S) -> int:
    """Stop the network recorded in ``ROOT/qnet-up.json``: SIGTERM to its ``qnet up`` process and to
    every server's process group, SIGKILL to whatever still runs after ``grace_s`` (``qnet up`` gets
    a little longer, to stop its own servers first), and wait until every process is gone.

    Returns:
        How many processes it stopped.

    Raises:
        QNetError: if nothing is recorded, nothing recorded runs any more (the stale record is
            removed), or something still runs after SIGKILL (named, with its pids).
    """
    record = _read_state(root)
    if record is None:
        raise QNetError(f"{root}: no network is running here (no {STATE_FILE})")
    running = _running(record)
    if not running:
        _forget(root)
        raise QNetError(f"{root}: the qnet up process {record['pid']} and its servers are gone; "
                        f"removed the stale {STATE_FILE}")
    count = sum(len(pids) for pids in running.values())
    pid, start = int(record["pid"]), record.get("start")
    groups = {str(n): int(g) for n, g in record.get("groups", {}).items()}
    if "qnet up" in running:
        _signal_pid(pid, signal.SIGTERM)
    for pgid in groups.values():
        if group_members(pgid, born_after=start):  # an empty group's id may since name someone else's
            _signal_group(pgid, signal.SIGTERM)
    if not _wait(lambda: not _running(record), grace_s + _KILL_WAIT_S):
        if _pid_alive(pid, start):
            _signal_pid(pid, signal.SIGKILL)
        for pgid in groups.values():
            if group_members(pgid, born_after=start):
                _signal_group(pgid, signal.SIGKILL)
        _wait(lambda: not _running(record), _KILL_WAIT_S)
    left = _running(record)
    if left:
        names = "; ".join(f"{what} (pid {', '.join(map(str, pids))})" for what, pids in left.items())
        raise QNetError(f"{root}: could not stop the network; still running: {names}")
    _forget(root)
    return count


def _forget(root: Path) -> None:
    """Remove what a running network leaves in its state directory (``qnet up`` removes it itself
    when it stops; a killed one cannot)."""
    for name in (STATE_FILE, "endpoints.json"):
        (root / name).unlink(missing_ok=True)
