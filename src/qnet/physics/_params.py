"""Declared ranges for model parameters, and the one routine that checks them.

Every parameter dataclass of :mod:`qnet.physics` lists each field's allowed values in a class-level
``LIMITS`` mapping. :func:`check` turns a dataclass instance into the list of problems it has, and
:func:`build` turns a mapping of names to values (from a spec file, the CLI or a script) into an
instance, reporting unknown names with a suggestion. Written by hand because the physics layer stays
free of pydantic (numpy only, DESIGN.md); the spec layer reuses these messages verbatim.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, TypeVar

from qnet.errors import ParameterError, Problem, did_you_mean

__all__ = ["DEVICE_LIMITS", "Choice", "Params", "Range", "build", "check"]


@dataclass(frozen=True)
class Range:
    """A numeric interval; ``None`` bounds are open-ended. ``optional`` admits ``None``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    integer: bool = False

    def problem(self, value: object) -> str | None:
        """Say what is wrong with ``value``, or ``None`` when it is allowed."""
        if value is None:
            return None if self.optional else "is required"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {reprlib.repr(value)}"
        try:
            x = float(value)
        except OverflowError:
            return "must be a finite number, got a number too large for a float"
        if not math.isfinite(x):
            return f"must be finite, got {value!r}"
        if self.integer and value != int(value):
            return f"must be a whole number, got {value!r}"
        if not self._inside(x):
            return f"must be {self.describe()}, got {reprlib.repr(value)}"
        return None

    def _inside(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def describe(self) -> str:
        """Words for the interval, e.g. ``> 0`` or ``in (0, 1]``."""
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"in {left}{self.lo:g}, {self.hi:g}{right}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "a number"


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings."""

    options: tuple[str, ...]

    def problem(self, value: object) -> str | None:
        """Say what is wrong with ``value``, or ``None`` when it is allowed."""
        if value in self.options:
            return None
        return f"must be one of {', '.join(self.options)}; got {reprlib.repr(value)}"

    def describe(self) -> str:
        """Words for the allowed values."""
        return "one of " + ", ".join(self.options)


Limit = Range | Choice


DEVICE_LIMITS: Mapping[str, Limit] = {
    "attenuation_db_per_km": Range(0.0),
    "extra_loss_db": Range(0.0),
    "detector_efficiency": Range(0.0, 1.0, lo_open=True),
    "misalignment": Range(0.0, 0.5),
    "ec_efficiency": Range(1.0),
    "rep_rate_hz": Range(0.0, lo_open=True),
}
"""Ranges of the parameters that every discrete-variable link model shares."""


class Params(Protocol):
    """What a parameter dataclass of the physics layer looks like."""

    LIMITS: ClassVar[Mapping[str, Limit]]


P = TypeVar("P", bound=Params)


def check(params: Params) -> list[Problem]:
    """Every problem of a parameter dataclass instance, one per bad field."""
    problems = []
    for field in fields(params):  # type: ignore[arg-type]
        limit = params.LIMITS.get(field.name)
        reason = limit.problem(getattr(params, field.name)) if limit else None
        if reason:
            problems.append(Problem(field.name, reason))
    return problems


def validate(params: Params) -> None:
    """Raise :class:`~qnet.errors.ParameterError` listing every bad field of ``params``, then every
    problem between fields (a ``cross_problems()`` method, where the dataclass has one)."""
    problems = check(params)
    cross = getattr(params, "cross_problems", None)
    if not problems and callable(cross):
        problems = list(cross())
    if problems:
        raise ParameterError(problems)


_UNSET_WORDS = {"none", "null", "auto", "unset"}


def _unset(limit: Limit | None, value: Any) -> Any:
    """``"none"``/``"auto"`` (any case) means unset for an optional number (``mu=auto``)."""
    optional = isinstance(limit, Range) and limit.optional
    if optional and isinstance(value, str) and value.strip().lower() in _UNSET_WORDS:
        return None
    return value


def build(cls: type[P], values: Mapping[str, Any]) -> P:
    """Make a parameter dataclass from a mapping, checking names and values.

    Integers are accepted where floats are expected. Unknown names are reported with the closest
    known name.

    Raises:
        ParameterError: listing every unknown name and every bad value.
    """
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    values = {str(k): _unset(cls.LIMITS.get(str(k)), v) for k, v in values.items()}
    problems = [
        Problem(name, "unknown parameter" + did_you_mean(name, known))
        for name in values
        if name not in known
    ]
    try:
        params = cls(**{k: v for k, v in values.items() if k in known})
    except ParameterError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ParameterError(problems)
    return params
