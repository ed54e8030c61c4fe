"""The ETSI GS QKD 014 client (:mod:`qnet.clients.etsi014`) against the real KME apps in-process:
Alice's and Bob's apps behind an httpx transport that sets the caller's certificate identity as the
mutual-TLS layer does (the apps and their KM-to-KM channel as in tests/servers/test_kme_inprocess.py),
so the client's requests and its reading of every answer and error body are the real ones. Then
answers no KME should give (httpx.MockTransport), a closed port, and one round trip over real
mutual TLS (both KMEs served by uvicorn on loopback, in threads)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
import uvicorn

from qnet.clients.etsi014 import AsyncETSI014Client, ETSI014Client, Key, Status
from qnet.clients.km import AsyncKMClient, tls_client_context
from qnet.errors import InvalidRequestError, QNetError, UnauthorizedError, UnavailableError
from qnet.scenarios.deploy import init_deployment
from qnet.scenarios.validate import load_spec
from qnet.security.pki import PKI
from qnet.servers.config import load_config
from qnet.servers.feeder import feed, make_feeds
from qnet.servers.kme import uvicorn_config
from qnet.servers.node import KMENode
from tests.helpers import AsCaller, free_ports, scaled
from tests.servers.test_kme_inprocess import Pair

ROOT = Path(__file__).resolve().parents[2]


class AppTransport(httpx.BaseTransport):
    """A synchronous httpx transport to an ASGI app run on ``runner``'s event loop (where the apps'
    lifespans and their KM-to-KM channel run), as a client whose certificate names ``cn``."""

    def __init__(self, runner: asyncio.Runner, app: Any, cn: str | None) -> None:
        self.runner, self.inner = runner, httpx.ASGITransport(app=AsCaller(app, cn))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            return httpx.Response(response.status_code, headers=response.headers, content=await response.aread())
        return self.runner.run(go())


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.close()


def client(pair: Pair, node: str, sae: str | None) -> ETSI014Client:
    """``sae``'s client of ``node``'s KME, in-process."""
    return ETSI014Client.from_transport(f"http://{node}", AppTransport(pair.runner, pair.apps[node], sae))


def test_status_has_the_standards_fields(pair: Pair) -> None:
    with client(pair, "Alice", "SAE_A") as kme:
        status = kme.status("SAE_B")
    assert isinstance(status, Status)
    assert (status.source_KME_ID, status.target_KME_ID, status.master_SAE_ID, status.slave_SAE_ID) == \
           ("Alice", "Bob", "SAE_A", "SAE_B")
    assert status.key_size == 256 and status.stored_key_count > 0
    assert status.min_key_size <= status.key_size <= status.max_key_size
    assert status.max_key_per_request >= 1 and status.max_SAE_ID_count >= 0 and status.max_key_count > 0


def test_enc_keys_then_dec_keys_give_the_same_keys_once(pair: Pair) -> None:
    """Get key at Alice, Get key with key IDs at Bob: the same bytes, decoded from base64, in the
    order asked; asking again is the KME's 400 with its message and details."""
    with client(pair, "Alice", "SAE_A") as master, client(pair, "Bob", "SAE_B") as slave:
        keys = master.enc_keys("SAE_B", number=3, size=512)
        assert len(keys) == 3 and len({k.key_ID for k in keys}) == 3
        assert all(isinstance(k, Key) and isinstance(k.key, bytes) and len(k.key) == 64 for k in keys)
        got = slave.dec_keys("SAE_A", [k.key_ID for k in reversed(keys)])
        assert got == keys[::-1]
        with pytest.raises(InvalidRequestError) as err:
            slave.dec_keys("SAE_A", [keys[0].key_ID])
    assert "http://Bob" in err.value.message and "dec_keys" in err.value.message
    assert err.value.details and err.value.details[0]["key_ID"] == keys[0].key_ID


def test_default_size_and_one_key(pair: Pair) -> None:
    with client(pair, "Alice", "SAE_A") as master, client(pair, "Bob", "SAE_B") as slave:
        (key,) = master.enc_keys("SAE_B")
        assert len(key.key) == 32  # the KME's key_size, 256 bits
        assert slave.dec_keys("SAE_A", [key.key_ID]) == [key]


def test_the_async_client_does_the_same(pair: Pair) -> None:
    async def go() -> tuple[Status, list[Key], list[Key]]:
        alice = httpx.ASGITransport(app=AsCaller(pair.apps["Alice"], "SAE_A"))
        bob = httpx.ASGITransport(app=AsCaller(pair.apps["Bob"], "SAE_B"))
        async with AsyncETSI014Client.from_transport("http://Alice", alice) as master, \
                AsyncETSI014Client.from_transport("http://Bob", bob) as slave:
            status = await master.status("SAE_B")
            keys = await master.enc_keys("SAE_B", number=2)
            return status, keys, await slave.dec_keys("SAE_A", [k.key_ID for k in keys])
    status, keys, got = pair.runner.run(go())
    assert status.target_KME_ID == "Bob" and len(keys) == 2 and got == keys


@pytest.mark.parametrize(("sae", "call", "error", "says"), [
    ("SAE_X", lambda kme: kme.status("SAE_B"), UnauthorizedError, "unknown SAE"),
    ("SAE_A", lambda kme: kme.status("SAE_Q"), UnauthorizedError, "no key supply to the slave SAE"),
    (None, lambda kme: kme.enc_keys("SAE_B"), UnauthorizedError, "no client certificate"),
    ("SAE_A", lambda kme: kme.enc_keys("SAE_B", size=7), InvalidRequestError, "multiple of 8"),
    ("SAE_A", lambda kme: kme.enc_keys("SAE_B", size=16384), InvalidRequestError, "8192"),
    ("SAE_A", lambda kme: kme.enc_keys("SAE_B", number=1000, size=8192), UnavailableError, "not enough key"),
])
def test_the_kmes_refusals_are_the_errors_of_their_status(
        pair: Pair, sae: str | None, call: Callable[[ETSI014Client], object], error: type[QNetError],
        says: str) -> None:
    """401 -> UnauthorizedError, 400 -> InvalidRequestError, 503 -> UnavailableError, each with the
    KME's message (after its URL and the method) and details; no key is taken."""
    with client(pair, "Alice", sae) as kme:
        with pytest.raises(error) as err:
            call(kme)
        assert type(err.value) is error
        assert says in err.value.message and err.value.message.startswith("the KME at http://Alice refused")
        assert str(err.value) == err.value.message
    with client(pair, "Alice", "SAE_A") as kme:
        assert kme.status("SAE_B").stored_key_count > 0


def test_the_kmes_details_come_with_the_error(pair: Pair) -> None:
    with client(pair, "Alice", "SAE_X") as kme, pytest.raises(UnauthorizedError) as err:
        kme.status("SAE_B")
    assert err.value.details == [{"SAE_ID": "SAE_X"}]


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request should be sent: {request.url}")


@pytest.mark.parametrize(("call", "field"), [
    (lambda kme: kme.enc_keys("SAE_B", number=0), "number"),
    (lambda kme: kme.enc_keys("SAE_B", number=True), "number"),
    (lambda kme: kme.enc_keys("SAE_B", number=1.5), "number"),
    (lambda kme: kme.enc_keys("SAE_B", size=-8), "size"),
    (lambda kme: kme.enc_keys("../kme/Bob"), "slave_SAE_ID"),
    (lambda kme: kme.enc_keys("SAE B"), "slave_SAE_ID"),
    (lambda kme: kme.status(""), "slave_SAE_ID"),
    (lambda kme: kme.enc_keys("SAE_B", additional_slave_SAE_IDs="SAE_C"), "additional_slave_SAE_IDs"),
    (lambda kme: kme.enc_keys("SAE_B", additional_slave_SAE_IDs=["SAE_C", "x/y"]), "additional_slave_SAE_IDs[1]"),
    (lambda kme: kme.dec_keys("SAE_A?x=1", [str(uuid.uuid4())]), "master_SAE_ID"),
    (lambda kme: kme.dec_keys("SAE_A", []), "key_IDs"),
    (lambda kme: kme.dec_keys("SAE_A", str(uuid.uuid4())), "key_IDs"),
    (lambda kme: kme.dec_keys("SAE_A", ["not-a-uuid"]), "key_IDs[0]"),
    (lambda kme: kme.dec_keys("SAE_A", [str(uuid.uuid4()), 7]), "key_IDs[1]"),
    (lambda kme: kme.dec_keys("SAE_A", ["0" * 8 + "-0000-0000-0000-" + "0" * 12] * 2), "key_IDs"),
])
def test_bad_arguments_are_refused_before_any_request(call: Callable[[ETSI014Client], object], field: str) -> None:
    with ETSI014Client.from_transport("http://kme", httpx.MockTransport(_refuse)) as kme, \
            pytest.raises(InvalidRequestError) as err:
        call(kme)
    assert err.value.message.startswith(field + " ") and err.value.details[0]["field"] == field


def _answering(status: int, body: object) -> ETSI014Client:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ETSI014Client.from_transport("http://kme", httpx.MockTransport(
        lambda _: httpx.Response(status, content=content, headers={"content-type": "application/json"})))


def _key(key_id: str | None = None, key: bytes = b"k" * 32) -> dict[str, str]:
    return {"key_ID": key_id or str(uuid.uuid4()), "key": base64.b64encode(key).decode()}


@pytest.mark.parametrize(("body", "says"), [
    (b"<html>oops</html>", "not JSON"),
    ([], "not a JSON object"),
    ({"key": []}, "no list 'keys'"),
    ({"keys": [_key()]}, "holds 1 keys, not the 2 asked for"),
    ({"keys": [_key(), {"key_ID": str(uuid.uuid4())}]}, "no 'key'"),
    ({"keys": [_key(), {"key_ID": str(uuid.uuid4()), "key": "!!!not base64"}]}, "not valid base64"),
    ({"keys": [_key(), _key("one")]}, "not a UUID"),
    ({"keys": [_key(), _key(key=b"short")]}, "holds 5 bytes, not 32"),
    ({"keys": [_key("0" * 8 + "-0000-0000-0000-" + "0" * 12)] * 2}, "same key_ID twice"),
])
def test_a_malformed_answer_is_a_clear_error(body: object, says: str) -> None:
    with _answering(200, body) as kme, pytest.raises(UnavailableError) as err:
        kme.enc_keys("SAE_B", number=2, size=256)
    assert says in err.value.message, err.value.message
    assert err.value.message.startswith("the KME at http://kme gave a malformed answer to enc_keys for SAE_B")


def test_a_malformed_status_and_a_dec_keys_for_other_keys() -> None:
    with _answering(200, {"source_KME_ID": "A", "target_KME_ID": "B", "master_SAE_ID": "SAE_A",
                          "slave_SAE_ID": "SAE_B", "key_size": "256"}) as kme, pytest.raises(UnavailableError) as err:
        kme.status("SAE_B")
    assert "the Status's 'key_size' is not an integer (got '256')" in err.value.message
    with _answering(200, {"keys": [_key()]}) as kme, pytest.raises(UnavailableError) as err:
        kme.dec_keys("SAE_A", [str(uuid.uuid4())])
    assert "lacks key_ID" in err.value.message
    ids = [str(uuid.uuid4()) for _ in range(2)]
    mixed = {"keys": [_key(ids[0], b"a" * 32), _key(ids[1], b"b" * 64)]}
    with _answering(200, mixed) as kme:  # keys of two enc_keys calls of different sizes
        assert kme.dec_keys("SAE_A", ids[::-1]) == [Key(ids[1], b"b" * 64), Key(ids[0], b"a" * 32)]
    with _answering(200, mixed) as kme, pytest.raises(UnavailableError, match="differ in size"):
        kme.enc_keys("SAE_B", number=2)


@pytest.mark.parametrize(("status", "body", "error", "says"), [
    (503, b"Service Unavailable", UnavailableError, "(503) without an ETSI 014 error body: 'Service Unavailable'"),
    (400, {"detail": "fastapi's own"}, InvalidRequestError, "(400) without an ETSI 014 error body"),
    (413, {"message": "request body too large"}, InvalidRequestError, "(413): request body too large"),
    (500, b"", UnavailableError, "(500) without an ETSI 014 error body"),
    (401, {"message": "who are you", "details": [{"SAE_ID": "x"}, "junk"]}, UnauthorizedError, "(401): who are you"),
])
def test_refusals_without_the_standards_body(status: int, body: object, error: type[QNetError], says: str) -> None:
    with _answering(status, body) as kme, pytest.raises(error) as err:
        kme.status("SAE_B")
    assert says in err.value.message, err.value.message
    if status == 401:
        assert err.value.details == [{"SAE_ID": "x"}]


def test_a_closed_port_is_unavailable_naming_the_url() -> None:
    (port,) = free_ports(1)
    url = f"https://127.0.0.1:{port}"
    with ETSI014Client.from_context(url, ssl.create_default_context(), timeout_s=scaled(5)) as kme, \
            pytest.raises(UnavailableError) as err:
        kme.status("SAE_B")
    assert err.value.message == f"cannot reach the KME at {url} (status for SAE_B): connection refused " \
                                "(is the KME running, on this port?)"
    assert err.value.details == [{"kme_url": url, "problem": "connection refused (is the KME running, on this port?)"}]
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_timeout_is_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)
    with ETSI014Client.from_transport("http://kme", httpx.MockTransport(slow), timeout_s=2) as kme, \
            pytest.raises(UnavailableError, match=r"cannot reach the KME at http://kme \(enc_keys for SAE_B\): "
                                                  r"no answer within 2 s"):
        kme.enc_keys("SAE_B")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"kme_url": "ftp://kme"}, "kme_url"),
    ({"kme_url": "http://kme:8443"}, "kme_url"),  # ETSI 014 is over TLS
    ({"kme_url": "kme:8443"}, "kme_url"),
    ({"ca": "/nonexistent/ca.pem"}, "ca"),
    ({"key": "/nonexistent/k.pem"}, "key"),
    ({"timeout_s": 0}, "timeout_s"),
])
def test_bad_constructor_arguments_name_the_field(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate")
    args: dict[str, Any] = {"kme_url": "https://kme:8443", "ca": pem, "cert": pem, "key": pem, **kwargs}
    with pytest.raises(InvalidRequestError) as err:
        ETSI014Client(**args)
    assert err.value.message.startswith(field + " ")


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate")
    with pytest.raises(InvalidRequestError, match="cannot load the TLS files"):
        ETSI014Client("https://kme:8443", ca=pem, cert=pem, key=pem)


def test_the_standards_path_in_the_url_is_tolerated() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(400, json={"message": "no"})
    with ETSI014Client.from_transport("http://kme:1/api/v1/keys/", httpx.MockTransport(record)) as kme:
        assert repr(kme) == "ETSI014Client('http://kme:1')"
        with pytest.raises(InvalidRequestError):
            kme.enc_keys("SAE_B", number=2, size=256)
    assert seen == ["http://kme:1/api/v1/keys/SAE_B/enc_keys"]


# -- over real mutual TLS ---------------------------------------------------------------------------

class TLSFiles(TypedDict):
    """The client's TLS files, as the constructor takes them."""

    ca: Path
    cert: Path
    key: Path


class LiveKMEs:
    """Alice's and Bob's KMEs served by uvicorn over mutual TLS on loopback, each in a thread (no
    feeder processes: the link's keys are written into both stores once)."""

    def __init__(self, root: Path) -> None:
        spec = load_spec(ROOT / "examples" / "two-nodes.yaml")
        ports = dict(zip(["Alice", "Bob", "controller", "dashboard"], free_ports(4), strict=True))
        dep = init_deployment(root, spec, ports=ports, source={"kind": "prng", "max_units": 5000})
        self.root, self.urls = root, dep.kmes
        self.nodes = {n: KMENode(load_config(dep.configs[n]), dep.configs[n]) for n in ("Alice", "Bob")}
        alice = self.nodes["Alice"]
        assert feed(make_feeds("Alice", alice.config.links, alice.store, alice.config.unit_bits), rounds=1) > 0
        self.peers: dict[str, AsyncKMClient] = {}  # the KM-to-KM clients, made here to be closed on their loops
        for me, peer in (("Alice", "Bob"), ("Bob", "Alice")):
            context = tls_client_context(root / "ca.pem", root / "kme" / f"{me}.pem", root / "kme" / f"{me}.key")
            self.peers[me] = AsyncKMClient(self.urls[peer], context)
            self.nodes[me].connect_peer(peer, self.peers[me])
        self.servers = [uvicorn.Server(uvicorn_config(node)) for node in self.nodes.values()]
        self.threads = [threading.Thread(target=s.run, daemon=True) for s in self.servers]
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + scaled(30)
        while not all(s.started for s in self.servers):
            assert time.monotonic() < deadline and all(t.is_alive() for t in self.threads), "a KME did not start"
            time.sleep(0.02)

    def files(self, sae: str) -> TLSFiles:
        return TLSFiles(ca=self.root / "ca.pem", cert=self.root / "sae" / f"{sae}.pem",
                        key=self.root / "sae" / f"{sae}.key")

    def close(self) -> None:
        for me, peer_client in self.peers.items():  # on the loop that opened its connections
            loop = self.nodes[me].loop
            if loop is not None and loop.is_running():
                asyncio.run_coroutine_threadsafe(peer_client.aclose(), loop).result(timeout=scaled(10))
        for server in self.servers:
            server.should_exit = True
        for thread in self.threads:
            thread.join(timeout=scaled(10))
        for node in self.nodes.values():
            for km_client in node.clients.values():
                km_client.close()
            node.store.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKMEs]:
    kmes = LiveKMEs(tmp_path_factory.mktemp("etsi014-tls"))
    try:
        yield kmes
    finally:
        kmes.close()


def test_round_trip_over_mutual_tls(live: LiveKMEs) -> None:
    """The constructor from files, TLS 1.3 with the SAE's certificate: status, enc_keys at Alice,
    dec_keys at Bob, the same bytes; a 401 comes back as over the in-process transport."""
    with ETSI014Client(live.urls["Alice"], **live.files("SAE_A")) as master, \
            ETSI014Client(live.urls["Bob"], **live.files("SAE_B")) as slave:
        assert master.status("SAE_B").master_SAE_ID == "SAE_A"
        keys = master.enc_keys("SAE_B", number=2, size=256)
        assert slave.dec_keys("SAE_A", [k.key_ID for k in keys]) == keys
        with pytest.raises(UnauthorizedError, match="no key supply to the slave SAE"):
            slave.status("SAE_B")


def test_async_client_over_mutual_tls(live: LiveKMEs) -> None:
    async def go() -> Status:
        async with AsyncETSI014Client(live.urls["Alice"], **live.files("SAE_A")) as kme:
            return await kme.status("SAE_B")
    assert asyncio.run(go()).source_KME_ID == "Alice"


def test_a_kme_certificate_from_another_ca_fails_the_handshake_readably(live: LiveKMEs, tmp_path: Path) -> None:
    PKI(tmp_path).create_ca()
    files = live.files("SAE_A")
    files["ca"] = tmp_path / "ca.pem"
    with ETSI014Client(live.urls["Alice"], **files) as kme, pytest.raises(UnavailableError) as err:
        kme.status("SAE_B")
    assert err.value.message.startswith(f"cannot reach the KME at {live.urls['Alice']} (status for SAE_B): "
                                        "TLS failed: certificate verify failed")


def test_a_client_certificate_the_kme_does_not_trust_is_a_clear_error(live: LiveKMEs, tmp_path: Path) -> None:
    other = PKI(tmp_path)
    other.create_ca()
    other.issue("sae", "SAE_A")
    files = live.files("SAE_A")
    files["cert"], files["key"] = tmp_path / "sae" / "SAE_A.pem", tmp_path / "sae" / "SAE_A.key"
    with ETSI014Client(live.urls["Alice"], **files) as kme, pytest.raises(UnavailableError) as err:
        kme.status("SAE_B")
    assert "the KME closed the connection without answering (does it accept this client certificate" \
        in err.value.message
