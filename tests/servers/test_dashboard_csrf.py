"""Cross-site request forgery against the dashboard (issue 18.4).

On the landed main a page served from another port of 127.0.0.1 cut a link and started the
eavesdropper through the operator's logged-in browser: the cookie went with its form posts, since
SameSite does not tell ports apart. Here the same hostile page, in headless Chromium, next to the
operator's open dashboard: its form posts, its no-cors fetches and its fetch with the token header
change nothing, and it cannot frame the dashboard; in-process, every rule on its own.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from qnet.control.controller import Controller
from tests.helpers import free_ports
from tests.servers.test_dashboard import CHROMIUM, COOKIE, TOKEN, InProcess, Served, dash, tokyo

__all__ = ["dash", "tokyo"]  # the fixtures, used here by name

HOSTILE = """<!doctype html><html><body><h1>cute cats</h1>
<iframe name="sink" id="sink"></iframe>
<form id="cut" method="POST" action="{base}/api/links/nec/cut" target="sink"></form>
<form id="eve" method="POST" action="{base}/api/links/ntt/eavesdropper?token={token}" target="sink">
  <input name="x" value="1"></form>
<iframe id="framed" src="{base}/?token={token}"></iframe>
<script>
async function attack() {{
  const tries = [
    fetch("{base}/api/links/idq/cut", {{method: "POST", credentials: "include", mode: "no-cors"}}),
    fetch("{base}/api/links/mitsubishi/cut", {{method: "POST", credentials: "include",
          headers: {{"X-Qnet-Token": "{token}"}}}}),
    fetch("{base}/api/links/idq/eavesdropper", {{method: "POST", credentials: "include", mode: "no-cors",
          headers: {{"Content-Type": "text/plain"}}, body: "x"}}),
  ];
  document.getElementById("cut").submit();
  await new Promise(r => setTimeout(r, 300));
  document.getElementById("eve").submit();
  for (const t of tries) {{ try {{ await t; }} catch (e) {{}} }}
  await new Promise(r => setTimeout(r, 500));
  document.title = "done";
}}
attack();
</script></body></html>"""


class Hostile:
    """The attacker's page on another port of 127.0.0.1."""

    def __init__(self, base: str) -> None:
        page = HOSTILE.format(base=base, token=TOKEN).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_ports(1)[0]), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(tokyo: Served) -> Iterator[Hostile]:
    h = Hostile(f"http://127.0.0.1:{tokyo.port}")
    yield h
    h.close()


def test_a_hostile_page_on_another_port_changes_nothing_and_cannot_frame_the_dashboard(
        tokyo: Served, hostile: Hostile) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            operator = context.new_page()
            operator.goto(tokyo.url)  # the operator is logged in: the cookie is set
            expect(operator.locator("#live")).to_have_text("live")
            assert any(c["name"] == COOKIE for c in context.cookies())
            attacker = context.new_page()
            attacker.goto(hostile.url)
            expect(attacker).to_have_title("done", timeout=15_000)
            links = tokyo.ctl.links
            assert not any(links[lk].cut for lk in ("nec", "idq", "mitsubishi")), "a forged request cut a link"
            assert not links["ntt"].eavesdropper and not links["idq"].eavesdropper
            framed = attacker.frame_locator("#framed").locator("svg#map")
            assert framed.count() == 0  # X-Frame-Options / frame-ancestors: not rendered
            expect(operator.locator("#live")).to_have_text("live")  # the operator's page still works
            assert "token" not in operator.url  # out of the address bar (and of any Referer)
        finally:
            browser.close()


def _posted(client: InProcess, **headers: str) -> int:
    return client.post("/api/links/A-B/cut", headers=headers).status_code


def test_a_state_change_needs_the_header_token_and_this_origin(dash: tuple[InProcess, Controller]) -> None:
    client, ctl = dash
    cookie = {"Cookie": f"{COOKIE}={TOKEN}"}
    assert _posted(client, **cookie) == 403  # a cookie alone: what a forged form post carries
    assert client.post("/api/links/A-B/cut", params={"token": TOKEN}).status_code == 403
    assert _posted(client, **{"X-Qnet-Token": TOKEN, "Origin": "http://127.0.0.1:9999"}) == 403
    assert _posted(client, **{"X-Qnet-Token": TOKEN, "Origin": "null"}) == 403
    assert not ctl.links["A-B"].cut
    assert _posted(client, **{"X-Qnet-Token": TOKEN, "Origin": "http://127.0.0.1"}) == 200  # its own page
    assert ctl.links["A-B"].cut
    assert client.get("/api/state", headers=cookie).status_code == 200  # reading: the cookie will do


def test_a_body_over_the_limit_is_refused(dash: tuple[InProcess, Controller]) -> None:
    from qnet.servers.dashboard import DASHBOARD_BODY_BYTES

    client, ctl = dash
    r = client.post("/api/links/A-B/cut", headers={"X-Qnet-Token": TOKEN}, content=b"x" * (DASHBOARD_BODY_BYTES + 1))
    assert r.status_code == 413 and not ctl.links["A-B"].cut


def test_only_loopback_host_names_are_served(dash: tuple[InProcess, Controller]) -> None:
    client, _ = dash
    assert client.get("/api/state", headers={"X-Qnet-Token": TOKEN, "Host": "evil.example"}).status_code == 400
    assert client.get("/api/state", headers={"X-Qnet-Token": TOKEN, "Host": "localhost"}).status_code == 200


def test_every_answer_forbids_framing_and_the_page_runs_only_its_own_script(
        dash: tuple[InProcess, Controller]) -> None:
    client, _ = dash
    page = client.get("/", params={"token": TOKEN})
    policy = page.headers["content-security-policy"]
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.text and page.text.count("<script") == 1
    assert f'<meta name="qnet-token" content="{TOKEN}">' in page.text
    assert client.get("/", params={"token": TOKEN}).headers["content-security-policy"] != policy  # fresh nonce
    for answer in (page, client.get("/api/state", params={"token": TOKEN}), client.get("/api/state")):
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], answer.url
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
