"""The dashboard against a live six-node ring (the controller serves it beside its own API, the
KMEs feed it their reports): an operator cuts a link on a session's route with a click and sees the
alarm and the new route, in headless Chromium."""

from __future__ import annotations

import json
import time

from tests.integration.conftest import LiveNet
from tests.servers.test_dashboard import CHROMIUM, ROOT, _browser_or_skip


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
