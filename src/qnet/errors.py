"""The one exception tree of qnet.

Every error qnet raises on purpose derives from :class:`QNetError`, so a caller (the CLI, a server's
error handler) can catch the whole family in one place and translate it once at its boundary. Errors
that signal a bad argument also derive from :class:`ValueError`, so generic code that expects a
``ValueError`` still works.

::

    QNetError
    ├── ParameterError (+ValueError)     a model parameter is out of its range; names the field
    ├── SpecError (+ValueError)          a network spec file is invalid; carries every Problem found
    ├── UnknownProtocolError (+ValueError)  a protocol name is not in the registry
    └── NoRouteError                     no path joins two nodes (src, dst)

Later layers add their own branches under :class:`QNetError` (key management, relay, servers) and
draw them here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "NoRouteError",
    "ParameterError",
    "Problem",
    "QNetError",
    "SpecError",
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
    """Root of every error qnet raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by a path such as ``links[3].length_km``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ParameterError(QNetError, ValueError):
    """One or more model parameters are outside their allowed range.

    Attributes:
        problems: one :class:`Problem` per bad parameter; ``path`` is the parameter's name.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class SpecError(QNetError, ValueError):
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


class UnknownProtocolError(QNetError, ValueError):
    """A protocol name is not one qnet knows.

    Attributes:
        name: the name asked for.
        known: the names qnet knows.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown protocol {name!r}; known protocols: {', '.join(self.known)}")


class NoRouteError(QNetError):
    """No path joins two nodes of a network.

    Attributes:
        src: the node the route should start at.
        dst: the node the route should end at.
    """

    def __init__(self, src: str, dst: str) -> None:
        self.src = src
        self.dst = dst
        super().__init__(f"no route from {src!r} to {dst!r}")
