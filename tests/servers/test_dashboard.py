"""The dashboard: its token check and its API in-process, then the page in headless Chromium against a
live six-node ring (the controller serves it beside its own API), where an operator cuts a link on a
session's route with a click and sees the alarm and the new route."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from qnet.control.controller import Controller, LinkReport
from qnet.control.routing import Topology
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.servers.dashboard import COOKIE, create_dashboard
from qnet.servers.fcaps import wire
from tests.servers.conftest import LiveNet, start_net

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).resolve().parent / "specs"
TOKEN = "t" * 22
CHROMIUM = "/usr/bin/chromium"


class InProcess:
    """The app in-process (no sockets), its lifespan running, driven from synchronous tests."""

    def __init__(self, app: FastAPI) -> None:
        self.runner = asyncio.Runner()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
        self.life = app.router.lifespan_context(app)
        self.runner.run(self.life.__aenter__())

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.runner.run(self.http.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self.runner.run(self.life.__aexit__(None, None, None))
        self.runner.run(self.http.aclose())
        self.runner.close()


@pytest.fixture
def dash() -> Iterator[tuple[InProcess, Controller]]:
    ctl = Controller(Topology(("A", "B", "C"), (("A", "B", "A-B"), ("B", "C", "B-C"))), saes={"SAE_A": "A"})
    store = AlarmStore()
    wire(ctl, store, EventBroker())  # as the controller's app does
    app = create_dashboard(ctl, store, EventBroker(), token=TOKEN, clock=lambda: 100.0, name="tri",
                           positions={"A": (0.0, 0.0)})
    client = InProcess(app)
    try:
        yield client, ctl
    finally:
        client.close()


def test_every_request_needs_the_token(dash: tuple[InProcess, Controller]) -> None:
    """No token, a wrong one: 401 and nothing done; the token as query, header or cookie: served."""
    client, ctl = dash
    for path in ("/", "/api/state", "/api/history?link=A-B"):
        assert client.get(path).status_code == 401
        assert client.get(path, params={"token": "x" * 22}).status_code == 401
    assert client.post("/api/links/A-B/cut").status_code == 401
    assert not ctl.links["A-B"].cut
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and "<svg" in page.text and page.cookies.get(COOKIE) == TOKEN
    assert client.get("/api/state", headers={"Cookie": f"{COOKIE}={TOKEN}"}).status_code == 200
    assert client.post("/api/links/A-B/cut", headers={"X-Qnet-Token": TOKEN}).status_code == 200
    assert ctl.links["A-B"].cut


def test_state_has_nodes_links_sessions_and_alarms(dash: tuple[InProcess, Controller]) -> None:
    """/api/state: every node placed in the unit square, every link with its state; actions show up."""
    client, ctl = dash
    headers = {"X-Qnet-Token": TOKEN}
    ctl.report("B", [LinkReport("A-B", 500, 2000.0, 0.02), LinkReport("B-C", 700, 3000.0, 0.01)], 100.0)
    assert client.post("/api/links/B-C/eavesdropper", headers=headers).status_code == 200
    assert client.post("/api/nodes/B/drain", headers=headers).status_code == 200
    assert client.post("/api/links/A-B/cut", headers=headers).status_code == 200
    assert client.post("/api/links/X-Y/cut", headers=headers).status_code == 404
    state = client.get("/api/state", headers=headers).json()
    assert state["name"] == "tri"
    assert {n["name"] for n in state["nodes"]} == {"A", "B", "C"}
    assert all(0 <= n["x"] <= 1 and 0 <= n["y"] <= 1 for n in state["nodes"])
    assert next(n for n in state["nodes"] if n["name"] == "A")["x"] == 0.0
    assert next(n for n in state["nodes"] if n["name"] == "B")["drained"]
    links = {lk["link_id"]: lk for lk in state["links"]}
    assert set(links) == {"A-B", "B-C"}
    assert links["A-B"]["cut"] and not links["A-B"]["up"] and links["A-B"]["ends"] == ["A", "B"]
    assert links["B-C"]["eavesdropper"] and links["B-C"]["stored_units"] == 700
    assert links["B-C"]["key_rate_bps"] == 3000.0 and links["B-C"]["qber"] == 0.01
    active = [(a["kind"], a["place"]) for a in state["alarms"] if a["active"]]
    assert ("link-cut", "A-B") in active
    assert {e["kind"] for e in state["events"]} >= {"link-cut", "node-drained", "eavesdropper-on"}
    assert client.delete("/api/nodes/B/drain", headers=headers).status_code == 200
    history = client.get("/api/history", params={"link": "B-C"}, headers=headers).json()
    assert history["points"] and history["points"][0][0] == 100.0
    assert client.get("/api/history", params={"link": "nope"}, headers=headers).status_code == 404


def test_the_token_must_be_long() -> None:
    """A short token is refused, naming why."""
    ctl = Controller(Topology(("A",), ()))
    with pytest.raises(ValueError, match="at least 16"):
        create_dashboard(ctl, AlarmStore(), EventBroker(), token="short")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    net = start_net(tmp_path_factory.mktemp("dash"), source={"kind": "prng", "max_units": 5000},
                    spec=SPECS / "ring6.yaml")
    try:
        yield net
    finally:
        net.stop()


def _browser_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")


def test_the_page_shows_the_network_and_a_cut_moves_the_route(ring: LiveNet) -> None:
    """Every node and link drawn; a session's route shown; clicking a link on it and Cut raises the
    link-cut alarm on the page and moves the route, within seconds; a screenshot for the docs."""
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    assert ring.dep.controller_config and ring.dep.controller_url
    config = json.loads(ring.dep.controller_config.read_text())
    url = f"http://127.0.0.1:{config['dashboard_port']}/?token={config['dashboard_token']}"
    ctl = ring.dep.controller_url + "/control/v1"
    with ring.client("operator", kind="operator") as op:
        deadline = time.monotonic() + 30
        while not all(lk["up"] and lk["stored_units"] < 10**9 for lk in op.get(f"{ctl}/links").json()["links"]):
            assert time.monotonic() < deadline, "the KMEs did not report"
            time.sleep(0.3)
        session = op.post(f"{ctl}/sessions", json={"source": "SAE_0", "destination": "SAE_3"}).json()
        route = session["route"]
        links = op.get(f"{ctl}/links").json()["links"]
    on_route = next(lk["link_id"] for lk in links if set(lk["ends"]) == {route[1], route[2]})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            expect(page.locator("svg#map [data-node]")).to_have_count(6)
            expect(page.locator("svg#map [data-link]")).to_have_count(6)
            shown = page.locator(f"[data-session='{session['Key_stream_ID']}'] .r")
            expect(shown).to_have_attribute("data-route", ",".join(route))
            expect(page.locator("#live")).to_have_text("live")
            page.locator(f"svg#map [data-link='{on_route}']").dispatch_event("click")  # the map redraws live
            page.locator("#act-cut").click()
            expect(page.locator(f"#alarms tr.active[data-alarm='link-cut'][data-place='{on_route}']")).to_be_visible(
                timeout=5000)
            expect(shown).not_to_have_attribute("data-route", ",".join(route), timeout=5000)
            expect(page.locator(f"svg#map [data-link='{on_route}']")).to_have_attribute("data-state", "down")
            page.wait_for_timeout(2500)  # a few history samples for the chart
            (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard.png"), full_page=True)
        finally:
            browser.close()
