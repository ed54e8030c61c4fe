"""The audit log of live KMEs: Alice records the keys SAE_A gets (enc_keys), Bob those SAE_B gets
(dec_keys), each in audit/NODE.jsonl of the deployment; `qnet audit verify` passes on both (each
head signed in its KME's store) and fails once the last record is cut off, the file emptied, or a
byte flipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qnet.cli.main import main
from tests.integration.conftest import start_net


def test_live_kmes_audit_their_key_supply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Keys handed out by live KMEs are in their audit logs (by key_ID, never by key), and the chains
    verify until tampered with."""
    net = start_net(tmp_path, source={"kind": "prng", "max_units": 5000})
    try:
        assert net.wait_for_stock("SAE_A", "SAE_B", "Alice", 4, timeout_s=60) >= 4
        with net.client("SAE_A") as alice:
            answer = alice.get(f"{net.url('Alice')}/api/v1/keys/SAE_B/enc_keys", params={"number": 3})
        assert answer.status_code == 200, answer.text
        delivered = answer.json()["keys"]
        ids = [k["key_ID"] for k in delivered]
        with net.client("SAE_B") as bob:
            answer = bob.post(f"{net.url('Bob')}/api/v1/keys/SAE_A/dec_keys",
                              json={"key_IDs": [{"key_ID": k} for k in ids]})
        assert answer.status_code == 200, answer.text
        assert [k["key"] for k in answer.json()["keys"]] == [k["key"] for k in delivered]
    finally:
        net.stop()

    logs = {node: tmp_path / "audit" / f"{node}.jsonl" for node in ("Alice", "Bob")}
    rows = {node: [json.loads(line) for line in path.read_text().splitlines()] for node, path in logs.items()}
    enc = [r for r in rows["Alice"] if r["event"] == "enc_keys"]
    dec = [r for r in rows["Bob"] if r["event"] == "dec_keys"]
    assert [r["key_ID"] for r in enc] == ids and [r["key_ID"] for r in dec] == ids
    assert {(r["master_SAE_ID"], tuple(r["slave_SAE_IDs"]), r["size_bits"]) for r in enc + dec} == {
        ("SAE_A", ("SAE_B",), 256)}
    assert {r["kme"] for r in enc} == {"Alice"} and {r["kme"] for r in dec} == {"Bob"}
    assert {r["link_id"] for r in enc + dec} == {"Alice-Bob"} and enc[0]["route"] == ["Alice", "Bob"]
    for path in logs.values():
        text = path.read_text()
        assert not any(k["key"] in text for k in delivered), "key material in the audit log"

    for node, path in logs.items():
        assert main(["audit", "verify", str(path)]) == 0
        said = " ".join(capsys.readouterr().out.split())
        assert f"ok {len(rows[node])} records, chain intact; its head signed at record {len(rows[node])}" in said

    whole = logs["Alice"].read_bytes()  # the last record cut off, then every record (issue 18.5)
    for cut in (whole[:whole.rindex(b"\n", 0, -1) + 1], b""):
        logs["Alice"].write_bytes(cut)
        assert main(["audit", "verify", str(tmp_path)]) == 1
        assert "truncated" in capsys.readouterr().err
    logs["Alice"].write_bytes(whole)

    data = bytearray(logs["Bob"].read_bytes())
    at = data.index(ids[1].encode()) + 3  # a byte of the second record's key_ID
    data[at] ^= 0x01
    logs["Bob"].write_bytes(bytes(data))
    assert main(["audit", "verify", str(logs["Bob"])]) == 1
    out, err = capsys.readouterr()
    assert "record 2 (line 2)" in " ".join((out + err).split()) and "altered" in out + err
