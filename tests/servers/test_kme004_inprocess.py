"""ETSI GS QKD 004 at two KMEs and the controller, all in-process (``httpx.ASGITransport``, callers'
certificates set as the TLS layer sets them): the link's key is fed once, so the pool is finite and
its exhaustion (INSUFFICIENT_KEY_AVAILABLE) is reached for certain; a TTL ends a stream; bad
requests are refused naming the field. tests/integration/test_etsi004.py runs the rest over real
mutual TLS."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from qnet.clients.controller import AsyncSessionClient
from qnet.scenarios.deploy import Deployment
from qnet.servers.config import load_controller_config
from qnet.servers.controller import controller_from_config
from qnet.servers.controller import create_app as create_controller
from qnet.servers.kme004 import MAX_STREAMS_PER_SAE
from qnet.service.etsi004 import QoS, Status
from tests.helpers import AsCaller, asgi_request
from tests.servers.test_kme_inprocess import Pair

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v2/qkd004"


class Net(Pair):
    """Alice's and Bob's KMEs and the controller on one event loop; the link's keys fed once."""

    def prepare(self, dep: Deployment) -> list[FastAPI]:
        assert dep.controller_config is not None
        ctl = create_controller(controller_from_config(load_controller_config(dep.controller_config)))
        for name, node in self.nodes.items():
            transport = httpx.ASGITransport(app=AsCaller(ctl, name, role="kme"))
            node.session_client = lambda t=transport: AsyncSessionClient("http://ctl", None, transport=t)  # type: ignore[method-assign]
        self.ctl_app = ctl
        return [ctl]

    def post(self, node: str, caller: str, method: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        r = self.call(node, caller, "POST", f"{API}/{method}", json=body)
        assert r.status_code == status, r.text
        return dict(r.json())


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        n.close()


def _connected(net: Net, qos: dict[str, Any]) -> str:
    opened = net.post("Alice", "SAE_A", "open_connect", {"source": "SAE_A", "destination": "SAE_B", "QoS": qos})
    assert opened["status"] == Status.SUCCESSFUL_PEER_NOT_CONNECTED, opened
    ksid = str(opened["Key_stream_ID"])
    joined = net.post("Bob", "SAE_B", "open_connect", {"source": "SAE_A", "destination": "SAE_B", "QoS": qos,
                                                      "Key_stream_ID": ksid})
    assert joined["status"] == Status.SUCCESSFUL, joined
    return ksid


def test_the_pool_runs_out_with_insufficient_key_and_every_key_delivered_matches(net: Net) -> None:
    """1 KiB chunks from a pool fed once: GET_KEY answers 2 when it is empty, never a reused key."""
    ksid = _connected(net, {"key_chunk_size": 1024, "timeout": 200})
    mine: dict[int, str] = {}
    for _ in range(400):
        answer = net.post("Alice", "SAE_A", "get_key", {"Key_stream_ID": ksid})
        if answer["status"] == Status.GET_KEY_INSUFFICIENT_KEY:
            break
        assert answer["status"] == Status.SUCCESSFUL, answer
        mine[answer["index"]] = answer["key_buffer"]
    else:
        pytest.fail("the pool never ran out")
    assert mine and "not enough key" in answer["message"]
    theirs = {i: net.post("Bob", "SAE_B", "get_key", {"Key_stream_ID": ksid, "index": i})["key_buffer"]
              for i in mine}
    assert theirs == mine
    assert len(set(mine.values())) == len(mine) and all(len(base64.b64decode(k)) == 1024 for k in mine.values())


def test_a_ttl_ends_the_stream(net: Net) -> None:
    ksid = _connected(net, {"ttl": 0.05, "timeout": 100})
    net.runner.run(asyncio.sleep(0.1))
    r = asgi_request(net.runner, net.apps["Alice"], "SAE_A", "POST", f"{API}/get_key", json={"Key_stream_ID": ksid})
    assert r.status_code == 400 and "TTL" in r.json()["message"]


@pytest.mark.parametrize(("body", "why"), [
    ({"source": "SAE_A", "destination": "SAE_B", "QoS": {"key_chunk_size": 0}}, "key_chunk_size"),
    ({"source": "SAE_A", "destination": "SAE_B", "QoS": {"colour": 1}}, "no field 'colour'"),
    ({"source": "SAE_A", "destination": "SAE_B", "QoS": {"max_bps": 10, "min_bps": 20}}, "max_bps"),
    ({"source": "SAE_A", "destination": "SAE_B", "Key_stream_ID": "not-a-uuid"}, "Key_stream_ID"),
])
def test_bad_open_connect_is_400_naming_the_field(net: Net, body: dict[str, Any], why: str) -> None:
    assert why in net.post("Alice", "SAE_A", "open_connect", body, status=400)["message"]


def test_only_an_end_of_the_stream_attached_here_may_use_it(net: Net) -> None:
    body = {"source": "SAE_A", "destination": "SAE_B"}
    assert "unknown SAE" in net.post("Bob", "SAE_A", "open_connect", body, status=401)["message"]
    ksid = _connected(net, {})
    r = asgi_request(net.runner, net.apps["Alice"], "SAE_B", "POST", f"{API}/get_key", json={"Key_stream_ID": ksid})
    assert r.status_code == 401
    r = asgi_request(net.runner, net.apps["Alice"], "Bob", "POST", f"{API}/get_key", json={"Key_stream_ID": ksid},
                     role="kme")
    assert r.status_code == 401  # a KME's certificate is no application's


def test_qos_fields_and_counter_proposal() -> None:
    qos = QoS.from_dict({"Key_chunk_size": 64, "Max_bps": 1e6, "Min_bps": 5e5, "Priority": 3, "TTL": 60})
    assert (qos.key_chunk_size, qos.max_bps, qos.min_bps, qos.priority, qos.ttl) == (64, 1e6, 5e5, 3, 60)
    counter = qos.counter(1234.7)
    assert counter.min_bps == 1234 and counter.max_bps == 1e6 and counter.key_chunk_size == 64
    with pytest.raises(ValueError, match="timeout"):
        QoS.from_dict({"timeout": -1})
    with pytest.raises(ValueError, match="priority"):
        QoS.from_dict({"priority": True})


def test_one_application_may_hold_only_so_many_streams(net: Net) -> None:
    body = {"source": "SAE_A", "destination": "SAE_B"}
    for _ in range(MAX_STREAMS_PER_SAE):
        assert net.post("Alice", "SAE_A", "open_connect", body)["status"] == Status.SUCCESSFUL_PEER_NOT_CONNECTED
    refused = net.post("Alice", "SAE_A", "open_connect", body, status=503)
    assert f"{MAX_STREAMS_PER_SAE} key streams open" in refused["message"]


def test_concurrent_get_keys_at_one_end_get_different_indices(net: Net) -> None:
    """GET_KEYs in flight together (the destination's, waiting on the source's keys) each claim
    their own index: never the same one twice, and the same index asked twice at once is refused."""
    ksid = _connected(net, {"timeout": 2000})

    async def both() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=AsCaller(net.apps["Bob"], "SAE_B"))
        async with httpx.AsyncClient(transport=transport, base_url="http://qnet") as http:
            calls = [http.post(f"{API}/get_key", json={"Key_stream_ID": ksid}) for _ in range(6)]
            calls.append(http.post(f"{API}/get_key", json={"Key_stream_ID": ksid, "index": 0}))
            return list(await asyncio.gather(*calls))

    answers = net.runner.run(both())
    ok = [r.json() for r in answers if r.status_code == 200 and r.json()["status"] == Status.SUCCESSFUL]
    assert sorted(a["index"] for a in ok) == list(range(len(ok))) and len(ok) >= 6
    assert len({a["key_buffer"] for a in ok}) == len(ok)
    refused = [r for r in answers if r.status_code == 400]
    assert all("another call" in r.json()["message"] or "delivered already" in r.json()["message"] for r in refused)
    mine = {i: net.post("Alice", "SAE_A", "get_key", {"Key_stream_ID": ksid, "index": i})["key_buffer"]
            for i in range(len(ok))}
    assert mine == {a["index"]: a["key_buffer"] for a in ok}


def test_a_refused_connect_changes_nothing_and_non_finite_qos_is_refused(net: Net) -> None:
    """Review findings: the swapped pair's OPEN_CONNECT is KSID_ALREADY_IN_USE and leaves the stream
    unconnected; a Key_stream_ID that is not a UUID, and Infinity or an integer beyond any float in
    a QoS, are 400 (nothing opened); an SAE may not touch the controller's key_ID routes."""
    opened = net.post("Alice", "SAE_A", "open_connect", {"source": "SAE_A", "destination": "SAE_B"})
    ksid = opened["Key_stream_ID"]
    swapped = net.post("Bob", "SAE_B", "open_connect", {"source": "SAE_B", "destination": "SAE_A",
                                                       "Key_stream_ID": ksid})
    assert swapped["status"] == Status.KSID_ALREADY_IN_USE
    assert net.post("Alice", "SAE_A", "get_key", {"Key_stream_ID": ksid})["status"] == Status.GET_KEY_PEER_NOT_CONNECTED
    joined = net.post("Bob", "SAE_B", "open_connect",
                      {"source": "SAE_A", "destination": "SAE_B", "Key_stream_ID": ksid})
    assert joined["status"] == Status.SUCCESSFUL
    body = {"source": "SAE_A", "destination": "SAE_B", "Key_stream_ID": "a" * 36}
    assert "Key_stream_ID" in net.post("Alice", "SAE_A", "open_connect", body, status=400)["message"]
    for qos in ('{"ttl": Infinity}', '{"max_bps": 1' + "0" * 400 + "}", '{"min_bps": 1e300}'):
        raw = '{"source": "SAE_A", "destination": "SAE_B", "QoS": ' + qos + "}"
        r = asgi_request(net.runner, net.apps["Alice"], "SAE_A", "POST", f"{API}/open_connect", content=raw,
                         headers={"content-type": "application/json"})
        assert r.status_code == 400, (qos[:30], r.text)
    r = asgi_request(net.runner, net.ctl_app, "SAE_B", "GET", f"/control/v1/sessions/{ksid}/keys",
                     params={"start": 0}, role="sae")
    assert r.status_code == 403
