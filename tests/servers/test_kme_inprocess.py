"""The ETSI GS QKD 014 API of two KMEs in-process: each KME's app behind ``httpx.ASGITransport``,
the caller's SAE_ID set as the mutual-TLS layer sets it (the client certificate's CN), and the
KM-to-KM channel between the two apps through the same transport, so an ``assign`` message travels
from Alice's app to Bob's as it does over TLS. No process, no socket: the semantics and every error
body of the standard, in milliseconds (tests/integration/test_kme_api.py runs the same over real
mutual TLS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from qnet.clients.km import AsyncKMClient
from qnet.scenarios.deploy import Deployment, init_deployment
from qnet.scenarios.validate import load_spec
from qnet.security.envelope import seal
from qnet.servers.config import load_config
from qnet.servers.feeder import feed, make_feeds
from qnet.servers.kme import create_app
from qnet.servers.node import KMENode
from tests.helpers import AsCaller, asgi_request

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1/keys"


class Pair:
    """Alice's and Bob's KMEs, their lifespans running on one event loop, the link's keys in both stores."""

    def __init__(self, root: Path) -> None:
        spec = load_spec(ROOT / "examples" / "two-nodes.yaml")
        ports = {"Alice": 1, "Bob": 2, "controller": 3, "dashboard": 4}  # never bound: nothing listens
        dep = init_deployment(root, spec, ports=ports, source={"kind": "prng", "max_units": 5000})
        self.nodes = {n: KMENode(load_config(dep.configs[n]), dep.configs[n]) for n in ("Alice", "Bob")}
        others = self.prepare(dep)
        self.apps = {n: create_app(node) for n, node in self.nodes.items()}
        alice = self.nodes["Alice"]
        feeds = make_feeds("Alice", alice.config.links, alice.store, alice.config.unit_bits)
        assert feed(feeds, rounds=1) > 0  # the device pair writes both stores
        for me, peer in (("Alice", "Bob"), ("Bob", "Alice")):
            transport = httpx.ASGITransport(app=AsCaller(self.apps[peer], me))
            self.nodes[me].connect_peer(peer, AsyncKMClient(f"http://{peer}", None, transport=transport))
        self.runner = asyncio.Runner()
        self.lives = [app.router.lifespan_context(app) for app in [*others, *self.apps.values()]]
        for life in self.lives:
            self.runner.run(life.__aenter__())

    def prepare(self, dep: Deployment) -> list[FastAPI]:
        """Before the KMEs' apps are made: other apps to run beside them (none here)."""
        return []

    def call(self, node: str, caller: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return asgi_request(self.runner, self.apps[node], caller, method, path, **kwargs)

    def close(self) -> None:
        for life in self.lives:
            self.runner.run(life.__aexit__(None, None, None))
        self.runner.close()
        for node in self.nodes.values():
            node.store.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.close()


def test_status_then_keys_identical_at_both_ends_and_served_once(pair: Pair) -> None:
    """Get status (sec. 5.1), Get key (5.2) at Alice, Get key with key IDs (5.3) at Bob: the same
    bytes, after the assign message went Alice -> Bob over the KM channel; asking again is refused."""
    status = pair.call("Alice", "SAE_A", "GET", f"{API}/SAE_B/status").json()
    assert status["source_KME_ID"] == "Alice" and status["target_KME_ID"] == "Bob"
    assert status["stored_key_count"] > 0 and status["key_size"] == 256
    r = pair.call("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", json={"number": 3, "size": 256})
    assert r.status_code == 200, r.text
    keys = r.json()["keys"]
    assert len(keys) == 3 and len({k["key_ID"] for k in keys}) == 3
    ids = {"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]}
    r = pair.call("Bob", "SAE_B", "POST", f"{API}/SAE_A/dec_keys", json=ids)
    assert r.status_code == 200, r.text
    assert r.json()["keys"] == keys
    again = pair.call("Bob", "SAE_B", "POST", f"{API}/SAE_A/dec_keys", json=ids)
    assert again.status_code == 400 and again.json()["details"]


@pytest.mark.parametrize(("node", "caller", "method", "path", "body", "status", "says"), [
    ("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", {"number": 1, "size": 7}, 400, "multiple of 8"),
    ("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", {"number": 0}, 400, "number"),
    ("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", {"number": 1000, "size": 8192}, 503, "not enough key"),
    ("Alice", "SAE_X", "GET", f"{API}/SAE_B/status", None, 401, "unknown SAE"),
    ("Alice", None, "GET", f"{API}/SAE_B/status", None, 401, "no client certificate"),
    ("Alice", "SAE_A", "GET", f"{API}/SAE_Q/status", None, 401, "slave"),
    ("Bob", "SAE_B", "POST", f"{API}/SAE_A/dec_keys", {"key_IDs": [{"key_ID": "nope"}]}, 400, "key_ID"),
    ("Alice", "SAE_B", "GET", "/km/v1/ping", None, 403, "role 'sae', not kme"),
    ("Alice", "Bob", "POST", f"{API}/SAE_B/enc_keys", {"number": 1}, 401, "role 'kme', not sae"),
])
def test_every_refusal_has_the_standards_status_and_error_body(
        pair: Pair, node: str, caller: str | None, method: str, path: str, body: dict[str, Any] | None,
        status: int, says: str) -> None:
    """Each error answers the status ETSI 014 gives it (400, 401, 503; 403 on the KM channel) and
    the Error data format (sec. 6.3): a ``message`` naming what is wrong."""
    r = pair.call(node, caller, method, path, json=body) if body is not None else pair.call(node, caller, method, path)
    assert r.status_code == status, r.text
    assert says in r.json()["message"]


def test_a_key_for_another_slave_is_refused_with_401_and_stays_for_its_slave(pair: Pair) -> None:
    """The master itself asking Bob for the keys it was given for SAE_B: 401 (sec. 5.3: not an
    SAE ID supplied to Get key), and SAE_B still gets them."""
    keys = pair.call("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", json={"number": 1}).json()["keys"]
    ids = {"key_IDs": [{"key_ID": keys[0]["key_ID"]}]}
    r = pair.call("Bob", "SAE_A", "POST", f"{API}/SAE_A/dec_keys", json=ids)
    assert r.status_code == 401
    assert pair.call("Bob", "SAE_B", "POST", f"{API}/SAE_A/dec_keys", json=ids).json()["keys"] == keys


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"{API}/SAE_B/enc_keys", {"number": "1"}),
    ("POST", f"{API}/SAE_B/enc_keys", {"number": True}),
    ("POST", f"{API}/SAE_B/enc_keys", {"number": 1, "size": 256.5}),
    ("POST", f"{API}/SAE_B/enc_keys", {"number": 1, "size": "256"}),
    ("GET", f"{API}/SAE_B/enc_keys?number=1&number=2", None),
    ("GET", f"{API}/SAE_B/enc_keys?size=256.0", None),
    ("GET", f"{API}/SAE_B/enc_keys?number=+1", None),
    ("GET", f"{API}/SAE_B/enc_keys?number=1_0", None),
])
def test_numbers_must_be_integers_and_parameters_given_once(pair: Pair, method: str, path: str,
                                                           body: dict[str, Any] | None) -> None:
    """ETSI GS QKD 014 sec. 6.2: number and size are integers; a string, a fraction, a boolean, a
    repeated or loosely written query parameter is refused with 400 and the Error body, and no key
    is taken (a JSON number without a fraction, 256.0, is an integer in JSON Schema: accepted)."""
    before = pair.call("Alice", "SAE_A", "GET", f"{API}/SAE_B/status").json()["stored_key_count"]
    r = pair.call("Alice", "SAE_A", method, path, json=body) if body is not None else \
        pair.call("Alice", "SAE_A", method, path)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("bad request")
    assert pair.call("Alice", "SAE_A", "GET", f"{API}/SAE_B/status").json()["stored_key_count"] == before


@pytest.mark.parametrize("body", [
    {"type": "sync", "link_id": "Alice-Bob", "offered": 5},
    {"type": "batch", "link_id": "Alice-Bob", "messages": [{"type": "assign", "link_id": "Alice-Bob"}]},
    {"type": "relay", "link_id": "Alice-Bob", "route": "AB", "hop": "x", "groups": 3},
])
def test_a_signed_but_malformed_km_message_is_refused_with_400_and_no_traceback(
        pair: Pair, body: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    alice = pair.nodes["Alice"]
    envelope = seal(body, sender="Alice", receiver="Bob", key=alice.signing_key, now_s=time.time())
    r = pair.call("Bob", "Alice", "POST", "/km/v1/messages", content=envelope)
    assert r.status_code == 400, r.text
    assert "malformed" in r.json()["message"]
    assert not [rec for rec in caplog.records if rec.exc_info]


def test_a_body_over_the_limit_is_refused_before_it_is_read(pair: Pair) -> None:
    """Issue 18.3: 413 from Content-Length at once, and from a chunked body as it passes the limit
    (the KME stops reading); a KM message from a caller that is no peer KME is refused before its body
    is read at all."""
    from qnet.servers.kme import KM_BODY_BYTES, SAE_BODY_BYTES

    read: list[int] = []

    async def chunks(n: int) -> Any:
        for _ in range(n):
            read.append(1)
            yield b" " * 65536

    big = b'{"number": 1' + b" " * SAE_BODY_BYTES + b"}"
    json_type = {"content-type": "application/json"}
    r = pair.call("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", content=big, headers=json_type)
    assert r.status_code == 413 and "at most" in r.json()["message"]
    r = pair.call("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", content=chunks(100), headers=json_type)
    assert r.status_code == 413 and len(read) <= SAE_BODY_BYTES // 65536 + 2
    read.clear()
    r = pair.call("Alice", "Bob", "POST", "/km/v1/messages", content=chunks(KM_BODY_BYTES // 65536 + 50))
    assert r.status_code == 413 and len(read) <= KM_BODY_BYTES // 65536 + 2
    for stranger in ("SAE_A", "Mallory"):
        read.clear()
        r = pair.call("Alice", stranger, "POST", "/km/v1/messages", content=chunks(100))
        assert r.status_code == 403 and len(read) <= 2, (stranger, r.text)
    ok = pair.call("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", json={"number": 1})
    assert ok.status_code == 200, ok.text
