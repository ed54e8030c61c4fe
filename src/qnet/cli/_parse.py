"""Parsing the CLI's compact arguments: distance ranges and ``name=value`` parameters.

Errors are :class:`typer.BadParameter`, which the CLI prints with the option's name.
"""

from __future__ import annotations

import math
from typing import Any

import typer

__all__ = ["parse_distances", "parse_params", "parse_value"]

MAX_POINTS = 100_000


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{what} must be a finite number >= 0, got {text!r}")
    return value


def parse_distances(text: str) -> list[float]:
    """``"0:200:5"`` (stop included), ``"10,50,100"`` or ``"50"`` -> distances in km.

    Examples:
        >>> parse_distances("0:20:5")
        [0.0, 5.0, 10.0, 15.0, 20.0]
        >>> parse_distances("10, 50")
        [10.0, 50.0]
    """
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise typer.BadParameter(f"a range is START:STOP:STEP, got {text!r}")
        start, stop, step = (_number(p, n) for p, n in zip(parts, ("START", "STOP", "STEP"), strict=True))
        if step <= 0 or stop < start:
            raise typer.BadParameter(f"need STEP > 0 and STOP >= START, got {text!r}")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_POINTS:
            raise typer.BadParameter(f"{count} points is too many (at most {MAX_POINTS})")
        return [round(start + i * step, 9) for i in range(count)]
    return [_number(p.strip(), "a distance") for p in text.split(",") if p.strip()] or _empty(text)


def _empty(text: str) -> list[float]:
    raise typer.BadParameter(f"no distance given in {text!r}")


def parse_value(text: str) -> Any:
    """A parameter value: a number if it reads as one, else text (the model decides what text
    means: ``decoy=none`` is a choice, ``mu=auto`` leaves mu to the optimiser)."""
    try:
        return float(text)
    except ValueError:
        return text


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["mu=0.5", "decoy=none"]`` -> ``{"mu": 0.5, "decoy": "none"}``.

    Examples:
        >>> parse_params(["mu=0.5", "decoy=vacuum+weak"])
        {'mu': 0.5, 'decoy': 'vacuum+weak'}
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        if name.strip() in out:
            raise typer.BadParameter(f"{name.strip()} is given twice", param_hint="--param")
        out[name.strip()] = parse_value(value.strip())
    return out
