"""``qnet up SPEC --state-dir DIR`` and ``qnet down``: the whole network from a spec, driven only
through what endpoints.json says, as a user's script would."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import free_base_port

SPEC = Path(__file__).resolve().parent / "specs" / "ring6.yaml"


def _client(endpoints: dict[str, object], sae: str) -> httpx.Client:
    info = endpoints["saes"][sae]  # type: ignore[index]
    ctx = ssl.create_default_context(cafile=str(endpoints["ca_cert"]))
    ctx.load_cert_chain(info["cert"], info["key"])
    return httpx.Client(verify=ctx, timeout=20)


def _up(state: Path, port: int) -> subprocess.Popen[bytes]:
    log = state.parent / "up.log"
    with open(log, "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "qnet", "up", str(SPEC), "--state-dir", str(state),
                                 "--base-port", str(port), "--source", "prng"], stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while not (state / "endpoints.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    return proc


def _relayed_key(endpoints: dict[str, object]) -> tuple[str, bytes, bytes]:
    kmes = endpoints["kmes"]  # type: ignore[index]
    with _client(endpoints, "SAE_0") as master, _client(endpoints, "SAE_3") as slave:
        deadline = time.monotonic() + 60
        while (r := master.get(f"{kmes['R0']}/api/v1/keys/SAE_3/enc_keys")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        key = r.json()["keys"][0]
        d = slave.get(f"{kmes['R3']}/api/v1/keys/SAE_0/dec_keys", params={"key_ID": key["key_ID"]})
        assert d.status_code == 200, d.text
        return key["key_ID"], base64.b64decode(key["key"]), base64.b64decode(d.json()["keys"][0]["key"])


def test_up_writes_endpoints_serves_relayed_keys_resumes_and_goes_down(tmp_path: Path) -> None:
    state = tmp_path / "net"
    port = free_base_port([*range(7), 6 + 1000])  # six KMEs, the controller, its dashboard
    proc = _up(state, port)
    try:
        endpoints = json.loads((state / "endpoints.json").read_text())
        assert set(endpoints) >= {"ca_cert", "kmes", "saes", "controller"}
        assert set(endpoints["kmes"]) == {f"R{i}" for i in range(6)}
        assert endpoints["saes"]["SAE_3"]["node"] == "R3"
        assert endpoints["dashboard"].startswith(f"http://127.0.0.1:{port + 6 + 1000}/?token=")
        assert httpx.get(endpoints["dashboard"], timeout=10).status_code == 200
        _, mine, theirs = _relayed_key(endpoints)
        assert mine == theirs and len(mine) == 32
    finally:
        down = subprocess.run([sys.executable, "-m", "qnet", "down", "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        proc.wait(timeout=30)
    assert not (state / "endpoints.json").exists()
    stored = (state / "store" / "R0.db").stat().st_size
    proc = _up(state, port)  # resumes from the same stores and certificates
    try:
        assert (state / "store" / "R0.db").stat().st_size >= stored
        _, mine, theirs = _relayed_key(json.loads((state / "endpoints.json").read_text()))
        assert mine == theirs
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)


def test_down_without_a_running_network_says_so(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "qnet", "down", "--state-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no network is running here" in r.stderr and "Traceback" not in r.stderr
