"""The controller in a live network: KMEs report to it, an operator cuts a link through its API during a
steady demand, and the demand moves to the other side of the ring within one control period with no
key delivered to one end only. Six KME processes and the controller, all over mutual TLS."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from qnet.scenarios.deploy import CONTROL_PERIOD_S
from qnet.security.envelope import seal
from qnet.security.pki import PKI, load_signing_key
from tests.integration.conftest import LiveNet

API = "/api/v1/keys"
CTL = "/control/v1"


def _ctl(net: LiveNet) -> str:
    assert net.dep.controller_url
    return net.dep.controller_url + CTL


@dataclass
class Demand:
    """SAE_0 at R0 asks for one key at a time for SAE_3 at R3, which fetches it at once."""

    net: LiveNet
    done: list[tuple[float, str]] = field(default_factory=list)
    """(time the key reached both ends, key_ID)"""
    refused: list[tuple[float, str]] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with self.net.client("SAE_0") as enc, self.net.client("SAE_3") as dec:
            while not self.stop.is_set():
                r = enc.get(f"{self.net.url('R0')}{API}/SAE_3/enc_keys")
                if r.status_code != 200:
                    self.refused.append((time.time(), r.text))
                    time.sleep(0.05)
                    continue
                key = r.json()["keys"][0]
                d = dec.get(f"{self.net.url('R3')}{API}/SAE_0/dec_keys", params={"key_ID": key["key_ID"]})
                if d.status_code != 200 or d.json()["keys"][0]["key"] != key["key"]:
                    self.mismatched.append(key["key_ID"])
                self.done.append((time.time(), key["key_ID"]))


def _first_hop_link(root: Path, key_id: str) -> str:
    with sqlite3.connect(f"file:{root / 'store' / 'R0.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT link_id FROM keys WHERE note LIKE ?", (f"relay {key_id} hop 1 %",)).fetchone()
    return str(row[0]) if row else "?"


def _wait_for_reports(http: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        links = http.get(f"{url}/links").json()["links"]
        if all(lk["up"] and lk["stored_units"] < 10**9 and lk["stored_units"] > 100 for lk in links):
            return
        time.sleep(0.3)
    raise AssertionError(f"the KMEs did not report: {links}")


def test_cutting_a_link_moves_a_steady_demand_within_one_control_period(ring: LiveNet) -> None:
    url = _ctl(ring)
    with ring.client("operator", kind="operator") as op, ring.client("SAE_0") as sae:
        _wait_for_reports(op, url)
        opened = sae.post(f"{url}/sessions", json={"source": "SAE_0", "destination": "SAE_3",
                                                   "QoS": {"key_rate_bps": 1000, "priority": 1}})
        assert opened.status_code == 200, opened.text
        session = opened.json()
        first = session["route"]
        assert len(first) == 4 and first[0] == "R0" and first[-1] == "R3"
        cut_link = f"{first[1]}-{first[2]}" if first[1] < first[2] else f"{first[2]}-{first[1]}"
        time.sleep(2 * CONTROL_PERIOD_S)  # R0 learns the session's route

        demand = Demand(ring)
        worker = threading.Thread(target=demand.run)
        worker.start()
        try:
            time.sleep(3.0)
            t_cut = time.time()
            r = op.post(f"{url}/links/{cut_link}/cut")
            assert r.status_code == 200, r.text
            time.sleep(4.0)
        finally:
            demand.stop.set()
            worker.join(timeout=30)
        try:
            _check_the_move(ring, op, sae, url, demand, t_cut, session, cut_link)
        finally:  # the other tests share the ring
            assert op.post(f"{url}/links/{cut_link}/restore").status_code == 200
        assert not op.get(f"{url}/links").json()["links"][0]["cut"]
        assert sae.delete(f"{url}/sessions/{session['Key_stream_ID']}").status_code == 200


def _check_the_move(ring: LiveNet, op: httpx.Client, sae: httpx.Client, url: str, demand: Demand, t_cut: float,
                    session: dict[str, Any], cut_link: str) -> None:
    first = session["route"]
    old_first_hop = "R0-R1" if first[1] == "R1" else "R5-R0"
    new_first_hop = "R5-R0" if first[1] == "R1" else "R0-R1"
    before = [(t, k) for t, k in demand.done if t < t_cut]
    after = [(t, k) for t, k in demand.done if t >= t_cut]
    assert len(before) > 5 and len(after) > 5, (len(before), len(after), demand.refused[-3:])
    assert {_first_hop_link(ring.root, k) for _, k in before[-3:]} == {old_first_hop}
    moved = next(t for t, k in after if _first_hop_link(ring.root, k) == new_first_hop)
    assert moved - t_cut <= CONTROL_PERIOD_S, f"the demand moved {moved - t_cut:.2f} s after the cut"
    assert {_first_hop_link(ring.root, k) for t, k in after if t > t_cut + CONTROL_PERIOD_S} == {new_first_hop}
    assert demand.mismatched == []  # no key reached one end only

    moved_session = sae.get(f"{url}/sessions/{session['Key_stream_ID']}").json()
    assert moved_session["route"][1] != first[1] and moved_session["reroutes"] == 1
    evs = op.get(f"{url}/events").json()["events"]
    kinds = [e["kind"] for e in evs]
    assert "link-cut" in kinds and "route-change" in kinds
    links = {lk["link_id"]: lk for lk in op.get(f"{url}/links").json()["links"]}
    assert links[cut_link]["cut"] and not links[cut_link]["up"]


def test_the_control_api_refuses_what_the_caller_may_not_do(ring: LiveNet) -> None:
    url = _ctl(ring)
    with ring.client("SAE_3") as sae, ring.client("operator", kind="operator") as op:
        r = sae.post(f"{url}/links/R0-R1/cut")
        assert r.status_code == 403 and "role 'sae', not operator" in r.json()["message"]
        r = sae.post(f"{url}/sessions", json={"source": "SAE_0", "destination": "SAE_3"})
        assert r.status_code == 403 and "only its own sessions" in r.json()["message"]
        r = op.post(f"{url}/links/nope/cut")
        assert r.status_code == 404 and "no link 'nope'" in r.json()["message"]
        r = op.post(f"{url}/sessions", json={"source": "SAE_0", "destination": "SAE_9"})
        assert r.status_code == 401 and "unknown SAE 'SAE_9'" in r.json()["message"]
        r = op.post(f"{url}/sessions", json={"source": "SAE_0", "destination": "SAE_3", "QoS": {"priority": -1}})
        assert r.status_code == 400 and "priority" in r.json()["message"]
        r = op.post(f"{url}/reports", json={"links": []})
        assert r.status_code == 403 and "role 'operator', not kme" in r.json()["message"]
    PKI(ring.root).issue("sae", "R1")  # an SAE certificate of the CA, named like a node (issue 18.1)
    with ring.client("R1", kind="sae") as impostor:
        r = impostor.post(f"{url}/reports", json={"links": [{"link_id": "R0-R1", "stored_units": 1,
                                                              "key_rate_bps": 1, "up": False}]})
        assert r.status_code == 403 and "role 'sae', not kme" in r.json()["message"]
        assert impostor.get(f"{ring.url('R0')}/km/v1/ping").status_code == 403
    with ring.client("R1", kind="kme") as kme:
        r = kme.post(f"{url}/reports", json={"links": [{"link_id": "R3-R4", "stored_units": 1, "key_rate_bps": 1}]})
        assert r.status_code == 400 and "not a link of node 'R1'" in r.json()["message"]
        r = kme.post(f"{url}/reports", json={"links": [{"link_id": "R0-R1", "stored_units": "x", "key_rate_bps": 1}]})
        assert r.status_code == 400 and "malformed" in r.json()["message"]


def test_links_report_stock_rate_and_the_route(ring: LiveNet) -> None:
    url = _ctl(ring)
    with ring.client("SAE_0") as http:
        _wait_for_reports(http, url)
        links = http.get(f"{url}/links").json()["links"]
        assert {lk["link_id"] for lk in links} == {"R0-R1", "R1-R2", "R2-R3", "R3-R4", "R4-R5", "R5-R0"}
        assert all(lk["stored_units"] > 0 and lk["key_rate_bps"] is not None for lk in links)
        route = http.get(f"{url}/routes", params={"src": "R0", "dst": "R3"}).json()["route"]
        assert len(route) == 4
        r = http.get(f"{url}/routes", params={"src": "R0", "dst": "R9"})
        assert r.status_code == 503 and "unknown node" in r.json()["message"]


def test_alarms_are_kept_streamed_and_the_inventory_is_served(ring: LiveNet) -> None:
    """A cut and its restore reach an event-stream subscriber and the alarm list (with cleared-at);
    a forged KM-to-KM message at a KME becomes an authentication-failure alarm at the controller;
    the inventory lists every node in ETSI GS QKD 015 shapes."""
    url = _ctl(ring)
    got: list[dict[str, object]] = []
    listening = threading.Event()

    def listen() -> None:
        with ring.client("operator", kind="operator") as http, http.stream("GET", f"{url}/events/stream") as r:
            for line in r.iter_lines():
                listening.set()
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                if any(e.get("kind") == "link-restored" for e in got):
                    return

    worker = threading.Thread(target=listen, daemon=True)
    worker.start()
    assert listening.wait(10)
    with ring.client("operator", kind="operator") as op:
        assert op.post(f"{url}/links/R3-R4/cut").status_code == 200
        assert op.post(f"{url}/links/R3-R4/restore").status_code == 200
        worker.join(timeout=10)
        assert [e["kind"] for e in got if e["place"] == "R3-R4"][-2:] == ["link-cut", "link-restored"]
        alarms = op.get(f"{url}/alarms").json()["alarms"]
        cut = next(a for a in alarms if a["kind"] == "link-cut" and a["place"] == "R3-R4")
        assert cut["cleared_s"] is not None and cut["cleared_s"] >= cut["raised_s"] and cut["severity"] == "major"

        body = {"type": "sync", "link_id": "R1-R2", "offered": []}
        forged = seal(body, sender="R2", receiver="R1", key=load_signing_key(ring.root / "kme" / "R0.mldsa.key"),
                      now_s=time.time())
        with ring.client("R2", kind="kme") as kme:
            assert kme.post(f"{ring.url('R1')}/km/v1/messages", content=forged).status_code == 401
        deadline = time.monotonic() + 10
        while not any(a["kind"] == "auth-failure" and a["place"] == "R1"
                      for a in op.get(f"{url}/alarms").json()["alarms"]):
            assert time.monotonic() < deadline, "the refused message never became an alarm"
            time.sleep(0.3)

        nodes = op.get(f"{url}/inventory").json()["qkd_nodes"]
        assert sorted(n["qkdn_name"] for n in nodes) == [f"R{i}" for i in range(6)]
        r0 = op.get("{}/restconf/data/etsi-qkd-sdn-node:qkd_node".format(url.removesuffix("/control/v1")),
                    params={"node": "R0"}).json()["qkd_node"]
        assert {lk["qkdl_name"] for lk in r0["qkd_links"]["qkd_link"] if lk["qkdl_type"].endswith("PHYS")} == {
            "R0-R1", "R5-R0"}
        own = op.get(f"{ring.url('R0')}/restconf/data/etsi-qkd-sdn-node:qkd_node").json()["qkd_node"]  # the KME's
        assert own["qkdn_id"] == r0["qkdn_id"] and len(own["qkd_interfaces"]["qkd_interface"]) == 2
        phys = [lk for lk in own["qkd_links"]["qkd_link"] if lk["qkdl_type"].endswith("PHYS")]  # VIRT: sessions
        assert all(lk["qnet_state"]["stored_units"] >= 0 for lk in phys)  # other tests may have left open
        assert {lk["qkdl_name"] for lk in phys} == {"R0-R1", "R5-R0"}


def test_an_eavesdropper_started_from_the_api_trips_the_qber_alarm_and_draining_moves_sessions(ring: LiveNet) -> None:
    """The operator's eavesdropper: the link's feeds report QBER 25 % and make no key, the
    controller raises qber-high within a few periods and clears it when the attack stops; a drained
    node carries no session."""
    url = _ctl(ring)
    with ring.client("operator", kind="operator") as op:
        _wait_for_reports(op, url)
        assert op.post(f"{url}/links/R4-R5/eavesdropper").status_code == 200

        def alarm(active: bool) -> bool:
            return any(a["kind"] == "qber-high" and a["place"] == "R4-R5" and (a["cleared_s"] is None) == active
                       for a in op.get(f"{url}/alarms").json()["alarms"])

        deadline = time.monotonic() + 15
        while not alarm(active=True):
            assert time.monotonic() < deadline, "no QBER alarm"
            time.sleep(0.3)
        links = {lk["link_id"]: lk for lk in op.get(f"{url}/links").json()["links"]}
        assert links["R4-R5"]["qber"] == 0.25 and links["R4-R5"]["alarm"]
        assert op.delete(f"{url}/links/R4-R5/eavesdropper").status_code == 200
        deadline = time.monotonic() + 30
        while not alarm(active=False):  # the next blocks' QBER is the link's own again
            assert time.monotonic() < deadline, "the QBER alarm never cleared"
            time.sleep(0.3)

        session = op.post(f"{url}/sessions", json={"source": "SAE_0", "destination": "SAE_3"}).json()
        relay = session["route"][1]
        assert op.post(f"{url}/nodes/{relay}/drain").status_code == 200
        moved = op.get(f"{url}/sessions/{session['Key_stream_ID']}").json()
        assert relay not in moved["route"]
        assert op.delete(f"{url}/nodes/{relay}/drain").status_code == 200
        assert op.delete(f"{url}/sessions/{session['Key_stream_ID']}").status_code == 200


def test_a_kme_waiting_on_the_controller_hears_of_a_cut_at_once(ring: LiveNet) -> None:
    """The long poll the KMEs' agents make between reports: it answers when the picture changes,
    not at the end of its wait, and only KMEs may make it."""
    url = _ctl(ring)
    with ring.client("R1", kind="kme") as kme, ring.client("operator", kind="operator") as op, \
            ring.client("SAE_0") as sae:
        assert sae.get(f"{url}/changes", params={"after": 0}).status_code == 403
        assert kme.get(f"{url}/changes", params={"after": -1}).status_code == 400
        revision = kme.get(f"{url}/changes", params={"after": 0}).json()["revision"]
        for _ in range(20):  # a ring just started may still be changing its picture: wait for a quiet spell
            began = time.monotonic()
            quiet = kme.get(f"{url}/changes", params={"after": revision, "wait_s": 0.5}).json()["revision"]
            if quiet == revision:
                assert time.monotonic() - began >= 0.5  # nothing changed: it waited
                break
            assert quiet > revision  # it answered early because the picture moved on
            revision = quiet
        else:
            raise AssertionError("the controller's picture never stayed still for 0.5 s")
        heard: list[tuple[float, int]] = []
        waiting = threading.Thread(target=lambda: heard.append((time.time(), kme.get(
            f"{url}/changes", params={"after": revision, "wait_s": 20}, timeout=30).json()["revision"])))
        waiting.start()
        time.sleep(0.5)
        t_cut = time.time()
        try:
            assert op.post(f"{url}/links/R4-R5/cut").status_code == 200
            waiting.join(timeout=25)
        finally:
            assert op.post(f"{url}/links/R4-R5/restore").status_code == 200
        assert heard and heard[0][1] > revision
        assert heard[0][0] - t_cut < 2.0, f"heard of the cut {heard[0][0] - t_cut:.2f} s after it"


def test_peer_kmes_keep_their_connections_warm(ring: LiveNet) -> None:
    """The ping a KME sends its peers to keep a connection to each open (so the first relay over a
    route a cut moved traffic to pays no TLS handshake): peers only."""
    with ring.client("R1", kind="kme") as peer, ring.client("R3", kind="kme") as stranger, \
            ring.client("SAE_0") as sae:
        assert peer.get(f"{ring.url('R0')}/km/v1/ping").json() == {"kme": "R0"}
        r = stranger.get(f"{ring.url('R0')}/km/v1/ping")
        assert r.status_code == 403 and "not a peer KME of R0" in r.json()["message"]
        assert sae.get(f"{ring.url('R0')}/km/v1/ping").status_code == 403
