"""The one exception tree of qnet.

Every error qnet raises on purpose derives from :class:`QNetError`, so a caller (the CLI, a server's
error handler) can catch the whole family in one place and translate it once at its boundary. The
first level says what kind of failure it is, in words a server can translate (each server maps these
classes to HTTP statuses in one table, :data:`qnet.servers.errors.ETSI014_STATUS` and
:data:`~qnet.servers.errors.CONTROL_STATUS`); no error carries an HTTP status itself. Below them,
each layer's errors carry their context (``NoRouteError(src, dst)``,
``InsufficientKeyError(requested, available)``) and a message naming what is wrong; ``details`` are
the ETSI 014 error body's entries (which key_ID, which SAE).

::

    QNetError
    ├── InvalidRequestError (+ValueError)   the input is malformed; names the field
    │   ├── ParameterError                    a model parameter is out of its range
    │   ├── SpecError                         a network spec file is invalid; every Problem found
    │   ├── UnknownProtocolError              a protocol name is not in the registry
    │   ├── StoreError                        the key store refuses a request (keys.store)
    │   │   └── MalformedMessageError             a signed KM-to-KM message outside the protocol
    │   └── FrameError                        a QKD-keyed channel frame refused (service._frames)
    ├── UnauthorizedError                   the caller is not known, or may not have these keys
    │   ├── EnvelopeError                     a KM-to-KM message refused: forged, replayed, stale (security.envelope)
    │   └── AuthenticationFailed              a post-processing message's tag does not verify (quantum)
    ├── ForbiddenError                      the caller is known but may not do this (operator-only)
    ├── NotFoundError (+LookupError)        no such node, link, session or alarm
    ├── ConflictError                       it exists already: a session open twice, a port in use
    │   └── PortInUseError                    a server's port is held by another process
    └── UnavailableError                    cannot be served now; may succeed later
        ├── NoRouteError                      no usable path joins two nodes (src, dst)
        ├── InsufficientKeyError (+StoreError)  fewer keys than asked for (requested, available)
        ├── CapacityError                     a demand exceeds what a route has left
        ├── PeerError                         a peer KME did not answer, or refused (what it answered)
        ├── AuditError                        the audit log cannot be written (management.audit)
        ├── KeyExhaustedError                 not enough key to send a message; nothing sent (service._frames)
        └── KeyStreamError                    an ETSI 004 call answered a status other than success (clients.etsi004)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CapacityError",
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "KeyStreamError",
    "NoRouteError",
    "NotFoundError",
    "ParameterError",
    "PeerError",
    "PortInUseError",
    "Problem",
    "QNetError",
    "SpecError",
    "UnauthorizedError",
    "UnavailableError",
    "UnknownProtocolError",
    "did_you_mean",
]


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` hint for a misspelt name, or an empty string.

    Examples:
        >>> did_you_mean("detector_efficency", ["detector_efficiency", "mu"])
        "; did you mean 'detector_efficiency'?"
    """
    text, options = str(name), sorted(known)
    close = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
    if not close and text:
        close = [k for k in options if k.startswith(text)][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


class QNetError(Exception):
    """Root of every error qnet raises on purpose.

    Attributes:
        message: what went wrong, for a person.
        details: the ETSI 014 error body's entries (e.g. ``{"key_ID": ...}``), possibly none.
    """

    def __init__(self, message: str = "", details: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = [dict(d) for d in details]

    def __reduce__(self) -> tuple[Any, ...]:
        """Errors cross processes whole (multiprocessing, Dask), whatever their constructor takes:
        rebuilt from their attributes, not by calling it again."""
        return _rebuild, (type(self), self.args, self.__dict__)


class InvalidRequestError(QNetError, ValueError):
    """The input (a request, a file, an argument) is malformed; the message names what is wrong."""


class UnauthorizedError(QNetError):
    """The caller is not known here, or may not have these keys (access control)."""


class ForbiddenError(QNetError):
    """The caller is known but may not do this (an operator's action, another SAE's session)."""


class NotFoundError(QNetError, LookupError):
    """No such node, link, session or alarm."""


class ConflictError(QNetError):
    """What a request would create exists already."""


class UnavailableError(QNetError):
    """The request cannot be served now (no route, not enough key, a peer down); it may succeed later."""


def _rebuild(cls: type[QNetError], args: tuple[Any, ...], state: dict[str, Any]) -> QNetError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by a path such as ``links[3].length_km``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ParameterError(InvalidRequestError):
    """One or more model parameters are outside their allowed range.

    Attributes:
        problems: one :class:`Problem` per bad parameter; ``path`` is the parameter's name.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class SpecError(InvalidRequestError):
    """A network spec file is invalid.

    Attributes:
        source: the file (or other origin) the spec came from.
        problems: every problem found, each naming the field it concerns.
    """

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class UnknownProtocolError(InvalidRequestError):
    """A protocol name is not one qnet knows.

    Attributes:
        name: the name asked for.
        known: the names qnet knows.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown protocol {name!r}; known protocols: {', '.join(self.known)}")


class NoRouteError(UnavailableError):
    """No usable path joins two nodes of a network.

    Attributes:
        src: the node the route should start at.
        dst: the node the route should end at.
        reason: why none is usable (every path down, a node excluded, too many hops), if known.
    """

    def __init__(self, src: str, dst: str, reason: str = "") -> None:
        self.src, self.dst, self.reason = src, dst, reason
        super().__init__(f"no route from {src} to {dst}{': ' + reason if reason else ''}")


class KeyStreamError(UnavailableError):
    """An ETSI GS QKD 004 call answered a status other than success.

    Attributes:
        status: the standard's status value (``qnet.service.etsi004.Status``, an int).
        qos: for QOS_NOT_MET, the KME's counter-proposal (a ``QoS``), else None.
    """

    def __init__(self, status: int, message: str, *, qos: Any = None) -> None:
        super().__init__(message, [{"status": int(status)}])
        self.status, self.qos = status, qos


class CapacityError(UnavailableError):
    """A demand exceeds what a hop of its route has left.

    Attributes:
        hop: the hop's two nodes.
        requested_bps: the demand's key rate.
        available_bps: what the hop has left for it.
    """

    def __init__(self, hop: tuple[str, str], requested_bps: float, available_bps: float, message: str) -> None:
        self.hop, self.requested_bps, self.available_bps = hop, requested_bps, available_bps
        super().__init__(message)


class PortInUseError(ConflictError):
    """A server's port is held by another process (another qnet network, or any other program).

    Args:
        busy: ``(host, port, what)`` of each port found in use; ``what`` names the server, e.g. ``"KME of Alice"``.
        hint: what to do about it, appended to the message.
    """

    def __init__(self, busy: list[tuple[str, int, str]], hint: str = "") -> None:
        self.busy = busy
        ports = ", ".join(f"{port} ({what})" for _, port, what in busy)
        hosts = ", ".join(sorted({host for host, _, _ in busy}))
        verb = "is" if len(busy) == 1 else "are"
        super().__init__(f"port{'s' * (len(busy) > 1)} {ports} on {hosts} {verb} already in use by another "
                         f"process{': ' + hint if hint else ''}")
        self.hint = hint


class PeerError(UnavailableError):
    """A peer key manager could not be reached (``peer_status`` None), or refused a KM-to-KM
    message: what it answered (``peer_status``, ``body``: its error body). Raised by the KM clients
    and by any transport a key manager is given (:mod:`qnet.keys.relayer`)."""

    def __init__(self, message: str, peer_status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.peer_status, self.body = peer_status, body
