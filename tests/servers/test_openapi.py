"""Every server's OpenAPI document builds without a warning (FastAPI warns, for instance, of a
duplicate operation ID when one handler serves two methods), and names each operation once."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from qnet.control.controller import Controller
from qnet.control.routing import Topology
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.scenarios.deploy import init_deployment
from qnet.scenarios.validate import load_spec
from qnet.servers.config import load_config
from qnet.servers.controller import create_app as controller_app
from qnet.servers.dashboard import create_dashboard
from qnet.servers.kme import create_app as kme_app
from qnet.servers.node import KMENode

ROOT = Path(__file__).resolve().parents[2]


def _controller() -> Controller:
    return Controller(Topology(("A", "B", "C"), (("A", "B", "A-B"), ("B", "C", "B-C"), ("A", "B", "A-B-2"))),
                      saes={"SAE_A": "A", "SAE_C": "C"})


def _kme(tmp_path: Path) -> FastAPI:
    spec = load_spec(ROOT / "examples" / "two-nodes.yaml")
    dep = init_deployment(tmp_path, spec, ports={"Alice": 1, "Bob": 2, "controller": 3, "dashboard": 4})
    path = dep.configs["Alice"]
    return kme_app(KMENode(load_config(path), None))


APPS: dict[str, Callable[[Path], FastAPI]] = {
    "controller": lambda _: controller_app(_controller()),
    "dashboard": lambda _: create_dashboard(_controller(), AlarmStore(), EventBroker(), token="t" * 22),
    "kme": _kme,
}


@pytest.mark.parametrize("name", sorted(APPS))
def test_openapi_builds_without_a_warning(name: str, tmp_path: Path) -> None:
    """Building the document with warnings as errors succeeds; every operation ID is unique."""
    app = APPS[name](tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc: dict[str, Any] = app.openapi()
    ids = Counter(op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op)
    assert ids and all(n == 1 for n in ids.values()), ids


def test_the_controller_documents_both_methods_of_each_operator_action() -> None:
    """Start and stop an eavesdropper, drain and undrain: one operation per method in the document."""
    doc = controller_app(_controller()).openapi()
    for path in ("/control/v1/links/{link_id}/eavesdropper", "/control/v1/nodes/{node}/drain"):
        assert set(doc["paths"][path]) == {"post", "delete"}
