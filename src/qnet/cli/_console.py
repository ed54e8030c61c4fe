"""Rich consoles for the CLI: results to stdout, messages and progress to stderr.

When stdout is not a terminal (a pipe, a file, a test), tables get 120 columns instead of rich's
default 80, so that they are not cut.
"""

from __future__ import annotations

import sys

from rich.console import Console

__all__ = ["console", "err_console"]

_PIPE_WIDTH = 120


def _width(stream: object) -> int | None:
    return None if getattr(stream, "isatty", lambda: False)() else _PIPE_WIDTH


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))
