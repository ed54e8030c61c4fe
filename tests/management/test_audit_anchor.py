"""Audit tail truncation (issue 18.5): on the landed main, removing the last 10 (or 1,500) records,
or emptying the file, left ``qnet audit verify`` saying "chain intact", and a restarted KME went on
from the truncated chain. Here a KME's signed anchor of its head, kept in its store and at its peer,
shows each of them, and the KME will not restart on a truncated log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

from qnet.cli.main import main
from qnet.keys.store import KeyStore
from qnet.management.audit import AuditError, AuditEvent, AuditLog, AuditRecord
from qnet.management.audit_anchor import ANCHOR_META, PEER_ANCHOR_META, Anchor, Anchoring, keep_peer_anchor
from qnet.security.envelope import Opened
from qnet.servers.config import load_config
from qnet.servers.node import KMENode
from tests.servers.test_kme_inprocess import API, Pair


def _records(n: int, start: int = 0) -> list[AuditRecord]:
    return [AuditRecord(kme="A", event=AuditEvent.ENC_KEYS, key_ID=f"k{start + i}", master_SAE_ID="SAE_A",
                        slave_SAE_IDs=("SAE_B",), size_bits=256, link_id="A-B", route=("A", "B"), time_s=1.0)
            for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    s = KeyStore(f"sqlite:///{tmp_path / 'A.db'}", "A")
    yield s
    s.close()


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:keep]))


@pytest.mark.parametrize("keep", [1990, 500, 0])  # 10 and 1,500 records cut off, the file emptied
def test_a_log_cut_short_of_its_anchor_is_found_and_not_continued(tmp_path: Path, store: KeyStore,
                                                                   keep: int) -> None:
    key, path = mldsa.MLDSA65PrivateKey.generate(), tmp_path / "audit" / "A.jsonl"
    log = AuditLog(path)
    anchoring = Anchoring(log, "A", store, key)
    log.append(_records(1000))
    first = anchoring.anchor(10.0)
    log.append(_records(1000, 1000))
    last = anchoring.anchor(11.0)
    assert first and last and last.seq == 2000 and anchoring.anchor(12.0) is None  # only when the head moves
    assert Anchor.parse(store.get_meta(ANCHOR_META)) == last and last.valid(key.public_key())
    log.close()
    _cut(path, keep)
    _refused(path, store, key, f"truncated: the anchor signed by A says 2000 record\\(s\\), the log holds {keep}")


def _refused(path: Path, store: KeyStore, key: mldsa.MLDSA65PrivateKey, says: str) -> None:
    log = AuditLog(path)
    try:
        with pytest.raises(AuditError, match=says):
            Anchoring(log, "A", store, key)
    finally:
        log.close()


@pytest.mark.parametrize("stored", ["garbage", "other KME", "unsigned"])
def test_a_kme_does_not_start_on_an_anchor_it_did_not_sign(tmp_path: Path, store: KeyStore, stored: str) -> None:
    """Replacing the store's anchor (to hide a truncation, or to lock the KME out) is found too."""
    key, path = mldsa.MLDSA65PrivateKey.generate(), tmp_path / "A.jsonl"
    log = AuditLog(path)
    Anchoring(log, "A", store, key).anchor(1.0)
    log.close()
    path.write_bytes(b"")
    value = {"garbage": "gone", "other KME": json.dumps({**Anchor("Z", 0, "0" * 64, 1.0).as_dict()}),
             "unsigned": json.dumps(Anchor("A", 0, "0" * 64, 1.0, "c2ln").as_dict())}[stored]
    store.set_meta(ANCHOR_META, value)
    _refused(path, store, key, "not one it signed")


def test_a_log_rewritten_at_its_anchor_is_found(tmp_path: Path, store: KeyStore) -> None:
    key, path = mldsa.MLDSA65PrivateKey.generate(), tmp_path / "A.jsonl"
    log = AuditLog(path)
    anchoring = Anchoring(log, "A", store, key)
    log.append(_records(5))
    anchoring.anchor(1.0)
    log.close()
    path.unlink()  # a new chain of as many records, written from scratch: every hash differs
    forged = AuditLog(path)
    forged.append(_records(5, 100))
    forged.close()
    _refused(path, store, key, "rewritten: record 5")


def test_a_peer_keeps_only_the_senders_signed_anchor_and_never_an_older_one(store: KeyStore) -> None:
    key, other = mldsa.MLDSA65PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate()

    def signed(seq: int, by: mldsa.MLDSA65PrivateKey = key, kme: str = "B") -> dict[str, object]:
        import base64
        a = Anchor(kme, seq, "h" * 64, float(seq))
        return {**a.as_dict(), "sig": base64.b64encode(by.sign(a.signed_bytes())).decode()}

    assert keep_peer_anchor(store, "B", signed(7), key.public_key()) == {"ok": True, "kept_seq": 7}
    for bad in (signed(9, other), signed(9, kme="C"), {**signed(9), "seq": 10}, {"seq": "x"}, None):
        with pytest.raises(AuditError):
            keep_peer_anchor(store, "B", bad, key.public_key())
    assert keep_peer_anchor(store, "B", signed(3), key.public_key()) == {"ok": False, "kept_seq": 7}
    assert json.loads(store.get_meta(PEER_ANCHOR_META + "B") or "{}")["seq"] == 7


def test_qnet_audit_verify_finds_a_cut_off_end_from_the_peers_copy_alone(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Alice hands out keys and anchors her head; Bob takes the anchor (as the KM channel carries
    it). Alice's log then loses its last records and her own store its anchor: Bob's copy still
    shows the cut; a restarted Alice refuses to continue the chain."""
    pair = Pair(tmp_path)
    try:
        for _ in range(3):
            assert pair.call("Alice", "SAE_A", "POST", f"{API}/SAE_B/enc_keys", json={"number": 2}).status_code == 200
        alice, bob = pair.nodes["Alice"], pair.nodes["Bob"]
        alice.anchor_audit(tell_peers=False)
        anchor = alice.anchoring.last if alice.anchoring else None
        assert anchor is not None and anchor.seq == 6
        reply = bob.keep_anchor(Opened("Alice", "n1", alice.clock(), {"type": "anchor", "anchor": anchor.as_dict()}))
        assert reply == {"ok": True, "kept_seq": 6}
    finally:
        pair.close()
    log = tmp_path / "audit" / "Alice.jsonl"
    assert main(["audit", "verify", str(tmp_path)]) == 0
    assert "head signed at record 6 (Bob's store, its store)" in " ".join(capsys.readouterr().out.split())
    _cut(log, 4)
    store = KeyStore(load_config(tmp_path / "Alice.json").store_url, "Alice")
    store.set_meta(ANCHOR_META, "gone")  # the attacker also wiped the KME's own anchor
    store.close()
    assert main(["audit", "verify", str(log)]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "truncated: the anchor signed by Alice says 6 record(s), the log holds 4" in said
    log.unlink()
    assert main(["audit", "verify", str(tmp_path)]) == 1
    assert "Alice.jsonl: FAILED at truncated" in " ".join(capsys.readouterr().err.split())
    store = KeyStore(load_config(tmp_path / "Alice.json").store_url, "Alice")
    store.set_meta(ANCHOR_META, json.dumps(anchor.as_dict()))
    store.close()
    with pytest.raises(AuditError, match="will not continue a truncated"):
        KMENode(load_config(tmp_path / "Alice.json"), tmp_path / "Alice.json")
