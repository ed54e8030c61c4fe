"""Checks across the sections of a spec, run on the raw YAML data.

Field checks (pydantic) stop at the first bad item of a field, but a user fixing a spec wants every
problem at once. So these checks read the raw mappings directly, using each value only when it has
the right shape, and skip what a field check has already reported (an invalid node is not also
reported as "unknown" wherever it is used).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import networkx as nx
from pydantic import ValidationError

from qnet.errors import ParameterError, Problem, UnknownProtocolError, did_you_mean
from qnet.physics.keyrate import get_protocol
from qnet.scenarios.spec import LinkSpec, NodeKind, NodeSpec
from qnet.units import parse_duration_s

__all__ = ["crossref_problems", "protocol_params"]

def crossref_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Every cross-reference problem of a raw spec."""
    return _Crossref(raw).problems()


def _items(raw: Mapping[str, Any], section: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = raw.get(section)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, Mapping)]


def _text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _pair(item: Mapping[str, Any], key: str) -> list[str] | None:
    value = item.get(key)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    return None


def _number(value: Any) -> float | None:
    """A finite number from a number or numeric text, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def protocol_params(protocol: str, params: Mapping[str, Any], attenuation_db_per_km: float | None,
                    extra_loss_db: float) -> Any:
    """A protocol's parameters: its defaults, then the link's attenuation and extra loss, then the
    link's ``params`` (numbers written as text, such as YAML's ``1e-6``, are read as numbers).

    Raises:
        UnknownProtocolError: if the protocol is unknown.
        ParameterError: if a parameter is unknown, out of range, or given twice.
    """
    model = get_protocol(protocol)
    values = {str(k): (_number(v) if isinstance(v, str) and _number(v) is not None else v)
              for k, v in params.items()}
    clashes = [k for k in ("attenuation_db_per_km", "extra_loss_db") if k in values]
    if clashes:
        raise ParameterError([Problem(k, "set it on the link itself, not in params") for k in clashes])
    if attenuation_db_per_km is not None:
        values["attenuation_db_per_km"] = attenuation_db_per_km
    values["extra_loss_db"] = extra_loss_db
    return model.params(values)


class _Crossref:
    """The cross-section checks of one raw spec."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.node_names = [(i, n) for i, item in _items(raw, "nodes") if (n := _text(item, "name"))]
        self.known_nodes = {n for _, n in self.node_names}
        counts = [n for _, n in self.node_names]
        self.nodes: dict[str, NodeSpec] = {}
        for _, item in _items(raw, "nodes"):
            try:
                node = NodeSpec.model_validate(item)
            except ValidationError:
                continue
            if counts.count(node.name) == 1:
                self.nodes[node.name] = node
        self.sae_nodes = {s: _text(item, "node") for _, item in _items(raw, "applications")
                          if (s := _text(item, "sae_id"))}

    def problems(self) -> list[Problem]:
        return [*_duplicates("nodes", self.node_names, "node name", "name"), *self._shared_names(),
                *self._satellites(), *self._links(), *self._applications(), *self._demands(),
                *self._excluded(), *self._faults()]

    def _shared_names(self) -> Iterator[Problem]:
        """A KME_ID and an SAE_ID are both a certificate's CN: no SAE may be named like a node, and
        no two names may differ only in case (file names on some systems, and people, do not tell).
        The same name twice in one section is :func:`_duplicates`' to report."""
        seen: dict[str, tuple[str, int, str]] = {}
        named = [("nodes", i, "name", n) for i, n in self.node_names] + [
            ("applications", i, "sae_id", s) for i, item in _items(self.raw, "applications")
            if (s := _text(item, "sae_id"))]
        for section, i, field, name in named:
            first = seen.setdefault(name.lower(), (section, i, name))
            if first[:2] != (section, i) and (first[0] != section or first[2] != name):
                yield Problem(f"{section}[{i}].{field}", f"{name!r} is already the name of {first[0]}[{first[1]}] "
                                                         f"({first[2]!r}): node names and SAE_IDs are identities, "
                                                         "unique whatever the case")

    def _unknown(self, path: str, name: str) -> list[Problem]:
        if name in self.known_nodes:
            return []
        return [Problem(path, f"unknown node {name!r}" + did_you_mean(name, sorted(self.known_nodes)))]

    def _satellites(self) -> Iterator[Problem]:
        for i, item in _items(self.raw, "nodes"):
            node = self.nodes.get(_text(item, "name") or "")
            if node and node.kind is NodeKind.SATELLITE and (node.location is None or node.location.altitude_km <= 0):
                yield Problem(f"nodes[{i}].location.altitude_km",
                              "a satellite needs a location with altitude_km > 0")

    def _links(self) -> Iterator[Problem]:
        labels = []
        for i, item in _items(self.raw, "links"):
            path, ends = f"links[{i}]", _pair(item, "endpoints")
            if ends:
                labels.append((i, _text(item, "name") or f"{ends[0]}-{ends[1]}"))
                yield from self._endpoints(path, item, ends)
            yield from self._protocol(path, item)
        yield from _duplicates("links", labels, "link name", "name", hint="; give parallel links distinct names")

    def _endpoints(self, path: str, item: Mapping[str, Any], ends: list[str]) -> Iterator[Problem]:
        unknown = [p for j, e in enumerate(ends) for p in self._unknown(f"{path}.endpoints[{j}]", e)]
        yield from unknown
        if ends[0] == ends[1]:
            yield Problem(f"{path}.endpoints", f"a link must join two different nodes, got {ends[0]!r} twice")
            return
        nodes = [self.nodes.get(e) for e in ends]
        if unknown or None in nodes:
            return  # an endpoint is unknown or failed its own checks: already reported
        try:
            link = LinkSpec.model_validate(item)
        except ValidationError:
            return
        yield from _geometry(path, link, [n for n in nodes if n is not None])

    def _protocol(self, path: str, item: Mapping[str, Any]) -> Iterator[Problem]:
        protocol, params = item.get("protocol", "bb84-decoy"), item.get("params", {})
        attenuation, extra = _number(item.get("attenuation_db_per_km")), _number(item.get("extra_loss_db", 0))
        if not isinstance(protocol, str) or not isinstance(params, Mapping):
            return
        try:
            protocol_params(protocol, params, attenuation if attenuation and attenuation >= 0 else None,
                            extra if extra and extra >= 0 else 0.0)
        except UnknownProtocolError as exc:
            yield Problem(f"{path}.protocol", f"unknown protocol {exc.name!r}" + did_you_mean(exc.name, exc.known)
                          + f" (known: {', '.join(exc.known)})")
        except ParameterError as exc:
            yield from (Problem(f"{path}.params.{p.path}", p.message) for p in exc.problems)

    def _applications(self) -> Iterator[Problem]:
        ids = []
        for i, item in _items(self.raw, "applications"):
            if sae := _text(item, "sae_id"):
                ids.append((i, sae))
            if node := _text(item, "node"):
                yield from self._unknown(f"applications[{i}].node", node)
            peers = item.get("peers") if isinstance(item, dict) else None
            for j, peer in enumerate(peers if isinstance(peers, list) else []):
                if isinstance(peer, str) and peer not in self.sae_nodes:
                    yield Problem(f"applications[{i}].peers[{j}]",
                                  f"unknown SAE {peer!r}" + did_you_mean(peer, sorted(self.sae_nodes)))
        yield from _duplicates("applications", ids, "SAE ID", "sae_id")

    def _demands(self) -> Iterator[Problem]:
        graph = self._graph()
        known = sorted(self.sae_nodes)
        for i, item in _items(self.raw, "demands"):
            path, saes = f"demands[{i}]", _pair(item, "between")
            if not saes:
                continue
            bad = [Problem(f"{path}.between[{j}]", f"unknown SAE {s!r}" + did_you_mean(s, known))
                   for j, s in enumerate(saes) if s not in self.sae_nodes]
            yield from bad
            if bad:
                continue
            if saes[0] == saes[1]:
                yield Problem(f"{path}.between", f"a demand needs two different SAEs, got {saes[0]!r} twice")
                continue
            a, b = (self.sae_nodes[s] for s in saes)
            if a in graph and b in graph and not nx.has_path(graph, a, b):
                yield Problem(path, f"disconnected: no chain of links joins {saes[0]!r} (at {a!r}) "
                                    f"and {saes[1]!r} (at {b!r})")

    def _graph(self) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(self.known_nodes)
        for _, item in _items(self.raw, "links"):
            ends = _pair(item, "endpoints")
            if ends and all(e in self.known_nodes for e in ends):
                graph.add_edge(*ends)
        return graph

    def _faults(self) -> Iterator[Problem]:
        links = {_text(item, "name") or "-".join(_pair(item, "endpoints") or [])
                 for _, item in _items(self.raw, "links")}
        for i, item in _items(self.raw, "faults"):
            path, action = f"faults[{i}]", _text(item, "action") or ""
            on_node = action in ("node_down", "node_up")
            want, other = ("node", "link") if on_node else ("link", "node")
            name = _text(item, want)
            if name is None:
                yield Problem(f"{path}.{want}", f"a {action or 'fault'} fault names a {want}")
            elif on_node:
                yield from self._unknown(f"{path}.node", name)
            elif name not in links:
                yield Problem(f"{path}.link", f"unknown link {name!r}" + did_you_mean(name, sorted(links)))
            if item.get(other) is not None:
                yield Problem(f"{path}.{other}", f"a {action} fault names a {want}, not a {other}")
            yield from _fault_times(path, item)

    def _excluded(self) -> Iterator[Problem]:
        policies = self.raw.get("policies")
        excluded = policies.get("excluded_nodes") if isinstance(policies, Mapping) else None
        for j, name in enumerate(excluded if isinstance(excluded, list) else []):
            if isinstance(name, str):
                yield from self._unknown(f"policies.excluded_nodes[{j}]", name.strip())


def _duplicates(section: str, named: list[tuple[int, str]], what: str, field: str,
                hint: str = "") -> Iterator[Problem]:
    first: dict[str, int] = {}
    for i, name in named:
        if name in first:
            yield Problem(f"{section}[{i}].{field}",
                          f"duplicate {what} {name!r} (first at {section}[{first[name]}]){hint}")
        first.setdefault(name, i)


def _geometry(path: str, link: LinkSpec, ends: list[NodeSpec]) -> Iterator[Problem]:
    if link.medium.value == "free_space" and link.attenuation_db_per_km is None:
        yield Problem(f"{path}.attenuation_db_per_km",
                      "required for a free_space link (the protocols' defaults are for fibre): give 0 and "
                      "put the whole path's loss (atmosphere, beam spread, pointing) in extra_loss_db, or "
                      "a loss per km for a horizontal path near the ground")
    if link.length_km is None:
        missing = [e.name for e in ends if e.location is None]
        if missing:
            yield Problem(f"{path}.length_km",
                          f"required, because node {missing[0]!r} has no location to compute it from")
    satellites = [e.name for e in ends if e.kind is NodeKind.SATELLITE]
    if satellites and link.medium.value == "fibre":
        yield Problem(f"{path}.medium", f"a link to satellite {satellites[0]!r} must be free_space, not fibre")


def _fault_times(path: str, item: Mapping[str, Any]) -> Iterator[Problem]:
    times = []
    for key in ("at", "until"):
        value = item.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            seconds = float(value) if isinstance(value, int | float) else parse_duration_s(str(value))
        except ValueError as exc:
            yield Problem(f"{path}.{key}", str(exc))
            continue
        if not math.isfinite(seconds) or seconds < 0:
            yield Problem(f"{path}.{key}", f"must be a time >= 0, got {value!r}")
            continue
        times.append(seconds)
    if len(times) == 2 and times[1] <= times[0]:
        yield Problem(f"{path}.until", "must come after 'at'")
