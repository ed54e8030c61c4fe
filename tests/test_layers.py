"""The layers of DESIGN.md: imports point down only. A lower layer importing a higher one fails.

The rule is read from every module's source (AST), so it also covers imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "qnet"

# What each layer may import from qnet (besides itself). The leaves import nothing of qnet's.
_BASE = {"units", "errors"}
ALLOWED: dict[str, set[str]] = {
    "units": set(),
    "errors": set(),
    "physics": _BASE,
    "sim": _BASE,
    "security": _BASE,
    "quantum": _BASE | {"physics", "sim", "security"},
    "keys": _BASE | {"security"},
    "control": _BASE | {"keys", "security"},
    "service": _BASE | {"keys", "control", "security"},
    "management": _BASE | {"keys", "control", "service", "security"},
    "clients": _BASE | {"service", "security"},
    "servers": _BASE | {"physics", "sim", "quantum", "keys", "control", "service", "management",
                        "security", "clients"},
    "scenarios": _BASE | {"physics", "sim", "quantum", "keys", "control", "service", "management",
                          "security", "clients", "servers"},
    "cli": _BASE | {"physics", "sim", "quantum", "keys", "control", "service", "management",
                    "security", "clients", "servers", "scenarios"},
    "__main__": {"cli"},  # ``python -m qnet``
}


def layer_of(module: str) -> str | None:
    """``qnet.physics.bb84`` -> ``physics``; ``qnet`` itself -> ``None``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "qnet" else None


def qnet_imports(source: str, module: str) -> set[str]:
    """Every qnet module a source imports (absolute or relative), at any depth."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("qnet")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: -node.level]
                base = ".".join([*pkg, base]) if base else ".".join(pkg)
            if base.startswith("qnet"):
                found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def violations(source: str, module: str) -> list[str]:
    """The imports of ``module`` that break the layer rule."""
    own = layer_of(module)
    if own is None:
        return []
    bad = []
    for target in sorted(qnet_imports(source, module)):
        layer = layer_of(target)
        if layer and layer != own and layer in ALLOWED and layer not in ALLOWED[own]:
            bad.append(f"{module} imports {target} ({own} -> {layer})")
    return bad


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out.append((name, path))
    return out


def test_every_layer_is_known() -> None:
    """Each top-level package of qnet appears in the layer table."""
    tops = {layer_of(m) for m, _ in modules()} - {None}
    assert tops <= set(ALLOWED), tops - set(ALLOWED)


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(module: str, path: Path) -> None:
    """No module imports a layer above its own."""
    assert violations(path.read_text(), module) == []


@pytest.mark.parametrize(("module", "source"), [
    ("qnet.physics.fibre", "from qnet.keys import store"),
    ("qnet.keys.pool", "import qnet.quantum.links"),
    ("qnet.keys.pool", "def f():\n    from qnet.physics import bb84\n"),
    ("qnet.control.routing", "from ..servers import kme"),
    ("qnet.physics.bb84", "from qnet.sim import Environment"),
])
def test_checker_catches_upward_imports(module: str, source: str) -> None:
    """The checker itself fails on upward imports, including relative and function-level ones."""
    assert violations(source, module)


def test_checker_allows_downward_imports() -> None:
    """Downward and same-layer imports pass."""
    assert violations("from qnet.physics.bb84 import X\nfrom . import channels\n", "qnet.physics.cvqkd") == []
    assert violations("from qnet.physics import key_rate\n", "qnet.scenarios.planner") == []


def _module_graph() -> dict[str, set[str]]:
    """module -> the qnet modules it imports (any import, type-only and function-level ones too;
    ``from pkg import name`` counts as importing ``pkg.name`` where that is a module, else ``pkg``)."""
    names = {m for m, _ in modules()}
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        targets = set()
        for imported in qnet_imports(path.read_text(), module):
            target = imported
            while target not in names and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in names and target != module and not module.startswith(target + "."):
                targets.add(target)
        graph[module] = targets
    return graph


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle between qnet's modules, not even one made of type-only imports (a package's
    ``__init__`` importing its own modules is not a cycle)."""
    import networkx as nx

    graph = nx.DiGraph([(m, t) for m, ts in _module_graph().items() for t in ts])
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_the_cycle_check_sees_a_cycle() -> None:
    """The graph the check walks has the edges it should (else the test above could not fail)."""
    graph = _module_graph()
    assert "qnet.keys.store" in graph["qnet.keys.manager"]
    assert "qnet.errors" in graph["qnet.physics.bb84"] or "qnet.physics._params" in graph["qnet.physics.bb84"]
