"""The server host: one process that imports the servers' code once and forks each KME and the
controller from it, so that a network of N servers pays Python's start-up and imports (about 1.1
CPU-seconds a server: FastAPI, uvicorn, SQLAlchemy, cryptography, httpx) once instead of N times.
On Kanto's 12 servers that is about 13 CPU-seconds, half of what starting them cost on 2 cores.

The standard library's ``multiprocessing`` forkserver does the same for functions, but its children
cannot lead their own sessions, log to their own files or die with the launcher as the launcher's
servers must (:mod:`qnet.scenarios.launcher`), so the host is written here, small: the launcher
starts it (``python -m qnet.cli.forkhost REQ REP``, leading its own session, dying with the
launcher), and talks to it over two pipes of JSON lines::

    launcher -> host   {"name": NAME, "args": [ARG, ...], "log": PATH | null}
    host -> launcher   {"name": NAME, "pid": PID}            once the server leads its own session
                       {"name": NAME, "error": TEXT}         if it could not be forked
                       {"pid": PID, "code": STATUS}          when it has exited (negative: a signal)

Each server is forked before the host has any thread (the host never starts one), leads its own
session, asks the kernel for SIGTERM when the host dies (``PR_SET_PDEATHSIG``) and then runs
``qnet ARGS`` exactly as ``python -m qnet ARGS`` would. The host ends when the launcher closes its
pipe or dies, or on SIGTERM: it then stops the servers still running (SIGTERM, then SIGKILL after
the launcher's grace period) and exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import selectors
import signal
import sys
import time
from types import FrameType
from typing import Any

__all__ = ["PRELOAD", "main"]

PRELOAD = ("qnet.cli.main", "qnet.cli.kme", "qnet.cli.controller", "qnet.servers.config", "qnet.servers.kme",
           "qnet.servers.node", "qnet.servers.agent", "qnet.servers.controller", "qnet.servers.dashboard",
           "qnet.servers.fcaps", "qnet.clients.km", "qnet.keys.store", "qnet.control.routing")
"""What the host imports before it forks anything: what ``qnet kme serve`` and ``qnet controller
serve`` import (the physics stays out: KMEs started with ``--no-links`` never simulate)."""
_REAP_S = 0.2
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_STOP = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class _Host:
    def __init__(self, req: int, rep: int) -> None:
        self.req, self.rep = req, rep
        self.children: dict[int, str] = {}
        self.buffer = b""
        self.closing = False

    def run(self) -> None:
        os.set_blocking(self.req, False)
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.req, selectors.EVENT_READ)
                while not self.closing:
                    if sel.select(_REAP_S):
                        self._read()
                    self._reap()
        finally:
            self._stop_children()

    def _read(self) -> None:
        try:
            chunk = os.read(self.req, 65536)
        except BlockingIOError:
            return
        if not chunk:  # the launcher closed its end, or died
            self.closing = True
            return
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            name = None
            try:  # one server that cannot start (no pid left, no memory) is that server's error only
                request = json.loads(line)
                name = str(request["name"])
                self._say({"name": name, "pid": self._fork(request)})
            except Exception as exc:
                self._say({"name": name, "error": f"{type(exc).__name__}: {exc}"})

    def _fork(self, request: dict[str, Any]) -> int:
        """Fork server ``request``; return its pid once it leads its own session and has its own
        signal handlers (a stop sent at once then reaches it, not the host's handlers)."""
        sys.stdout.flush()
        sys.stderr.flush()
        ready_r, ready_w = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)  # none may run the host's handler in the child
        try:
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                _child(request, ready_w, self.req, self.rep)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            ready.read(1)  # the child's word, or EOF if it died first
        self.children[pid] = request["name"]
        return pid

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.pop(pid, None)
            self._say({"pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def _say(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # a launcher that has gone hears nothing
            os.write(self.rep, (json.dumps(message) + "\n").encode())

    def _stop_children(self, grace_s: float = 15.0) -> None:
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        while self.children:
            self._reap()
            time.sleep(0.05)

    def close(self, signum: int, _: FrameType | None) -> None:
        self.closing = True


def _child(request: dict[str, Any], ready: int, *pipes: int) -> None:
    """In the forked child: become server ``request["name"]`` and run ``qnet ARGS``; exit with its
    status as the interpreter would (atexit handlers run; SystemExit and KeyboardInterrupt alike)."""
    code, interrupted = 1, False
    try:
        for fd in pipes:
            os.close(fd)
        os.setsid()
        host = os.getppid()
        _die_with_parent()
        if os.getppid() != host:
            os._exit(1)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _name(f"qnet {request['name']}")
        os.write(ready, b"1")  # a session of its own and its own handlers: the host may now say its pid
        os.close(ready)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        if request.get("log"):
            out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
        from qnet.cli.main import main

        sys.argv = ["qnet", *request["args"]]
        code = main(request["args"])
    except SystemExit as exc:
        code = _exit_status(exc)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        import traceback

        traceback.print_exc()
    _flush_and_run_atexit()
    if interrupted:  # end by the signal, as the interpreter does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 128 + signal.SIGINT
    os._exit(code)


def _exit_status(exc: SystemExit) -> int:
    """The status the interpreter gives ``SystemExit(code)``: None is 0, a number itself, any other
    value is printed and gives 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _flush_and_run_atexit() -> None:
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()


def _name(title: str) -> None:
    """Name the process (``ps -o comm``, ``pgrep``, ``top``): its command line stays the host's."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, title.encode()[:15], 0, 0, 0)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def main(argv: list[str] | None = None) -> None:
    """``python -m qnet.cli.forkhost REQ REP``: serve fork requests on the two pipe fds."""
    from qnet.scenarios.launcher import die_with_parent

    die_with_parent()
    req, rep = (int(a) for a in (sys.argv[1:] if argv is None else argv))
    host = _Host(req, rep)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, host.close)
    for module in PRELOAD:
        importlib.import_module(module)
    host.run()


if __name__ == "__main__":
    main()
