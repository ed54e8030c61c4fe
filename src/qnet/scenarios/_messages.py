"""Pydantic's validation errors rewritten as qnet :class:`~qnet.errors.Problem` lines.

Paths read as a user writes them (``links[3].length_km``) and messages in plain words
(``must be > 0``, ``unknown field; did you mean 'length_km'?``).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from qnet.errors import Problem, did_you_mean

__all__ = ["format_loc", "pydantic_problems"]


def format_loc(loc: Sequence[int | str]) -> str:
    """``('links', 3, 'length_km')`` -> ``links[3].length_km``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every field name of a model and the models nested in it."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for arg in _types_in(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names |= _field_names(arg, seen)
    return names


def _types_in(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [t for a in args for t in _types_in(a)]


def _length_message(ctx: dict[str, Any], value: Any) -> str:
    lo, hi = ctx.get("min_length"), ctx.get("max_length")
    count = len(value)
    if lo is not None and lo == hi:
        return f"must list exactly {lo} entries, got {count}"
    if lo:
        return f"must list at least {lo} entr{'y' if lo == 1 else 'ies'}, got {count}"
    return f"must list at most {hi} entries, got {count}"


_MESSAGES: dict[str, Callable[[dict[str, Any], Any], str]] = {
    "greater_than": lambda c, v: f"must be > {c['gt']:g}, got {v!r}",
    "greater_than_equal": lambda c, v: f"must be >= {c['ge']:g}, got {v!r}",
    "less_than": lambda c, v: f"must be < {c['lt']:g}, got {v!r}",
    "less_than_equal": lambda c, v: f"must be <= {c['le']:g}, got {v!r}",
    "missing": lambda c, v: "is required",
    "enum": lambda c, v: f"must be one of {c['expected'].replace(' or ', ', ').replace(chr(39), '')}; got {v!r}",
    "float_parsing": lambda c, v: f"must be a number, got {v!r}",
    "float_type": lambda c, v: f"must be a number, got {v!r}",
    "finite_number": lambda c, v: f"must be a finite number, got {v!r}",
    "float_from_int": lambda c, v: "must be a finite number, got a number too large for a float",
    "int_parsing": lambda c, v: f"must be a whole number, got {v!r}",
    "int_type": lambda c, v: f"must be a whole number, got {v!r}",
    "int_from_float": lambda c, v: f"must be a whole number, got {v!r}",
    "string_type": lambda c, v: f"must be text, got {v!r}",
    "string_too_short": lambda c, v: "must not be empty",
    "string_pattern_mismatch": lambda c, v: "must not contain control characters",
    "string_too_long": lambda c, v: f"must be at most {c['max_length']} characters",
    "list_type": lambda c, v: f"must be a list, got {type(v.value).__name__}",
    "dict_type": lambda c, v: f"must be a mapping, got {type(v.value).__name__}",
    "model_type": lambda c, v: f"must be a mapping, got {type(v.value).__name__}",
    "value_error": lambda c, v: str(c.get("error", "is not valid")),
    "too_short": _length_message,
    "too_long": _length_message,
}


_PAIRS = {"endpoints", "between"}
"""Fields that hold exactly two names."""


def pydantic_problems(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """One :class:`Problem` per pydantic error, with qnet's paths and words."""
    known = sorted(_field_names(model))
    problems = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not _is_union_tag(p)]
        kind, ctx, value = err["type"], err.get("ctx", {}), _Short(err.get("input"))
        if kind == "extra_forbidden":
            message = "unknown field" + did_you_mean(str(loc[-1]), known)
        elif kind in {"too_short", "too_long"} and loc and loc[-1] in _PAIRS:
            message = f"must list exactly 2 names, got {len(value)}"
        elif kind.startswith("float") and isinstance(value.value, int) and not isinstance(value.value, bool):
            message = "must be a finite number, got a number too large for a float"
        elif kind in _MESSAGES:
            message = _MESSAGES[kind](ctx, value)
        else:
            message = err["msg"][0].lower() + err["msg"][1:]
        problems.append(Problem(format_loc(loc), message))
    return _dedupe(problems)


class _Short:
    """A value that shows itself briefly (``reprlib``): a message never prints a huge input."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return reprlib.repr(self.value)

    def __len__(self) -> int:
        return len(self.value) if hasattr(self.value, "__len__") else 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.value, name)


def _is_union_tag(part: int | str) -> bool:
    """Pydantic names the union branch it tried (``float``, ``str``...) inside the path."""
    return isinstance(part, str) and (part in {"float", "str", "int", "none"} or "[" in part)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Keep one problem per path: a union reports each branch it tried."""
    seen: dict[str, Problem] = {}
    for p in problems:
        seen.setdefault(p.path, p)
    return list(seen.values())
