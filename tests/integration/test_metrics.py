"""Prometheus metrics (``GET /metrics``): the collectors on a key store, and live KMEs and the controller
scraped over mutual TLS, their numbers moving as keys flow."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from qnet.keys.manager import KeyManager, LinkInfo
from qnet.keys.store import KeyStore, owner_of
from qnet.management.metrics import ERROR_EVENTS, KMEMetrics
from tests.integration.conftest import LiveNet, start_net

API = "/api/v1/keys"
Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Every sample of a text-format exposition (which must parse)."""
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


# -- the collector on a store, no server ------------------------------------------------------------------


def _units(count: int, ends: tuple[str, str], owner: str) -> list[tuple[str, bytes]]:
    """``count`` units that ``owner`` may serve."""
    out: list[tuple[str, bytes]] = []
    while len(out) < count:
        key_id = str(uuid.uuid4())
        if owner_of(key_id, ends) == owner:
            out.append((key_id, bytes(32)))
    return out


def test_the_collector_reads_stock_production_consumption_qber_and_events(tmp_path: Path) -> None:
    """On a SQLite store: produced, stored (by state), servable and consumed bits, the key rate since
    the link's epoch, the last QBER, and events counted once each."""
    ends, now = ("A", "B"), 1_000_000.0
    store = KeyStore(f"sqlite:///{tmp_path / 'a.db'}", "A")
    manager = KeyManager(store, [LinkInfo("A-B", "B", ends)], ["SAE_A"], {"SAE_B": "B"}, clock=lambda: now)
    mine, theirs = _units(10, ends, "A"), _units(4, ends, "B")
    store.add_units("A-B", ends, [*mine, *theirs], now)
    store.apply_answer("A-B", [k for k, _ in mine], [k for k, _ in mine], 30.0, now)
    store.set_meta("epoch/A-B", repr(now - 7.0))
    manager.enc_keys("SAE_A", ["SAE_B"], 3, 256)
    metrics = KMEMetrics(manager, clock=lambda: now)

    body, content_type = metrics.exposition()
    samples = parse(body.decode())
    assert content_type.startswith("text/plain; version=0.0.4")
    link = {"link": "A-B", "peer": "B"}
    assert value(samples, "qnet_link_produced_bits_total", **link) == 14 * 256
    assert value(samples, "qnet_link_key_rate_bits_per_second", **link) == pytest.approx(14 * 256 / 7.0)
    assert value(samples, "qnet_link_stored_key_bits", **link, state="available") == 7 * 256
    assert value(samples, "qnet_link_stored_key_bits", **link, state="new") == 4 * 256
    assert value(samples, "qnet_link_servable_key_bits", **link) == 7 * 256
    assert value(samples, "qnet_link_consumed_bits_total", **link, use="delivered") == 3 * 256
    assert value(samples, "qnet_link_consumed_bits_total", **link, use="relay") == 0
    assert not [s for s in samples if s[0] == "qnet_link_qber"]  # not estimated yet
    assert value(samples, "qnet_kme_relays_total", outcome="started") == 0

    store.set_meta("qber/A-B", "0.031")
    manager.event("sync-mismatch", "test")
    manager.event("pool-low", "test")
    first = parse(metrics.exposition()[0].decode())
    manager.event("sync-mismatch", "again")
    again = parse(metrics.exposition()[0].decode())
    assert value(first, "qnet_link_qber", **link) == pytest.approx(0.031)
    assert value(first, "qnet_kme_events_total", kind="pool-low") == 1
    assert "sync-mismatch" in ERROR_EVENTS and "pool-low" not in ERROR_EVENTS
    assert value(again, "qnet_kme_errors_total", kind="sync-mismatch") == 2
    assert value(again, "qnet_kme_errors_total", kind="pool-low") == 0
    assert value(again, "qnet_kme_events_total", kind="pool-low") == 1
    assert value(again, "qnet_kme_errors_total", kind="internal") == 0
    store.close()


def test_openmetrics_is_served_to_whoever_asks_for_it(tmp_path: Path) -> None:
    """An ``Accept: application/openmetrics-text`` scraper gets OpenMetrics, which its parser takes."""
    store = KeyStore(f"sqlite:///{tmp_path / 'a.db'}", "A")
    manager = KeyManager(store, [LinkInfo("A-B", "B", ("A", "B"))], ["SAE_A"], {"SAE_B": "B"})
    body, content_type = KMEMetrics(manager).exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    names = {f.name for f in openmetrics_families(body.decode())}
    assert {"qnet_link_consumed_bits", "qnet_kme_requests", "qnet_kme_request_duration_seconds"} <= names
    store.close()


# -- live: two KMEs and the controller over mutual TLS ---------------------------------------------------


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """Alice and Bob (examples/two-nodes.yaml) and their controller, fed by a fast PRNG source."""
    live = start_net(tmp_path_factory.mktemp("metrics"), source={"kind": "prng", "max_units": 5000})
    try:
        assert live.wait_for_stock("SAE_A", "SAE_B", "Alice", 100) >= 100
        yield live
    finally:
        live.stop()


def scrape(http: httpx.Client, base: str) -> Samples:
    """GET /metrics over mutual TLS; the text format must parse."""
    r = http.get(f"{base}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def test_kme_metrics_move_as_keys_flow(net: LiveNet) -> None:
    """Three enc_keys of 4 keys at Alice, three dec_keys at Bob: each KME's request counter and
    latency histogram grow by 3, and each end's consumed-bits counter by 12 x 256; keys are stored."""
    requests, number = 3, 4
    with net.client("SAE_A") as master, net.client("SAE_B") as slave:
        alice0, bob0 = scrape(master, net.url("Alice")), scrape(slave, net.url("Bob"))
        for i in range(requests):
            if i % 2:
                r = master.post(f"{net.url('Alice')}{API}/SAE_B/enc_keys", json={"number": number, "size": 256})
            else:
                r = master.get(f"{net.url('Alice')}{API}/SAE_B/enc_keys", params={"number": number, "size": 256})
            assert r.status_code == 200, r.text
            ids = [{"key_ID": k["key_ID"]} for k in r.json()["keys"]]
            d = slave.post(f"{net.url('Bob')}{API}/SAE_A/dec_keys", json={"key_IDs": ids})
            assert d.status_code == 200, d.text
        alice, bob = scrape(master, net.url("Alice")), scrape(slave, net.url("Bob"))

    def grew(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew(alice, alice0, "qnet_kme_requests_total", method="enc_keys", code="200") == requests
    assert grew(bob, bob0, "qnet_kme_requests_total", method="dec_keys", code="200") == requests
    assert grew(alice, alice0, "qnet_kme_request_duration_seconds_count", method="enc_keys") == requests
    assert grew(bob, bob0, "qnet_kme_request_duration_seconds_count", method="dec_keys") == requests
    assert grew(alice, alice0, "qnet_kme_request_duration_seconds_sum", method="enc_keys") > 0
    assert grew(alice, alice0, "qnet_kme_requests_total", method="metrics", code="200") == 1
    link = {"link": _link_of(alice), "peer": "Bob"}
    bits = requests * number * 256
    assert grew(alice, alice0, "qnet_link_consumed_bits_total", **link, use="delivered") == bits
    assert grew(bob, bob0, "qnet_link_consumed_bits_total", peer="Alice", use="delivered") == bits
    assert value(alice, "qnet_link_stored_key_bits", **link, state="available") > 0
    assert value(alice, "qnet_link_servable_key_bits", **link) > 0
    assert value(alice, "qnet_link_produced_bits_total", **link) >= bits
    assert value(alice, "qnet_link_key_rate_bits_per_second", **link) > 0
    assert value(alice, "qnet_kme_errors_total", kind="internal") == 0


def _link_of(samples: Samples) -> str:
    links = {lab["link"] for n, lab, _ in samples if n == "qnet_link_produced_bits_total"}
    assert len(links) == 1, links
    return links.pop()


def test_kme_counts_refusals_by_status_code(net: LiveNet) -> None:
    """A request the KME refuses is counted under its method and status code (400 here)."""
    with net.client("SAE_B") as slave:
        before = scrape(slave, net.url("Bob"))
        r = slave.get(f"{net.url('Bob')}{API}/SAE_A/dec_keys", params={"key_ID": str(uuid.uuid4())})
        assert r.status_code == 400
        after = scrape(slave, net.url("Bob"))
    labels = {"method": "dec_keys", "code": "400"}
    assert value(after, "qnet_kme_requests_total", **labels) - value(before, "qnet_kme_requests_total", **labels) == 1


def test_metrics_need_a_client_certificate(net: LiveNet) -> None:
    """Without a certificate from the network's CA the TLS handshake fails: no metrics."""
    ctx = ssl.create_default_context(cafile=net.ca)
    with httpx.Client(verify=ctx, timeout=10) as http, pytest.raises(httpx.TransportError):
        http.get(f"{net.url('Alice')}/metrics")


def _controller_until(http: httpx.Client, url: str, ready: Any, timeout_s: float = 30) -> Samples:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(http, url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.3)


def test_controller_metrics_show_links_sessions_and_requests(net: LiveNet) -> None:
    """The operator scrapes the controller: the link is up with units stored (as the KMEs report),
    and opening a session moves the sessions gauge, the events and the request counter."""
    url = net.dep.controller_url
    assert url is not None
    with net.client("operator", kind="operator") as op, net.client("SAE_A") as sae:
        before = _controller_until(op, url, lambda s: value(s, "qnet_controller_link_stored_units") > 0)
        r = sae.post(f"{url}/control/v1/sessions", json={"source": "SAE_A", "destination": "SAE_B"})
        assert r.status_code == 200, r.text
        during = scrape(op, url)
        assert sae.delete(f"{url}/control/v1/sessions/{r.json()['Key_stream_ID']}").status_code == 200
        after = scrape(op, url)
    links = {lab["link"] for n, lab, _ in before if n == "qnet_controller_link_up"}
    assert len(links) == 1
    assert value(before, "qnet_controller_link_up") == 1
    assert value(before, "qnet_controller_link_cut") == 0
    assert value(before, "qnet_controller_link_stored_units") > 0
    assert value(before, "qnet_controller_link_alarms") >= 0
    assert value(before, "qnet_controller_requests_total", endpoint="POST /control/v1/reports", code="200") > 0
    assert value(during, "qnet_controller_sessions") == value(before, "qnet_controller_sessions") + 1
    assert value(after, "qnet_controller_sessions") == value(before, "qnet_controller_sessions")
    opened = {"endpoint": "POST /control/v1/sessions", "code": "200"}
    assert value(after, "qnet_controller_requests_total", **opened) == (
        value(before, "qnet_controller_requests_total", **opened) + 1)
    assert value(after, "qnet_controller_request_duration_seconds_count", endpoint=opened["endpoint"]) >= 1
    for kind in ("session-open", "session-close"):
        assert value(after, "qnet_controller_events_total", kind=kind) >= value(
            before, "qnet_controller_events_total", kind=kind) + 1
    assert value(after, "qnet_controller_route_changes_total") >= 0
