"""The ``qnet`` command line: a thin Typer app, one module per subcommand.

Each subcommand module imports the heavy parts (numpy, scipy, matplotlib) inside its function, so
``qnet --help`` stays fast. Every error qnet raises on purpose is printed as one clear message and
exits 1; an unexpected one is reported as an internal error without a traceback unless
``QNET_DEBUG=1`` is set.
"""

from qnet.cli.main import app, main

__all__ = ["app", "main"]
