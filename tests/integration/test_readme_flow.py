"""The README's "first key in three commands", run as written (on free ports): pki init, kme serve,
curl as the master SAE; then the slave gets the same key by key_ID, once."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qnet.cli.kme import wait_for_port
from tests.helpers import free_base_port
from tests.integration.conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- first-key.*?-->\s*```sh\n(.*?)```", text, re.S)
    assert block, "README lost its first-key block"
    return block.group(1).strip().splitlines()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_first_key_in_three_commands(tmp_path: Path) -> None:
    init, serve, fetch = readme_commands()
    assert serve.endswith("&")
    port_a = free_base_port([0, 1, 2, 1002])  # the README's two KMEs, the controller, its dashboard
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "two-nodes.yaml", tmp_path / "examples")  # the README runs from the checkout
    base = [*shlex.split(init), "--base-port", str(port_a)]
    subprocess.run([sys.executable, "-m", "qnet", *base[1:]], cwd=tmp_path, check=True, capture_output=True)
    server = subprocess.Popen([sys.executable, "-m", "qnet", *shlex.split(serve[:-1])[1:]], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port("127.0.0.1", port_a, 60) and wait_for_port("127.0.0.1", port_a + 1, 60)
        master = shlex.split(fetch.replace("8543", str(port_a)))
        deadline, body = time.monotonic() + 90, {}
        while time.monotonic() < deadline:  # keys arrive within seconds of the start
            out = subprocess.run(master, cwd=tmp_path, capture_output=True, text=True)
            with contextlib.suppress(json.JSONDecodeError):  # not serving yet: curl printed nothing
                body = json.loads(out.stdout)
            if "keys" in body:
                break
            time.sleep(1)
        (key,) = body["keys"]
        url = f"https://127.0.0.1:{port_a + 1}/api/v1/keys/SAE_A/dec_keys?key_ID={key['key_ID']}"
        slave = ["curl", "-s", "--cacert", "demo/ca.pem", "--cert", "demo/sae/SAE_B.pem", "--key",
                 "demo/sae/SAE_B.key", url]
        got = json.loads(subprocess.run(slave, cwd=tmp_path, capture_output=True, text=True).stdout)
        assert got["keys"] == [key]
        again = json.loads(subprocess.run(slave, cwd=tmp_path, capture_output=True, text=True).stdout)
        assert "already delivered" in again["message"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
