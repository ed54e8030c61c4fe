"""The audit log of key supply: the hash chain, its verification through ``qnet audit verify``, the
records (never key material) and the accounting."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path

import pytest

from qnet.cli.main import main
from qnet.keys.store import KeyStore
from qnet.management.audit import (
    GENESIS,
    AuditEvent,
    AuditLog,
    AuditRecord,
    KeySupplyAudit,
    accounting,
    audit_path,
    read_records,
    store_usage,
    verify,
)


def record(i: int, *, event: AuditEvent = AuditEvent.ENC_KEYS, link: str = "Alice-Bob") -> AuditRecord:
    return AuditRecord(kme="Alice", event=event, key_ID=f"00000000-0000-0000-0000-{i:012d}",
                       master_SAE_ID="SAE_A", slave_SAE_IDs=("SAE_B",), size_bits=256, link_id=link,
                       route=("Alice", "Bob"), time_s=1_700_000_000.0 + i)


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """An audit log of five records written in two batches."""
    path = tmp_path / "audit" / "Alice.jsonl"
    log = AuditLog(path)
    log.append([record(0), record(1)])
    log.append([record(2), record(3), record(4)])
    log.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_append_and_verify(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Records are chained from the genesis value, one line each, and verify says the chain is intact."""
    rows = [json.loads(line) for line in lines(chain)]
    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["prev"] == GENESIS and all(b["prev"] == a["hash"] for a, b in itertools.pairwise(rows))
    assert rows[2]["time"] == "2023-11-14T22:13:22.000000Z" and rows[2]["event"] == "enc_keys"
    assert verify(chain).ok
    code, out = run(capsys, "audit", "verify", str(chain))
    assert code == 0 and "ok 5 records, chain intact" in out


def test_reopened_log_continues_the_chain(chain: Path) -> None:
    """A KME that restarts continues its chain where it stopped."""
    log = AuditLog(chain)
    log.append([record(5)])
    log.close()
    assert verify(chain).records == 6 and verify(chain).ok


def test_torn_tail_is_reported_and_the_chain_continues_after_it(chain: Path) -> None:
    """A line torn by a crash stays in the file and is reported; a restarted writer goes on after it."""
    chain.write_text("".join(lines(chain)[:-1]) + lines(chain)[-1][:40])
    log = AuditLog(chain)
    log.append([record(9)])
    log.close()
    verdict = verify(chain)
    assert verdict.bad_line == 5 and "not a JSON record" in verdict.reason
    rows = read_rows_after_torn(chain)
    assert rows[-1]["seq"] == 4 and rows[-1]["prev"] == json.loads(lines(chain)[3])["hash"]


def read_rows_after_torn(path: Path) -> list[dict[str, object]]:
    out = []
    for line in lines(path):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def tamper_key_id(path: Path) -> None:
    rows = lines(path)
    rows[2] = rows[2].replace("000000000002", "000000000099")
    path.write_text("".join(rows))


def tamper_time(path: Path) -> None:
    rows = lines(path)
    rows[2] = rows[2].replace("22:13:22", "22:13:23")
    path.write_text("".join(rows))


def delete_record(path: Path) -> None:
    rows = lines(path)
    del rows[2]
    path.write_text("".join(rows))


def swap_records(path: Path) -> None:
    rows = lines(path)
    rows[2], rows[3] = rows[3], rows[2]
    path.write_text("".join(rows))


def truncate_last(path: Path) -> None:
    data = path.read_text()
    path.write_text(data[: len(data) - 30])


def rehash_altered(path: Path) -> None:
    """Change a record and recompute its own hash: the next record no longer links to it."""
    from qnet.management.audit import canonical, chain_hash

    rows = [json.loads(line) for line in lines(path)]
    rows[2]["key_ID"] = "00000000-0000-0000-0000-000000000099"
    rows[2]["hash"] = chain_hash(rows[2])
    path.write_text("".join(canonical(r).decode() + "\n" for r in rows))


@pytest.mark.parametrize(("tamper", "line", "why"), [
    (tamper_key_id, 3, "altered: its hash does not match"),
    (tamper_time, 3, "altered: its hash does not match"),
    (delete_record, 3, "record(s) missing before it: it has seq 3, seq 2 was expected"),
    (swap_records, 3, "out of order: it has seq 3, and seq 2 comes later, at line 4"),
    (truncate_last, 5, "torn"),
    (rehash_altered, 4, "does not link to record 3"),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_tampering_is_detected_naming_the_record(chain: Path, capsys: pytest.CaptureFixture[str], tamper: object,
                                                 line: int, why: str) -> None:
    """Each kind of tampering makes `qnet audit verify` exit 1 naming the first bad record and why."""
    assert callable(tamper)
    tamper(chain)
    code, out = run(capsys, "audit", "verify", str(chain))
    assert code == 1
    assert f"record {line} (line {line})" in out and why in " ".join(out.split()), out
    assert "Traceback" not in out


def test_extra_field_is_refused(chain: Path) -> None:
    """A record with a field outside the schema (say, a key) fails verification even if rehashed."""
    from qnet.management.audit import canonical, chain_hash

    rows = [json.loads(line) for line in lines(chain)]
    rows[0]["key"] = base64.b64encode(b"\x01" * 32).decode()
    rows[0]["hash"] = chain_hash(rows[0])
    chain.write_text("".join(canonical(r).decode() + "\n" for r in rows))
    verdict = verify(chain)
    assert verdict.bad_line == 1 and "unexpected field(s) key" in verdict.reason


@pytest.mark.parametrize("content", [None, "", "not json\n", '{"seq": 0}\n', "[1, 2]\n"],
                         ids=["missing", "empty", "garbage", "partial", "array"])
def test_missing_or_malformed_file_gives_a_message_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   content: str | None) -> None:
    """A missing or malformed file: a one-line message and exit 1 (an empty log is an intact one)."""
    path = tmp_path / "x.jsonl"
    if content is not None:
        path.write_text(content)
    code, out = run(capsys, "audit", "verify", str(path))
    assert "Traceback" not in out and "internal error" not in out
    if content == "":
        assert code == 0 and "ok 0 records" in out
    else:
        assert code == 1 and ("no such" in out or "record 1 (line 1)" in out), out


def test_verify_a_deployment_directory(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment directory: every log under audit/ is checked."""
    code, out = run(capsys, "audit", "verify", str(chain.parent.parent))
    assert code == 0 and "Alice.jsonl: ok 5 records" in out


def test_audit_path_beside_the_configuration(tmp_path: Path) -> None:
    """The log is audit/NODE.jsonl beside the KME's configuration, else beside its SQLite file."""
    assert audit_path("Bob", tmp_path / "Bob.json", "sqlite:///x.db") == tmp_path / "audit" / "Bob.jsonl"
    assert audit_path("Bob", None, f"sqlite:///{tmp_path}/store/Bob.db") == tmp_path / "store" / "audit" / "Bob.jsonl"
    assert audit_path("Bob", None, "sqlite:///:memory:") is None


def test_key_supply_records_never_hold_key_material(tmp_path: Path) -> None:
    """Keys served from a store are recorded by key_ID, link and size; their bytes appear nowhere."""
    store = KeyStore(f"sqlite:///{tmp_path / 'Alice.db'}", "Alice")
    ends = ("Alice", "Bob")
    units = [(f"00000000-0000-0000-0000-{i:012d}", bytes([i + 1]) * 32) for i in range(8)]
    store.add_units("Alice-Bob", ends, units, now_s=0.0)
    store.apply_answer("Alice-Bob", [u for u, _ in units], [u for u, _ in units], 0.0, 0.0)
    keys = store.take_for_master("Alice-Bob", 2, 256, 256, master_sae="SAE_A", slaves=["SAE_B"], peer="Bob",
                                 now_s=1.0, message=lambda groups: {"groups": groups})
    assert keys, "the store served no key: the test's set-up is wrong"
    path = tmp_path / "audit" / "Alice.jsonl"
    audit = KeySupplyAudit(AuditLog(path), "Alice", store, clock=lambda: 2.0)
    audit.enc_keys([k.key_ID for k in keys], master="SAE_A", slaves=["SAE_B"], size_bits=256, route=["Alice", "Bob"])
    audit.close()
    store.close()
    text = path.read_text()
    rows = read_records(path)
    assert [r["key_ID"] for r in rows] == [k.key_ID for k in keys]
    assert {r["link_id"] for r in rows} == {"Alice-Bob"}
    for key in keys:
        assert base64.b64encode(key.key).decode() not in text and key.key.hex() not in text


def test_accounting_per_application_and_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bits per SAE pair and per link add up from the records; report prints them (table and JSON)."""
    path = tmp_path / "audit" / "Alice.jsonl"
    log = AuditLog(path)
    log.append([record(0), record(1), record(2, event=AuditEvent.DEC_KEYS, link="relay:Carol")])
    log.close()
    acc = accounting(read_records(path))
    app = acc.applications[("SAE_A", ("SAE_B",))]
    assert (app["enc_keys"].keys, app["enc_keys"].bits, app["dec_keys"].bits) == (2, 512, 256)
    assert acc.links[("Alice", "Alice-Bob")]["enc_keys"].bits == 512
    assert acc.links[("Alice", "relay:Carol")]["dec_keys"].bits == 256
    code, out = run(capsys, "audit", "report", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["applications"][0]["enc_keys"] == {"keys": 2, "bits": 512}
    code, out = run(capsys, "audit", "report", str(path))
    assert code == 0 and "SAE_A" in out and "Alice-Bob" in out and "2 / 512" in out


def test_report_refuses_a_broken_chain(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No accounting from a tampered log: the report names the bad record."""
    delete_record(chain)
    code, out = run(capsys, "audit", "report", str(chain))
    assert code == 1 and "record 3 (line 3)" in " ".join(out.split()) and "Traceback" not in out


def test_store_usage_counts_spent_units_by_use(tmp_path: Path) -> None:
    """The store's own count: bits spent per link, by use."""
    store = KeyStore(f"sqlite:///{tmp_path / 'Alice.db'}", "Alice")
    units = [(f"00000000-0000-0000-0000-{i:012d}", bytes(32)) for i in range(8)]
    store.add_units("Alice-Bob", ("Alice", "Bob"), units, now_s=0.0)
    store.apply_answer("Alice-Bob", [u for u, _ in units], [u for u, _ in units], 0.0, 0.0)
    keys = store.take_for_master("Alice-Bob", 1, 512, 256, master_sae="SAE_A", slaves=["SAE_B"], peer="Bob",
                                 now_s=1.0, message=lambda groups: {"groups": groups})
    usage = store_usage(store, 256)
    store.close()
    assert len(keys) == 1 and usage == {("Alice", "Alice-Bob"): {"enc_keys": 512}}
    with pytest.raises(ValueError, match="unit_bits must be positive"):
        store_usage(store, 0)
