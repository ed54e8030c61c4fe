"""``python -m qnet``: the same as the ``qnet`` command."""

from qnet.cli.main import run

run()
