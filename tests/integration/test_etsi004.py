"""ETSI GS QKD 004 at live KMEs over mutual TLS, admitted by the live controller: streams with QoS,
keys identical at both ends and each index delivered once, and every status value of the standard
(V2.1.1 Table 10) reached by a real call."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qnet.clients.etsi004 import ETSI004Client
from qnet.errors import InvalidRequestError, KeyStreamError
from qnet.management.audit import audit_path, read_records
from qnet.service.etsi004 import Status
from tests.integration.conftest import LiveNet, start_net

API = "/api/v2/qkd004"
SPEC = Path(__file__).resolve().parent / "specs" / "pair-four-saes.yaml"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """KMEs A and B (SAEs SA, SA2 at A; SB, SB2 at B), 25 km of simulated decoy-BB84 link (its
    planned rate is what admission counts on), and the controller."""
    net = start_net(tmp_path_factory.mktemp("etsi004"), source={"speedup": 4.0, "pulses_per_block": 10**8},
                    spec=SPEC)
    try:
        net.wait_for_stock("SA", "SB", "A", 300)
        yield net
    finally:
        net.stop()


def call(http: httpx.Client, net: LiveNet, node: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post(f"{net.url(node)}{API}/{method}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_stream_gives_both_ends_the_same_keys_each_index_once(pair: LiveNet) -> None:
    with pair.client("SA") as a, pair.client("SB") as b:
        qos = {"key_chunk_size": 32, "timeout": 5000}
        opened = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB", "QoS": qos})
        assert opened["status"] == 1, opened  # SUCCESSFUL, the peer has not connected yet
        ksid = opened["Key_stream_ID"]
        early = call(a, pair, "A", "get_key", {"Key_stream_ID": ksid})
        assert early["status"] == 3, early  # GET_KEY: the peer is not connected
        joined = call(b, pair, "B", "open_connect", {"source": "SA", "destination": "SB", "QoS": qos,
                                                     "Key_stream_ID": ksid})
        assert joined["status"] == 0, joined
        again = call(b, pair, "B", "open_connect", {"source": "SA", "destination": "SB", "Key_stream_ID": ksid})
        assert again["status"] == 5, again  # KSID already in use
        mine = [call(a, pair, "A", "get_key", {"Key_stream_ID": ksid}) for _ in range(5)]
        theirs = [call(b, pair, "B", "get_key", {"Key_stream_ID": ksid, "index": i}) for i in (4, 0, 1, 2, 3)]
        assert [m["status"] for m in mine + theirs] == [0] * 10
        assert [m["index"] for m in mine] == [0, 1, 2, 3, 4]
        by_index = {t["index"]: t["key_buffer"] for t in theirs}
        assert [by_index[i] for i in range(5)] == [m["key_buffer"] for m in mine]
        assert len({m["key_buffer"] for m in mine}) == 5 and len(base64.b64decode(mine[0]["key_buffer"])) == 32
        twice = b.post(f"{pair.url('B')}{API}/get_key", json={"Key_stream_ID": ksid, "index": 2})
        assert twice.status_code == 400 and "delivered already" in twice.json()["message"]
        small = call(a, pair, "A", "get_key", {"Key_stream_ID": ksid, "Metadata": {"size": 10}})
        assert small["status"] == 8 and small["Metadata"]["size"] > 10, small  # metadata buffer too small
        after = call(a, pair, "A", "get_key", {"Key_stream_ID": ksid, "Metadata": {"size": small["Metadata"]["size"]}})
        assert after["status"] == 0 and after["index"] == 5  # status 8 used no index
        ahead = b.post(f"{pair.url('B')}{API}/get_key", json={"Key_stream_ID": ksid, "index": 5000})
        assert ahead.status_code == 400 and "ahead" in ahead.json()["message"]
        assert call(a, pair, "A", "close", {"Key_stream_ID": ksid})["status"] == 0
        # the peer closed the stream: B's KME hears of it from the controller at once (a wait it was
        # in answers), and until then serves only what it held already
        deadline, index = time.monotonic() + 5, 6
        while (gone := call(b, pair, "B", "get_key", {"Key_stream_ID": ksid, "index": index}))["status"] == 0:
            assert time.monotonic() < deadline, "B never heard that the stream was closed"
            index += 1
        assert gone["status"] == 3, gone


def test_admission_refuses_a_third_stream_beyond_capacity_and_close_frees_it(pair: LiveNet) -> None:
    with pair.client("SA") as a, pair.client("SA2") as a2:
        probe = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB",
                                                    "QoS": {"min_bps": 1e11}})
        assert probe["status"] == 7, probe  # QoS not met: the counter-proposal is what the link has left
        capacity = probe["QoS"]["min_bps"]
        assert capacity > 0
        share = {"min_bps": 0.4 * capacity}
        first = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB", "QoS": share})
        second = call(a2, pair, "A", "open_connect", {"source": "SA2", "destination": "SB2", "QoS": share})
        third = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB2", "QoS": share})
        assert (first["status"], second["status"], third["status"]) == (1, 1, 7), third
        assert third["QoS"]["min_bps"] < share["min_bps"]
        assert call(a2, pair, "A", "close", {"Key_stream_ID": second["Key_stream_ID"]})["status"] == 0
        fourth = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB2", "QoS": share})
        assert fourth["status"] == 1, fourth
        for opened in (first, fourth):
            call(a, pair, "A", "close", {"Key_stream_ID": opened["Key_stream_ID"]})


def test_no_connection_and_timeout(pair: LiveNet) -> None:
    with pair.client("SA") as a, pair.client("SA2") as a2, pair.client("SB") as b:
        same_node = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SA2"})
        assert same_node["status"] == 4, same_node  # no QKD connection joins two SAEs of one node
        opened = call(b, pair, "B", "open_connect", {"source": "SA", "destination": "SB", "QoS": {"timeout": 300}})
        assert opened["status"] == 1
        ksid = opened["Key_stream_ID"]
        waited = call(b, pair, "B", "get_key", {"Key_stream_ID": ksid})
        assert waited["status"] == 3  # the source has not connected
        joined = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB", "Key_stream_ID": ksid,
                                                     "QoS": {"timeout": 300, "key_chunk_size": 1024}})
        assert joined["status"] == 0
        # the destination asks far ahead of what the source hands out in 300 ms: a timeout
        late = call(b, pair, "B", "get_key", {"Key_stream_ID": ksid, "index": 2040})
        assert late["status"] == 6, late
        call(a, pair, "A", "close", {"Key_stream_ID": ksid})
    with pair.client("SA2") as a2:
        assert call(a2, pair, "A", "open_connect", {"source": "SA2", "destination": "SB2"})["status"] == 1


def test_the_typed_client_streams_keys_and_raises_the_standards_statuses(pair: LiveNet) -> None:
    ca = pair.ca
    a_cert, a_key = pair.cert("SA")
    b_cert, b_key = pair.cert("SB")
    with ETSI004Client(pair.url("A"), ca=ca, cert=a_cert, key=a_key) as alice, \
            ETSI004Client(pair.url("B"), ca=ca, cert=b_cert, key=b_key) as bob:
        stream = alice.open_connect("SA", "SB", {"key_chunk_size": 16, "timeout": 3000})
        assert not stream.peer_connected and stream.qos.key_chunk_size == 16
        with pytest.raises(KeyStreamError) as err:
            alice.get_key(stream.key_stream_id)
        assert err.value.status == Status.GET_KEY_PEER_NOT_CONNECTED
        assert bob.open_connect("SA", "SB", key_stream_id=stream.key_stream_id).peer_connected
        mine = [alice.get_key(stream.key_stream_id) for _ in range(50)]
        theirs = [bob.get_key(stream.key_stream_id, index=k.index) for k in mine]
        assert [k.key for k in mine] == [k.key for k in theirs] and len({k.key for k in mine}) == 50
        assert all(len(k.key) == 16 and '"key_ID"' in k.metadata for k in mine)
        with pytest.raises(KeyStreamError) as err:
            alice.open_connect("SA", "SB", {"min_bps": 1e11})
        assert err.value.status == Status.QOS_NOT_MET and err.value.qos.min_bps < 1e11
        with pytest.raises(InvalidRequestError, match="delivered already"):
            bob.get_key(stream.key_stream_id, index=0)
        alice.close(stream.key_stream_id)


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_key_used_shows_per_application_and_api_in_metrics_audit_and_dashboard(pair: LiveNet) -> None:
    """Accounting: 014 and 004 keys counted apart per application at both KMEs (/metrics), each
    stream key's audit record names its Key_stream_ID, and the dashboard's table shows the rows."""
    with pair.client("SA") as a, pair.client("SB") as b:
        before = {"A": a.get(f"{pair.url('A')}/metrics").text}
        keys = a.post(f"{pair.url('A')}/api/v1/keys/SB/enc_keys", json={"number": 4, "size": 256}).json()["keys"]
        b.post(f"{pair.url('B')}/api/v1/keys/SA/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
        opened = call(a, pair, "A", "open_connect", {"source": "SA", "destination": "SB"})
        ksid = opened["Key_stream_ID"]
        call(b, pair, "B", "open_connect", {"source": "SA", "destination": "SB", "Key_stream_ID": ksid})
        got = [call(b, pair, "B", "get_key", {"Key_stream_ID": ksid}) for _ in range(3)]
        assert [g["status"] for g in got] == [0, 0, 0]
        after_a = a.get(f"{pair.url('A')}/metrics").text
        after_b = b.get(f"{pair.url('B')}/metrics").text
        grew = (_metric(after_a, "qnet_kme_key_bits_served_total", sae="SA", peer="SB", api="etsi014")
                - _metric(before["A"], "qnet_kme_key_bits_served_total", sae="SA", peer="SB", api="etsi014"))
        assert grew == 4 * 256
        assert _metric(after_a, "qnet_kme_key_bits_served_total", sae="SA", peer="SB", api="etsi004") >= 3 * 256
        assert _metric(after_b, "qnet_kme_key_bits_served_total", sae="SB", peer="SA", api="etsi004") >= 3 * 256
        assert _metric(after_a, "qnet_kme_key_streams", sae="SA") >= 1
        for node, event in (("A", "enc_keys"), ("B", "dec_keys")):
            records = read_records(audit_path(node, pair.dep.configs[node], "") or Path("-"))
            assert any(r.get("Key_stream_ID") == ksid and r["event"] == event for r in records), node
        assert pair.dep.controller_config is not None
        config = json.loads(pair.dep.controller_config.read_text())
        dash = f"http://127.0.0.1:{config['dashboard_port']}"
        deadline = time.monotonic() + 20
        while True:  # the KMEs report every control period
            state = httpx.get(f"{dash}/api/state", headers={"X-Qnet-Token": config["dashboard_token"]}).json()
            rows = {(u["SAE_ID"], u["api"]) for u in state["usage"]}
            streams = [s for s in state["sessions"] if s["Key_stream_ID"] == ksid]
            if {("SA", "etsi014"), ("SB", "etsi004")} <= rows and streams and streams[0]["delivered_bits"].get("SB"):
                break
            assert time.monotonic() < deadline, (rows, streams)
            time.sleep(0.3)
        _screenshot_usage(f"{dash}/?token={config['dashboard_token']}")
        call(a, pair, "A", "close", {"Key_stream_ID": ksid})


def _screenshot_usage(url: str) -> None:
    from tests.servers.test_dashboard import CHROMIUM, ROOT, _browser_or_skip

    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            expect(page.locator("#usage tr[data-usage='SA']").first).to_be_visible()
            expect(page.locator("#usage tbody")).to_contain_text("ETSI 004")
            page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard-usage.png"), full_page=True)
        finally:
            browser.close()
