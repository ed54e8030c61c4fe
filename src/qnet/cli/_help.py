"""How ``--help`` reads: the top-level text, and no type label on flags.

Typer's rich help prints a type label beside every option, flags included, so that ``--json`` and
``--help`` read ``<bool>`` although they take no value. :func:`plain_flags` walks the command tree
once it is built and gives every flag (the ``--help`` option too) an empty metavar, which is what
the label shows.
"""

from __future__ import annotations

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["TOP_HELP", "plain_flags"]

TOP_HELP = """\
qnet runs a quantum key distribution (QKD) network on one machine. Plan it
from the physics, simulate days of its life in seconds, or start it live:
one key manager (KME) per node serving keys over ETSI GS QKD 014 with mutual
TLS, key relay through trusted nodes, a controller and a web dashboard.
A network is one YAML spec file (SPEC: e.g. examples/tokyo-qkd-network.yaml).

[bold]Plan[/]
  qnet keyrate -d 0:150:10              key rate against fibre length (km)
  qnet keyrate --spec SPEC              every link and demand of a network
  qnet validate SPEC                    check a spec file
[bold]Simulate[/]
  qnet simulate SPEC                    a day of the network, with its faults
  qnet link simulate -d 50 --pulses 1e9 one link, photon by photon
[bold]Run it live[/]
  qnet up SPEC --state-dir tokyo        start it; prints the dashboard's URL
  qnet down --state-dir tokyo           stop it
  qnet receive, qnet send FILE          a file between two SAEs, QKD-keyed
  qnet pki init DIR, qnet kme serve DIR the parts by hand (docs/kme.md)
  qnet controller, qnet audit           the controller's API, the audit log

Every command has its own --help."""


def plain_flags(command: TyperCommand | TyperGroup) -> None:
    """Give every flag of ``command`` and its subcommands, ``--help`` included, an empty type label."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if getattr(param, "is_flag", False):
            param.metavar = ""  # type: ignore[union-attr]
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                plain_flags(sub)
