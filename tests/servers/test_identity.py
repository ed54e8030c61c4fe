"""Names are identities and rights come from a certificate's role (issue 18, items 1 and 3).

What an attacker tried on the landed main: an SAE named ``../kme/Alice`` made ``qnet pki init``
overwrite a KME's certificate; an SAE named ``operator`` cut a link; an SAE named like a node posted
that node's reports; a node named ``controller`` hung ``qnet up``; a 100 MB body was read whole.
Here each is refused: by the spec check (names), by the CA (paths), by the servers (roles, and body
limits before parsing). Over real mutual TLS, tests/integration/test_kme_api.py checks the roles
the CA wrote into real certificates.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from qnet.cli.main import app as cli
from qnet.control.controller import Controller
from qnet.control.routing import Topology
from qnet.errors import SpecError
from qnet.scenarios.validate import parse_spec
from qnet.security.names import RESERVED, name_problem
from qnet.security.pki import PKI, certificate_role, subject_cn, subject_role
from qnet.servers.controller import CONTROL_BODY_BYTES, create_app
from qnet.servers.identity import BodyLimit
from tests.helpers import asgi_request

SPEC = """
name: hostile
nodes:
  - {{name: A, kind: user_node}}
  - {{name: {node}, kind: user_node}}
links:
  - {{endpoints: [A, {node}], length_km: 10}}
applications:
  - {{sae_id: {sae}, node: A}}
"""


def _problems(node: str = "B", sae: str = "SAE_A") -> list[str]:
    try:
        parse_spec(SPEC.format(node=node, sae=sae))
    except SpecError as exc:
        return [f"{p.path}: {p.message}" for p in exc.problems]
    return []


@pytest.mark.parametrize(("node", "sae", "where", "says"), [
    ("B", "'../kme/A'", "applications[0].sae_id", "only ASCII letters"),
    ("B", "'../../..'", "applications[0].sae_id", "only ASCII letters"),
    ("B", "'a/b'", "applications[0].sae_id", "only ASCII letters"),
    ("B", "'.hidden'", "applications[0].sae_id", "only ASCII letters"),
    ("B", "operator", "applications[0].sae_id", "reserved"),
    ("B", "Controller", "applications[0].sae_id", "reserved"),
    ("controller", "SAE_A", "nodes[1].name", "reserved"),
    ("kme", "SAE_A", "nodes[1].name", "reserved"),
    ("B", "A", "applications[0].sae_id", "already the name of nodes[0]"),
    ("B", "b", "applications[0].sae_id", "already the name of nodes[1]"),
    ("'B\u00e9'", "SAE_A", "nodes[1].name", "only ASCII letters"),
])
def test_the_spec_check_refuses_names_that_are_paths_roles_or_another_identity(
        node: str, sae: str, where: str, says: str) -> None:
    problems = _problems(node, sae)
    assert any(p.startswith(where) and says in p for p in problems), problems


def test_safe_names_pass_and_every_reserved_word_is_refused_in_any_case() -> None:
    assert _problems() == []
    assert all(name_problem(n) is None for n in ("Tokyo", "Shin-Yokohama", "SAE_A", "n0", "9a"))
    assert all(name_problem(w.upper()) and name_problem(w) for w in RESERVED)
    assert name_problem("x" * 65) and name_problem("") and name_problem(None)


def test_qnet_validate_names_a_hostile_name_and_exits_1(tmp_path: Path) -> None:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(SPEC.format(node="B", sae="'../kme/A'"))
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 1, result.output
    assert "applications[0].sae_id" in result.output and "Traceback" not in result.output


def test_the_ca_writes_no_file_outside_its_directory_and_puts_the_role_in_the_certificate(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "ca")
    pki.create_ca()
    for kind, name in (("sae", "../kme/Alice"), ("sae", "../../../x"), ("kme", "a/b"), ("sae", "operator"),
                       ("kme", "controller"), ("admin", "x")):
        with pytest.raises(ValueError, match=r"name|kind"):
            pki.issue(kind, name)
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.pem"]
    assert list(tmp_path.iterdir()) == [tmp_path / "ca"]
    for kind, name in (("kme", "Alice"), ("sae", "SAE_A"), ("operator", "operator"), ("controller", "controller")):
        cert = ssl._ssl._test_decode_cert(str(pki.issue(kind, name).cert))  # type: ignore[attr-defined]
        assert (subject_cn(cert), subject_role(cert)) == (name, kind)  # getpeercert()'s form


def test_a_state_directory_from_before_roles_is_told_apart(tmp_path: Path) -> None:
    pki = PKI(tmp_path)
    pki.create_ca()
    assert certificate_role(pki.issue("operator", "operator").cert) == "operator"
    assert certificate_role(pki.ca_cert) is None  # as every certificate an older qnet issued


def test_a_body_is_counted_whatever_its_headers_claim() -> None:
    """A body sent without Content-Length, its Transfer-Encoding spelt ``Chunked`` (which the
    parser takes and a byte comparison would not), is still counted and refused at the limit."""
    reached: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["more_body"]:
            reached.append(len(message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def go(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
        chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(50)]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return chunks.pop(0) if chunks else {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/x", "headers": headers, "method": "POST"}
        await BodyLimit(app, limit_of=lambda _: 5000)(scope, receive, send)
        return sent

    for headers in ([(b"transfer-encoding", b"Chunked")], []):
        sent = asyncio.run(go(headers))
        assert sent[0]["status"] == 413 and not reached, headers


def test_a_certificate_with_another_or_no_role_has_none() -> None:
    subject = ((("commonName", "A"),), (("organizationalUnitName", "root"),))
    assert subject_role({"subject": subject}) is None
    assert subject_role({"subject": ((("commonName", "A"),),)}) is None
    twice = ((("organizationalUnitName", "sae"),), (("organizationalUnitName", "operator"),))
    assert subject_role({"subject": twice}) is None


class Control:
    """The controller's app in-process, called as certificates of any name and role."""

    def __init__(self) -> None:
        self.ctl = Controller(Topology(("A", "B"), (("A", "B", "A-B"),)), saes={"SAE_A": "A", "SAE_B": "B"})
        self.app = create_app(self.ctl)
        self.runner = asyncio.Runner()

    def call(self, who: str | None, role: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        return asgi_request(self.runner, self.app, who, method, f"/control/v1{path}", role=role, **kw)


@pytest.fixture
def control() -> Iterator[Control]:
    c = Control()
    yield c
    c.runner.close()


REPORT = {"links": [{"link_id": "A-B", "peer": "B", "stored_units": 5, "key_rate_bps": 9.0, "qber": 0.3}],
          "events": [{"time_s": 1.0, "kind": "km-message-refused", "detail": "forged"}]}


@pytest.mark.parametrize(("who", "role", "status"), [
    ("A", "sae", 403),  # an SAE certificate named like a node
    ("A", "operator", 403),
    ("A", None, 401),  # a certificate without a role
    ("SAE_A", "sae", 403),
    ("A", "kme", 200),
])
def test_only_a_kme_certificate_posts_its_nodes_reports(control: Control, who: str, role: str | None,
                                                        status: int) -> None:
    r = control.call(who, role, "POST", "/reports", json=REPORT)
    assert r.status_code == status, r.text
    assert bool(control.ctl.links["A-B"].reports) == (status == 200)


@pytest.mark.parametrize(("who", "role", "status"), [
    ("operator", "sae", 403),  # an SAE named operator
    ("operator", "kme", 403),
    ("operator", None, 401),
    ("SAE_A", "operator", 403),  # the role, but not a name the controller lists as an operator
    ("operator", "operator", 200),
])
def test_only_an_operator_certificate_cuts_a_link(control: Control, who: str, role: str | None,
                                                  status: int) -> None:
    r = control.call(who, role, "POST", "/links/A-B/cut")
    assert r.status_code == status, r.text
    assert control.ctl.links["A-B"].cut == (status == 200)


def test_an_sae_opens_only_its_own_sessions_and_a_kme_none(control: Control) -> None:
    body = {"source": "SAE_A", "destination": "SAE_B"}
    assert control.call("SAE_B", "sae", "POST", "/sessions", json=body).status_code == 403
    assert control.call("SAE_A", "kme", "POST", "/sessions", json=body).status_code == 403
    assert control.call("SAE_A", "sae", "POST", "/sessions", json=body).status_code == 200


def test_the_controller_refuses_a_body_over_its_limit_before_reading_it(control: Control) -> None:
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b" " * 65536

    r = control.call("A", "kme", "POST", "/reports", content=b"{" + b" " * CONTROL_BODY_BYTES + b"}",
                     headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["message"]
    r = control.call("A", "kme", "POST", "/reports", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert len(sent) <= CONTROL_BODY_BYTES // 65536 + 2  # stopped reading at the limit, not at the end
