"""Loading and checking network spec files, reporting every problem with its path.

:func:`load_spec` reads YAML, checks every field (pydantic, messages rewritten in plain words) and
then the cross-references a field check cannot see: duplicate names, unknown nodes and SAEs, links
whose length cannot be known, satellites on fibre, protocol parameters (checked by the physics
models themselves), and demands between SAEs that no chain of links joins. Nothing is partially
loaded: either every check passes and a frozen :class:`~qnet.scenarios.spec.NetworkSpec` comes
back, or :class:`~qnet.errors.SpecError` lists all the problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from qnet.errors import Problem, SpecError
from qnet.scenarios._crossref import crossref_problems, protocol_params
from qnet.scenarios._messages import pydantic_problems
from qnet.scenarios.spec import LinkSpec, NetworkSpec

__all__ = ["check_spec", "link_protocol_params", "load_spec", "parse_spec"]


def load_spec(path: str | Path) -> NetworkSpec:
    """Read and check a spec file.

    Raises:
        SpecError: listing every problem, each with the path of the field it concerns.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), [Problem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [Problem("", f"cannot read the file: {exc}")]) from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, *, source: str = "<spec>") -> NetworkSpec:
    """Parse and check a spec from YAML text.

    Raises:
        SpecError: listing every problem found.
    """
    try:
        raw = yaml.load(text, Loader=_SpecLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [Problem("", f"YAML syntax error{where}: {reason}")]) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits
        raise SpecError(source, [Problem("", f"a value cannot be read: {str(exc).split(';')[0][:200]}")]) from None
    return check_spec(raw, source=source)


MAX_DEPTH = 32
"""How deeply a spec file may nest (a network spec needs five levels; thousands overflow the parser's stack)."""


class _SpecLoader(yaml.SafeLoader):
    """YAML's safe loader, stricter: a key given twice in one mapping is an error (YAML says keys
    are unique; PyYAML keeps the last silently), and aliases (``*name``) are refused, so that a
    small file cannot expand into an exponentially large spec; nesting deeper than :data:`MAX_DEPTH`
    is refused before it exhausts the stack."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in spec files",
                                              event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return mapping


def check_spec(raw: Any, *, source: str = "<spec>") -> NetworkSpec:
    """Check a spec already parsed into Python values.

    Raises:
        SpecError: listing every problem found.
    """
    if raw is None:
        raise SpecError(source, [Problem("", "the spec is empty")])
    if not isinstance(raw, Mapping):
        problem = "the top level must be a mapping with name, nodes, links, applications, demands"
        raise SpecError(source, [Problem("", f"{problem}; got {type(raw).__name__}")])
    problems: list[Problem] = []
    spec: NetworkSpec | None = None
    try:
        spec = NetworkSpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, NetworkSpec))
    problems = _merge(problems, crossref_problems(raw))
    if problems or spec is None:
        raise SpecError(source, problems)
    return spec


def _merge(first: list[Problem], second: list[Problem]) -> list[Problem]:
    """All problems in spec order, one per path (the field check's, when both found one)."""
    by_path: dict[str, Problem] = {}
    for p in [*first, *second]:
        by_path.setdefault(p.path, p)
    return sorted(by_path.values(), key=_order)


def _order(problem: Problem) -> tuple[int, list[tuple[int, str]]]:
    sections = ("", "name", "description", "nodes", "links", "applications", "demands", "policies")
    head = problem.path.split(".")[0].split("[")[0]
    keys = [(int(part), "") if part.isdigit() else (0, part)
            for part in problem.path.replace("[", ".").replace("]", "").split(".")]
    return (sections.index(head) if head in sections else len(sections)), keys


def link_protocol_params(link: LinkSpec) -> Any:
    """The protocol parameters of a link: the protocol's defaults, the link's attenuation and extra
    loss, then its ``params``.

    Raises:
        UnknownProtocolError: if the protocol is unknown.
        ParameterError: if a parameter is unknown, out of range, or given twice.
    """
    return protocol_params(link.protocol, link.params, link.attenuation_db_per_km, link.extra_loss_db)

