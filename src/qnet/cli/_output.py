"""What the CLI writes: strict JSON and plot files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

__all__ = ["PLOT_SUFFIXES", "check_plot_path", "to_json"]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _finite(value: Any) -> Any:
    """The value with every non-finite float replaced by ``None`` (JSON has no Infinity or NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Strict RFC 8259 JSON, indented: an infinite bound (at 0 km) or capacity becomes ``null``.

    Examples:
        >>> to_json({"bound": float("inf"), "rate": 0.5})
        '{\\n  "bound": null,\\n  "rate": 0.5\\n}'
    """
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def check_plot_path(path: Path) -> None:
    """Refuse a plot path before any work is done: it must name a .png, .svg or .pdf file in a
    directory that exists (nothing is created behind the user's back).

    Raises:
        typer.BadParameter: naming what is wrong.
    """
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise typer.BadParameter(f"give a file name ending in {', '.join(PLOT_SUFFIXES)}; got {str(path)!r}",
                                 param_hint="--plot")
    if not path.parent.is_dir():
        raise typer.BadParameter(f"directory {str(path.parent)!r} does not exist", param_hint="--plot")
