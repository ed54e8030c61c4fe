"""``qnet send`` and ``qnet receive`` over a live two-node network (PRNG key, so key is plentiful):
a file arrives byte-identical over AES-GCM and over the one-time pad, both ends report the key the
channel used, and bad input is one clear line, no traceback."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qnet.cli.main import main
from qnet.clients.records import Kind, SAEIdentity, connect
from tests.helpers import free_ports, scaled
from tests.integration.conftest import LiveNet, start_net

OTP_STOCK_UNITS = 8000
"""256-bit keys Alice's KME must hold for SAE_B before the tests start (a 200 kB pad takes 6,251)."""


@dataclass
class Receiver:
    """A ``qnet receive`` process serving SAE_B, its files written to ``out``."""

    proc: subprocess.Popen[bytes]
    port: int
    out: Path
    stdout: Path
    stderr: Path

    def reports(self) -> list[dict[str, Any]]:
        """The JSON reports it printed so far, one per file."""
        text, decoder, found, at = self.stdout.read_text(), json.JSONDecoder(), [], 0
        while (at := _skip_space(text, at)) < len(text):
            value, at = decoder.raw_decode(text, at)
            found.append(value)
        return found

    def wait_reports(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + scaled(30)
        while len(reports := self.reports()) < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.stderr.read_text()
            time.sleep(0.05)
        return reports


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """Alice (SAE_A) and Bob (SAE_B) on a PRNG-fed link, Alice's KME holding key for a 200 kB pad."""
    live = start_net(tmp_path_factory.mktemp("send"), source={"kind": "prng"})
    try:
        assert live.wait_for_stock("SAE_A", "SAE_B", "Alice", OTP_STOCK_UNITS, timeout_s=60) >= OTP_STOCK_UNITS
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def receiver(net: LiveNet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """``qnet receive --as SAE_B`` in a subprocess, listening once it says so."""
    work = tmp_path_factory.mktemp("receiver")
    (out := work / "in").mkdir()
    (port,) = free_ports(1)
    stdout, stderr = work / "stdout", work / "stderr"
    with stdout.open("wb") as o, stderr.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "qnet", "receive", "--state-dir", str(net.root), "--as", "SAE_B",
                                 "--listen", f"127.0.0.1:{port}", "--out", str(out), "--json"], stdout=o, stderr=e,
                                env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + scaled(60)
        while f"receives on 127.0.0.1:{port}" not in stderr.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        yield Receiver(proc, port, out, stdout, stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _send(net: LiveNet, receiver: Receiver, path: Path, capsys: pytest.CaptureFixture[str],
          *args: str) -> tuple[int, str, str]:
    code = main(["send", str(path), "--state-dir", str(net.root), "--as", "SAE_A", "--to", "SAE_B",
                 "--address", f"127.0.0.1:{receiver.port}", "--json", *args])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long messages


def test_a_file_arrives_whole_over_aes_gcm_with_rekeys(net: LiveNet, receiver: Receiver, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """3 MB over AES-GCM re-keyed every MiB: identical bytes at the receiver; each end counts 32
    key bytes per AES key, the same keys."""
    data = os.urandom(3_000_000)
    (path := tmp_path / "clip.bin").write_bytes(data)
    before = len(receiver.reports())
    code, out, err = _send(net, receiver, path, capsys, "--channel", "aes", "--rekey-bytes", str(1 << 20))
    assert code == 0, err
    sent = json.loads(out)
    got = receiver.wait_reports(before + 1)[-1]
    assert (receiver.out / "clip.bin").read_bytes() == data
    assert sent["size"] == got["size"] == 3_000_000 and sent["sha256"] == got["sha256"]
    assert sent["channel"] == "aes" and sent["frames"] == 3
    key = sent["key"]
    assert key["aes_keys"] >= 3 and key["key_bytes"] == 32 * key["aes_keys"] and key["rekeys"] == key["aes_keys"] - 1
    assert key["etsi014_bytes"] >= key["key_bytes"] and key["requests"] == -(-key["aes_keys"] // 8)  # 8 at a time
    assert got["key"]["key_bytes"] == key["key_bytes"] and got["key"]["key_IDs"] == key["key_IDs"]


def test_a_file_arrives_whole_over_the_one_time_pad(net: LiveNet, receiver: Receiver, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """200 kB over the one-time pad: identical bytes; the key used is the file's bytes and 32 per
    frame, counted the same at both ends, in one enc_keys call."""
    data = os.urandom(200_000)
    (path := tmp_path / "note.bin").write_bytes(data)
    before = len(receiver.reports())
    code, out, err = _send(net, receiver, path, capsys, "--channel", "otp", "--wait-s", "0")
    assert code == 0, err
    sent, got = json.loads(out), receiver.wait_reports(before + 1)[-1]
    assert (receiver.out / "note.bin").read_bytes() == data
    assert sent["frames"] == got["frames"] == 1
    assert sent["key"]["key_bytes"] == got["key"]["key_bytes"] == 200_000 + 32 * sent["frames"]
    assert sent["key"]["aes_keys"] is None and sent["key"]["requests"] == 1
    assert sent["key"]["key_IDs"] == got["key"]["key_IDs"] == got["key"]["etsi014_keys"]
    assert sent["key"]["etsi014_bytes"] >= sent["key"]["key_bytes"]


def test_bad_input_is_one_clear_line(net: LiveNet, receiver: Receiver, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong SAE name, a missing file, nothing listening, a pad larger than the key, an existing
    file at the receiver: exit status 1 and one line saying what is wrong."""
    (path := tmp_path / "small.bin").write_bytes(b"x" * 1000)
    (big := tmp_path / "big.bin").write_bytes(b"\0" * 8_000_000)
    (receiver.out / "taken.bin").write_bytes(b"old")
    (taken := tmp_path / "taken.bin").write_bytes(b"new")
    (idle,) = free_ports(1)
    cases = [
        ((path, "--to", "SAE_Z"), "--to 'SAE_Z': no such SAE in the network of"),
        ((path, "--as", "SAE_AA"), "did you mean 'SAE_A'? (its SAEs: SAE_A, SAE_B)"),
        ((tmp_path / "missing.bin",), "no such file"),
        ((path, "--address", f"127.0.0.1:{idle}"), "no receiver listens at"),
        ((big, "--channel", "otp", "--wait-s", "0"), "needs 8,000,256 key bytes"),
        ((taken,), "taken.bin exists at the receiver"),
        ((path, "--state-dir", str(tmp_path / "nowhere")), "no such state directory"),
    ]
    for (file, *args), message in cases:
        code, _, err = _send(net, receiver, file, capsys, *args)
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
        assert err.count("error:") == 1, err
    assert (receiver.out / "taken.bin").read_bytes() == b"old"


def test_a_hostile_length_prefix_is_refused(net: LiveNet, receiver: Receiver) -> None:
    """A sender announcing a 4 GB frame is refused before the receiver reads it, with a message
    saying so; no file is left behind."""
    me = SAEIdentity("SAE_A", Path(net.ca), *map(Path, net.cert("SAE_A")))
    with connect(("127.0.0.1", receiver.port), me, "SAE_B") as conn:
        conn.send_json(Kind.HEADER, {"protocol": "qnet-send/1", "sender": "SAE_A", "receiver": "SAE_B",
                                     "channel": "aes", "name": "huge.bin", "size": 10, "chunk_bytes": 1 << 20,
                                     "wait_s": 0})
        assert conn.recv_json(Kind.READY)[0] is Kind.READY
        conn._sock.sendall(struct.pack(">BI", Kind.DATA, 0xFFFFFFFF))  # the raw prefix, no body
        kind, body = conn.recv_json()
    assert kind is Kind.ERROR and "4294967295 bytes, over the" in body["message"]
    assert not any(p.name.startswith((".huge.bin", "huge.bin")) for p in receiver.out.iterdir())
