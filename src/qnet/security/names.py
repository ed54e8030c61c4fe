"""Names that are identities: KME_IDs (node names), SAE_IDs, link names, and the roles a
certificate carries.

A name becomes a certificate's subject CN, a file name (``kme/NAME.pem``, ``store/NAME.db``), a path
segment of a URL (``/api/links/NAME/cut``) and a key in the controller's tables, so it must be safe
in all of them: an ASCII letter or digit first, then letters, digits, ``_`` and ``-``, at most 64
(no ``.``, ``/`` or ``\\``: no ``..``, no path). Rights never come from a name: a certificate's
role is its subject OU, which only the CA sets (:data:`ROLES`), and the role words, with the other
names the servers use for themselves, are reserved (:data:`RESERVED`, in any case), so that no
node or SAE can be named like a role or a server. Names are compared case-insensitively for
uniqueness, as file systems and people do.

Examples:
    >>> name_problem("Tokyo-1"), name_problem("SAE_A")
    (None, None)
    >>> name_problem("../kme/Alice")
    "may hold only ASCII letters, digits, '_' and '-', starting with a letter or digit (got '../kme/Alice')"
    >>> name_problem("Operator")
    "'Operator' is reserved (a role or a server's own name): choose another"
"""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "RESERVED", "ROLES", "check_name", "name_problem"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""A safe identity name (a regular expression, for pydantic's ``pattern`` too)."""

ROLES = ("kme", "sae", "controller", "operator", "monitor")
"""The roles a certificate's subject OU names (set by the CA: :meth:`qnet.security.pki.PKI.issue`);
``monitor`` may only read (a Prometheus scraper, say)."""

RESERVED = frozenset({*ROLES, "ca", "dashboard", "store", "audit", "logs", "endpoints", "qnet-up", "admin", "root",
                      "localhost"})
"""Names no node or SAE may take (compared case-insensitively): the roles, and the names of a state
directory's own files and folders (``endpoints.json``, ``qnet-up.json``, ``logs/``...), which a node's
``NODE.json`` would otherwise overwrite."""

_NAME = re.compile(NAME_PATTERN)


def name_problem(name: object, *, reserved: bool = True) -> str | None:
    """What is wrong with ``name`` as an identity name (``reserved``: also refusing the reserved
    words, as for a node or an SAE), or None if nothing is."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return ("may hold only ASCII letters, digits, '_' and '-', starting with a letter or digit"
                f" (got {name!r})" if isinstance(name, str) and len(name) <= 64
                else f"must be 1 to 64 ASCII letters, digits, '_' and '-' (got {str(name)[:70]!r})")
    if reserved and name.lower() in RESERVED:
        return f"{name!r} is reserved (a role or a server's own name): choose another"
    return None


def check_name(name: str, what: str, *, reserved: bool = True) -> str:
    """``name`` if it is a safe identity name (``reserved``: as :func:`name_problem`).

    Raises:
        ValueError: naming ``what`` and the problem.
    """
    if (problem := name_problem(name, reserved=reserved)) is not None:
        raise ValueError(f"{what} {problem}")
    return name
