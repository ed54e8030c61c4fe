"""The dashboard: its token check, its API and its event stream in-process; the page in headless
Chromium on the shipped Tokyo and Kanto networks (the dashboard served alone on loopback, its
controller fed reports in-process: parallel links apart and each clickable, no label on another,
empty states explained, a lagging feed flagged, no favicon 404, the event stream ended cleanly when
the server stops). The live six-node ring, where an operator cuts a link with a click, is in
tests/integration/test_dashboard_live.py."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from qnet.control.controller import Controller, LinkReport
from qnet.control.routing import Topology
from qnet.management.alarms import AlarmStore, EventBroker
from qnet.scenarios.deploy import node_positions
from qnet.scenarios.spec import NetworkSpec
from qnet.scenarios.validate import load_spec
from qnet.servers import fcaps
from qnet.servers.controller import EventStreamServer
from qnet.servers.dashboard import COOKIE, create_dashboard
from qnet.servers.fcaps import sse_stream, stream_closing, wire
from tests.helpers import free_ports

ROOT = Path(__file__).resolve().parents[2]
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


def test_state_carries_each_links_lag_and_feed_mode_or_none(dash: tuple[InProcess, Controller]) -> None:
    """``lag_s`` and ``feed_mode`` as the key managers report them; None where they do not say (an
    older KME) and before any report."""
    client, ctl = dash
    ctl.report("B", [LinkReport("A-B", 500, 2000.0, 0.02, lag_s=12.5, feed_mode="sampled"),
                     LinkReport("B-C", 700, 3000.0, 0.01)], 100.0)
    links = {lk["link_id"]: lk for lk in client.get("/api/state", headers={"X-Qnet-Token": TOKEN}).json()["links"]}
    assert (links["A-B"]["lag_s"], links["A-B"]["feed_mode"]) == (12.5, "sampled")
    assert (links["B-C"]["lag_s"], links["B-C"]["feed_mode"]) == (None, None)


class _Connected:
    """A request whose client stays connected."""

    async def is_disconnected(self) -> bool:
        return False


def test_the_event_stream_outlives_quiet_spells_and_ends_when_closing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep-alive comments while nothing happens, and the subscription still delivers afterwards
    (a timed-out read must not end it); when the server closes, a ``closing`` event, then the end."""
    monkeypatch.setattr(fcaps, "KEEPALIVE_S", 0.02)

    async def run() -> list[str]:
        broker, closing = EventBroker(), asyncio.Event()
        stream = sse_stream(broker, cast(Request, _Connected()), "hi", closing=closing)
        got = [await anext(stream), await anext(stream), await anext(stream), await anext(stream)]
        broker.publish({"type": "event", "kind": "link-cut"})
        got.append(await anext(stream))
        closing.set()
        got += [chunk async for chunk in stream]
        return got

    chunks = asyncio.run(run())
    assert chunks[0] == ": hi\n\n" and chunks[1:4] == [": keep-alive\n\n"] * 3
    assert chunks[4].startswith("event: event\ndata: ") and '"link-cut"' in chunks[4]
    assert chunks[5:] == ['event: closing\ndata: {"reason": "the server is stopping"}\n\n']


# -- the page on the shipped networks, in Chromium ---------------------------------------------------

OVERLAPS = """() => {
  const boxes = [...document.querySelectorAll("svg#map [data-label]")].map(g => ({
    name: g.dataset.linkLabel || g.dataset.nodeLabel, r: (g.querySelector(".plate") || g).getBoundingClientRect()}));
  const nodes = [...document.querySelectorAll("svg#map [data-node] circle")].map(c => ({
    name: "node " + c.parentNode.dataset.node, r: c.getBoundingClientRect()}));
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const out = [];
  boxes.forEach((a, i) => [...boxes.slice(i + 1), ...nodes].forEach(b => {
    if (hit(a.r, b.r)) out.push([a.name, b.name]);
  }));
  return out;
}"""

MIDDLE = """(id) => {
  const path = document.querySelector(`svg#map [data-link="${id}"] .hit`);
  const at = path.getPointAtLength(path.getTotalLength() / 2), svg = path.ownerSVGElement;
  const p = svg.createSVGPoint(); p.x = at.x; p.y = at.y;
  const q = p.matrixTransform(path.getScreenCTM());
  return [q.x, q.y];
}"""


class Served:
    """The dashboard of a shipped network on a loopback port, in a thread, its controller fed reports
    every 0.5 s on the server's loop (each link's report from ``reports``, a default one otherwise)."""

    def __init__(self, spec: NetworkSpec, reports: dict[str, LinkReport], tmp: Path) -> None:
        self.spec, self.reports = spec, reports
        self.ctl = Controller(Topology(tuple(n.name for n in spec.nodes),
                                       tuple((lk.endpoints[0], lk.endpoints[1], lk.label) for lk in spec.links)),
                              saes={a.sae_id: a.node for a in spec.applications}, control_period_s=0.5,
                              qber_threshold=spec.policies.qber_alarm_threshold, low_water_units=1000,
                              silence_s=3600)
        store = AlarmStore(f"sqlite:///{tmp / 'alarms.db'}")  # a file: the server's thread opens its own connection
        wire(self.ctl, store, EventBroker())
        self.report(time.time())
        app = create_dashboard(self.ctl, store, EventBroker(), token=TOKEN, name=spec.name,
                               positions=node_positions(spec))
        self.port = free_ports(1)[0]
        self.server = EventStreamServer(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                       access_log=False), stream_closing(app), signals=False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={TOKEN}"

    def report(self, now: float) -> None:
        wobble = 1 + 0.05 * math.sin(now)
        for i, lk in enumerate(self.spec.links):
            rep = self.reports.get(lk.label, LinkReport(lk.label, 1500 + 700 * (i % 6), 12_000.0 + 4_000 * (i % 7),
                                                        0.02 + 0.004 * (i % 4), lag_s=0.4, feed_mode="photon"))
            rep = LinkReport(rep.link_id, rep.stored_units, rep.key_rate_bps * wobble, rep.qber, rep.up, rep.lag_s,
                             rep.feed_mode)
            for end in lk.endpoints:
                self.ctl.report(end, [rep], now)

    def act(self, fn: Callable[[Controller], object]) -> None:
        """Run ``fn`` on the controller in the server's loop (the controller is the loop's alone)."""
        asyncio.run_coroutine_threadsafe(self._call(fn), self.loop).result(10)

    async def _call(self, fn: Callable[[Controller], object]) -> None:
        fn(self.ctl)

    async def _serve(self) -> None:
        async def feeding() -> None:
            while True:
                await asyncio.sleep(0.5)
                self.report(time.time())
        feeder = asyncio.get_running_loop().create_task(feeding())
        try:
            await self.server.serve()
        finally:
            feeder.cancel()

    def stop(self) -> bool:
        """Stop the server; whether it stopped within 10 s."""
        self.server.should_exit = True
        self.thread.join(10)
        return not self.thread.is_alive()


def _served(name: str, reports: dict[str, LinkReport], tmp: Path) -> Iterator[Served]:
    _browser_or_skip()
    served = Served(load_spec(ROOT / "examples" / f"{name}-qkd-network.yaml"), reports, tmp)
    try:
        yield served
    finally:
        served.stop()
        served.loop.close()


@pytest.fixture
def tokyo(tmp_path: Path) -> Iterator[Served]:
    """Tokyo: NEC photon by photon at real time, Toshiba cut, NTT over the QBER threshold, the
    Mitsubishi link making no key yet, ID Quantique 12 s behind real time on sampled blocks."""
    yield from _served("tokyo", {
        "nec": LinkReport("nec", 5200, 36_000.0, 0.027),  # an older KME: says nothing of its feed
        "ntt": LinkReport("ntt", 900, 2_100.0, 0.10, lag_s=0.5, feed_mode="photon"),
        "mitsubishi": LinkReport("mitsubishi", 0, 0.0, None, lag_s=0.3, feed_mode="photon"),
        "idq": LinkReport("idq", 2600, 350.0, 0.02, lag_s=12.0, feed_mode="sampled")}, tmp_path)


@pytest.fixture
def kanto(tmp_path: Path) -> Iterator[Served]:
    """Kanto: 18 links, one cut, one behind real time."""
    yield from _served("kanto", {"saitama-tsukuba": LinkReport("saitama-tsukuba", 300, 4_000.0, 0.04, lag_s=30.0,
                                                               feed_mode="sampled")}, tmp_path)


def _watch(page: Any) -> list[str]:
    """Every failed request and every answer of 400 or more the page gets."""
    problems: list[str] = []

    def answered(response: Any) -> None:
        if response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    page.on("response", answered)
    page.on("requestfailed", lambda r: problems.append(f"{r.failure} {r.url}"))
    return problems


def _open(pw: Any, served: Served) -> tuple[Any, Any, list[str]]:
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems = _watch(page)
    page.goto(served.url)
    return browser, page, problems


def test_tokyo_parallel_links_labels_empty_states_lag_and_a_clean_stop(tokyo: Served) -> None:
    """Tokyo's three Koganei-Otemachi links are three paths, each selected by a click on its middle
    (the cut one too); no label overlaps another or a node; the chart says what to do before a
    click and "no key yet" (ticks 0-1000) on a link that made none; the lagging link is flagged;
    the favicon is no request; stopping the server ends the event stream cleanly."""
    from playwright.sync_api import expect, sync_playwright

    tokyo.act(lambda ctl: ctl.cut("toshiba", time.time(), reason="by the test"))
    tokyo.act(lambda ctl: ctl.open_session("tv-koganei", "tv-otemachi", time.time()))
    with sync_playwright() as pw:
        browser, page, problems = _open(pw, tokyo)
        try:
            expect(page.locator("svg#map [data-link]")).to_have_count(5)
            expect(page.locator("#live")).to_have_text("live")
            expect(page.locator("#chart")).to_have_attribute("data-empty", "no-selection")
            expect(page.locator("#chart")).to_contain_text("Click a link")
            paths = {lk: page.locator(f"svg#map [data-link='{lk}'] .hit").get_attribute("d")
                     for lk in ("nec", "toshiba", "ntt")}
            assert len(set(paths.values())) == 3, paths
            for link in ("nec", "toshiba", "ntt", "mitsubishi", "idq"):
                x, y = page.evaluate(MIDDLE, link)
                page.mouse.click(x, y)
                expect(page.locator("#sel-body .sel-title")).to_have_text(f"Link {link}")
            expect(page.locator("svg#map [data-link='toshiba']")).to_have_attribute("data-state", "down")
            assert page.evaluate(OVERLAPS) == []
            expect(page.locator("[data-flag='lag']")).to_have_text("behind real time by 12 s; sampled blocks")
            expect(page.locator("[data-field='feed_mode']")).to_contain_text("sampled blocks")
            expect(page.locator("#c-lag")).to_contain_text("1")
            page.mouse.click(*page.evaluate(MIDDLE, "mitsubishi"))
            expect(page.locator("#chart")).to_have_attribute("data-empty", "no-key", timeout=8000)
            expect(page.locator("#chart")).to_contain_text("no key yet")
            assert page.locator("#chart [data-axis='rate']").all_text_contents() == ["0", "250", "500", "750", "1000"]
            page.mouse.click(*page.evaluate(MIDDLE, "nec"))
            expect(page.locator("#sel-body .sel-title")).to_have_text("Link nec")
            assert page.locator("[data-field='lag']").count() == 0  # an older KME's link: no feed rows
            page.mouse.click(*page.evaluate(MIDDLE, "idq"))
            expect(page.locator("#chart")).to_have_attribute("data-empty", "", timeout=8000)
            page.wait_for_timeout(2500)  # a few samples for the chart
            page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard-tokyo.png"), full_page=True)
            assert tokyo.stop(), "the server waited on its event stream"
            expect(page.locator("#live")).to_have_text("server stopped")
            page.wait_for_timeout(800)
            assert problems == [], problems
        finally:
            browser.close()


def test_kanto_labels_stay_apart_and_every_link_is_clickable(kanto: Served) -> None:
    """Kanto's 18 links and 11 nodes, the central-Tokyo ones close together: no label overlaps
    another or a node, and a click on each link's middle selects that link."""
    from playwright.sync_api import expect, sync_playwright

    kanto.act(lambda ctl: ctl.cut("fuchu-kawasaki", time.time(), reason="by the test"))
    kanto.act(lambda ctl: ctl.open_session("lab-hongo", "lab-kashiwa", time.time()))
    with sync_playwright() as pw:
        browser, page, problems = _open(pw, kanto)
        try:
            expect(page.locator("svg#map [data-link]")).to_have_count(18)
            assert page.evaluate(OVERLAPS) == []
            for link in [lk.label for lk in kanto.spec.links]:
                page.mouse.click(*page.evaluate(MIDDLE, link))
                expect(page.locator("#sel-body .sel-title")).to_have_text(f"Link {link}")
            expect(page.locator("[data-flag='lag']")).to_have_count(0)
            page.mouse.click(*page.evaluate(MIDDLE, "kawasaki-otemachi"))
            page.wait_for_timeout(3000)
            page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard-kanto.png"), full_page=True)
            assert problems == [], problems
        finally:
            browser.close()


def _browser_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
