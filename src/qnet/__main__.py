"""``python -m qnet``: the same as the ``qnet`` command."""

from qnet.cli.main import run

if __name__ == "__main__":
    run()
