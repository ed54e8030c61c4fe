"""The audit log of key supply (Y.3804 accounting): one record per key a KME hands out, in a hash chain.

What is recorded, at the KME that does it:

``enc_keys``      a key handed to a master SAE (direct over a link, or relayed: ``route`` has more
                  than two nodes and ``link_id`` is the first hop's link)
``dec_keys``      a key handed to a slave SAE (``link_id`` as the store has it: the link, or
                  ``relay:<first node>`` for a relayed key)
``relay_stored``  a relayed key stored at the last node of its route for its slaves (``link_id`` is
                  the last hop's link)

Each record names the key_ID, the SAEs (``master_SAE_ID``, ``slave_SAE_IDs``), the KME, the key
size, the link and route, the event and the time (ISO 8601, UTC). **Never key material**: no field
can hold it (:func:`verify` refuses a record with any field outside :data:`FIELDS`), and the hooks
read only key_IDs from what is handed out.

Tamper evidence: record ``n`` carries ``seq`` = n, ``prev`` = the hash of record n-1 (the first one
links to :data:`GENESIS`) and ``hash`` = SHA-256 over ``prev`` followed by the record's canonical
JSON without ``hash`` (sorted keys, no spaces, UTF-8). Changing, removing, inserting, reordering or
tearing a record breaks the chain at that record, and :func:`verify` names it. A hash chain alone
does not show the last records removed, the file emptied, or the whole file rewritten from an
altered record on (every later hash recomputed): the KME anchors its head, signed, in its store and
at its peers (:mod:`qnet.management.audit_anchor`), and a log that falls short of its anchor is
found.

Where: one JSON Lines file per KME, ``audit/NODE.jsonl`` in the deployment directory, beside the
KME's configuration (:func:`audit_path`). A file rather than a table in the KME's store because
(1) it can be checked, copied and archived without the database or its driver, by ``qnet audit
verify`` alone; (2) append-only is what the file is opened for (``"ab"``), where a table row can
be updated in place by anything that holds the database; (3) it keeps the key store's schema and
transactions, which sit on every key's path, unchanged. The cost: the record is written after the
store's commit, not inside it, so a crash between the two loses the record of keys handed out in
that instant (never the other way round: nothing is recorded that was not handed out). Each batch
(the keys of one request) is written, flushed and fsync'ed before the keys leave the KME; if the
log cannot be written, the request fails (503) rather than hand out keys without a record.

A KME that restarts continues the chain from the last intact record, unless the log is behind its
anchor (then it refuses to start); a line torn by a crash stays in the file, and :func:`verify`
reports it.

Accounting (:func:`accounting`): key bits per application (master SAE and its slaves) and per link,
from the records, and per link from the store (:func:`store_usage`: the units each link spent, by
use).

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "audit" / "Alice.jsonl"
    >>> log = AuditLog(path)
    >>> log.append([AuditRecord(kme="Alice", event=AuditEvent.ENC_KEYS, key_ID="k1", master_SAE_ID="SAE_A",
    ...                         slave_SAE_IDs=("SAE_B",), size_bits=256, link_id="Alice-Bob",
    ...                         route=("Alice", "Bob"), time_s=0.0)])
    1
    >>> log.close()
    >>> verify(path)
    Verdict(records=1, bad_line=None, reason='')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from qnet.errors import UnavailableError
from qnet.keys.store import SPENT, KeyStore, SpentAs
from qnet.keys.store import keys_table as keys

__all__ = ["FIELDS", "GENESIS", "OPTIONAL_FIELDS", "Accounting", "AuditError", "AuditEvent", "AuditLog", "AuditRecord",
           "KeySupplyAudit", "Usage", "Verdict", "accounting", "audit_files", "audit_path", "read_records",
           "read_rows", "store_usage", "verify"]

log = logging.getLogger("qnet.audit")

GENESIS = "0" * 64
"""What the first record's ``prev`` is: the fixed start of every chain."""
FIELDS = frozenset({"seq", "prev", "hash", "kme", "event", "key_ID", "master_SAE_ID", "slave_SAE_IDs",
                    "size_bits", "link_id", "route", "time"})
"""Every field a record must have; :data:`OPTIONAL_FIELDS` it may have; nothing else (so no field
can carry key material)."""
OPTIONAL_FIELDS = frozenset({"Key_stream_ID"})
"""Fields a record has only sometimes: the ETSI 004 key stream a key went to (a UUID)."""
_TAIL_BYTES = 1 << 16
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class AuditError(UnavailableError):
    """An audit log cannot be read or written (missing, not a file, not a chain)."""


class AuditEvent(StrEnum):
    """What a record says happened to its key."""

    ENC_KEYS = "enc_keys"
    DEC_KEYS = "dec_keys"
    RELAY_STORED = "relay_stored"


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One key handed out (or stored, at a relay's last node): what the chain records, before it
    is chained. No key material: there is no field for it."""

    kme: str
    event: AuditEvent
    key_ID: str
    master_SAE_ID: str
    slave_SAE_IDs: tuple[str, ...]
    size_bits: int
    link_id: str | None
    route: tuple[str, ...] | None
    time_s: float
    """Wall-clock seconds since the Unix epoch."""
    stream: str | None = None
    """The ETSI 004 key stream the key went to (``Key_stream_ID``; written only when there is one,
    so records of ETSI 014 keys read as before)."""

    def body(self) -> dict[str, Any]:
        """The record's fields as written (without ``seq``, ``prev`` and ``hash``)."""
        when = datetime.fromtimestamp(self.time_s, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        body = {"kme": self.kme, "event": str(self.event), "key_ID": self.key_ID,
                "master_SAE_ID": self.master_SAE_ID, "slave_SAE_IDs": list(self.slave_SAE_IDs),
                "size_bits": self.size_bits, "link_id": self.link_id,
                "route": None if self.route is None else list(self.route), "time": when}
        return body if self.stream is None else {**body, "Key_stream_ID": self.stream}


def canonical(value: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record: sorted keys, no spaces, UTF-8.

    Examples:
        >>> canonical({"b": 1, "a": [1, "x"]})
        b'{"a":[1,"x"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def chain_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the record's ``prev`` and its canonical JSON without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(str(record.get("prev")).encode() + canonical(body)).hexdigest()


def audit_path(kme_id: str, config_path: Path | None, store_url: str) -> Path | None:
    """Where a KME keeps its audit log: ``audit/NODE.jsonl`` beside its configuration file; without
    one, beside its SQLite store file; None for a KME with neither (an in-memory store: no log)."""
    if config_path is not None:
        return Path(config_path).parent / "audit" / f"{kme_id}.jsonl"
    db = store_url.removeprefix("sqlite:///") if store_url.startswith("sqlite:///") else ""
    if db and db != ":memory:":
        return Path(db).parent / "audit" / f"{kme_id}.jsonl"
    return None


class AuditLog:
    """The append-only writer of one audit log; safe to call from several threads.

    Args:
        path: the file (created with its directory if missing; an existing chain is continued).

    Raises:
        AuditError: if the file cannot be opened, or holds no intact record to continue from.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.seq, self.head = self._resume()
            self._file = open(self.path, "ab")  # noqa: SIM115  (held open for the node's life)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot open the audit log: {exc.strerror}") from None

    def _resume(self) -> tuple[int, str]:
        """(next seq, last hash) from the file's last intact record; a torn last line is ended, so
        that new records start on a line of their own (verify still reports the torn one)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
            if tail and len(tail) < size:
                tail = tail.split(b"\n", 1)[-1]
            if size > _TAIL_BYTES and not _last_record(tail):
                f.seek(0)
                tail = f.read()
        if not tail.endswith(b"\n"):
            log.warning("%s: the last line is torn (a crash while writing?); continuing after it", self.path)
            with open(self.path, "ab") as f:
                f.write(b"\n")
        last = _last_record(tail)
        if last is None:
            raise AuditError(f"{self.path}: no intact audit record to continue the chain from")
        return int(last["seq"]) + 1, str(last["hash"])

    def append(self, records: Sequence[AuditRecord]) -> int:
        """Chain and write ``records`` as one batch (written, flushed, fsync'ed); returns how many.

        Raises:
            AuditError: if the file cannot be written.
        """
        if not records:
            return 0
        with self._lock:
            seq, head, lines = self.seq, self.head, []
            for record in records:
                row = {"seq": seq, "prev": head, **record.body()}
                row["hash"] = head = chain_hash(row)
                lines.append(canonical(row) + b"\n")
                seq += 1
            try:
                self._file.write(b"".join(lines))
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise AuditError(f"{self.path}: cannot write the audit log: {exc.strerror}") from None
            self.seq, self.head = seq, head
        return len(records)

    def position(self) -> tuple[int, str]:
        """(records so far, the last one's hash), read together."""
        with self._lock:
            return self.seq, self.head

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


def _last_record(data: bytes) -> dict[str, Any] | None:
    """The last line of ``data`` that is an intact record (its hash checks), or None."""
    for line in reversed(data.splitlines()):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            row = json.loads(line)
            if isinstance(row, dict) and isinstance(row.get("seq"), int) and row.get("hash") == chain_hash(row):
                return row
    return None


# -- the hooks' side: what the KME records -------------------------------------------------------------


class KeySupplyAudit:
    """The records of one KME's key supply, written to its :class:`AuditLog`.

    Args:
        log: the chain.
        kme_id: this KME.
        store: its key store (read for the link and size of a key a slave gets).
        clock: wall-clock seconds.
    """

    def __init__(self, log: AuditLog, kme_id: str, store: KeyStore, clock: Callable[[], float]) -> None:
        self.log, self.kme_id, self.store, self.clock = log, kme_id, store, clock

    def _records(self, event: AuditEvent, key_ids: Iterable[str], *, master: str, slaves: Sequence[str],
                 size_bits: int | Mapping[str, int], link_id: str | Mapping[str, str] | None,
                 route: Sequence[str] | None, stream: str | None = None) -> list[AuditRecord]:
        now = self.clock()
        return [AuditRecord(kme=self.kme_id, event=event, key_ID=k, master_SAE_ID=master,
                            slave_SAE_IDs=tuple(slaves), time_s=now, stream=stream,
                            size_bits=size_bits if isinstance(size_bits, int) else size_bits.get(k, 0),
                            link_id=link_id if link_id is None or isinstance(link_id, str) else link_id.get(k),
                            route=None if route is None else tuple(route)) for k in key_ids]

    def enc_keys(self, key_ids: Sequence[str], *, master: str, slaves: Sequence[str], size_bits: int,
                 route: Sequence[str], link_id: str | None = None, stream: str | None = None) -> int:
        """Keys handed to a master (for the ETSI 004 key ``stream``, if any); ``link_id`` is looked
        up in the store when not given (a direct key).

        Raises:
            AuditError: if the log cannot be written.
        """
        return self.log.append(self.enc_records(key_ids, master=master, slaves=slaves, size_bits=size_bits,
                                                route=route, link_id=link_id, stream=stream))

    def enc_records(self, key_ids: Sequence[str], *, master: str, slaves: Sequence[str], size_bits: int,
                    route: Sequence[str], link_id: str | None = None, stream: str | None = None) -> list[AuditRecord]:
        """The records of :meth:`enc_keys`, not yet written (to write several requests' in one batch)."""
        links: str | Mapping[str, str] | None = link_id
        if links is None:
            links = {k: link for k, (link, _) in self._lookup(key_ids).items()}
        return self._records(AuditEvent.ENC_KEYS, key_ids, master=master, slaves=slaves, size_bits=size_bits,
                             link_id=links, route=route, stream=stream)

    def dec_keys(self, key_ids: Sequence[str], *, slave: str, master: str, stream: str | None = None) -> int:
        """Keys handed to a slave (their link and size come from the store).

        Raises:
            AuditError: if the log cannot be written.
        """
        found = self._lookup(key_ids)
        return self.log.append(self._records(
            AuditEvent.DEC_KEYS, key_ids, master=master, slaves=[slave], route=None,
            size_bits={k: size for k, (_, size) in found.items()}, link_id={k: link for k, (link, _) in found.items()},
            stream=stream))

    def relay_stored(self, body: Mapping[str, Any]) -> int:
        """The keys of a relay message stored here, its last node (``body``: the message, whose
        ``c`` fields are never read).

        Raises:
            AuditError: if the log cannot be written.
        """
        route, link_id = list(body["route"]), str(body["link_id"])
        records = [r for group in body["groups"] for r in self._records(
            AuditEvent.RELAY_STORED, [str(e["key_ID"]) for e in group["keys"]], master=str(group["master"]),
            slaves=[str(s) for s in group["slaves"]], size_bits=int(group["size"]), link_id=link_id, route=route)]
        return self.log.append(records)

    def _lookup(self, key_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """key_ID -> (link_id, size_bits) as the store has them."""
        out: dict[str, tuple[str, int]] = {}
        with self.store.reading() as conn:
            for start in range(0, len(key_ids), 500):
                query = sa.select(keys.c.key_ID, keys.c.link_id, keys.c.size_bits).where(
                    keys.c.key_ID.in_(list(key_ids[start:start + 500])))
                out |= {r.key_ID: (r.link_id, int(r.size_bits or 0)) for r in conn.execute(query)}
        return out

    def close(self) -> None:
        """Close the log."""
        self.log.close()


# -- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify`: ``records`` intact before the first bad line (all of them when
    ``bad_line`` is None), else the first bad line (1-based) and why."""

    records: int
    bad_line: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the whole chain is intact."""
        return self.bad_line is None


def _lines(path: Path) -> list[bytes]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise AuditError(f"{path}: no such audit log") from None
    except IsADirectoryError:
        raise AuditError(f"{path}: a directory, not an audit log") from None
    except OSError as exc:
        raise AuditError(f"{path}: cannot read: {exc.strerror}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        lines[-1] += b"\0"  # no final newline: a torn last line, whatever it parses to
    return lines


def _parse(line: bytes) -> dict[str, Any] | str:
    """A record, or why the line is not one."""
    if line.endswith(b"\0"):
        return "torn: the last line has no end (truncated while or after writing)"
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return "not a JSON record (corrupted or truncated)"
    if not isinstance(row, dict):
        return "not a JSON object"
    missing, extra = FIELDS - set(row), set(row) - FIELDS - OPTIONAL_FIELDS
    if missing or extra:
        return (f"missing field(s) {', '.join(sorted(missing))}" if missing else
                f"unexpected field(s) {', '.join(sorted(extra))}")
    if "Key_stream_ID" in row and not (isinstance(row["Key_stream_ID"], str) and _UUID.fullmatch(row["Key_stream_ID"])):
        return "Key_stream_ID is not a UUID"
    if not isinstance(row["seq"], int) or isinstance(row["seq"], bool):
        return "seq is not an integer"
    return row


def verify(path: Path) -> Verdict:
    """Check an audit log's hash chain; the first bad record is named with the reason.

    Raises:
        AuditError: if the file cannot be read.
    """
    rows = [_parse(line) for line in _lines(path)]
    later = {row["seq"]: i for i, row in reversed(list(enumerate(rows))) if isinstance(row, dict)}
    head = GENESIS
    for i, row in enumerate(rows):
        problem = row if isinstance(row, str) else _check(row, i, head, later)
        if problem:
            return Verdict(i, i + 1, f"record {i + 1} (line {i + 1}): {problem}")
        head = row["hash"] if isinstance(row, dict) else head
    return Verdict(len(rows))


def _check(row: dict[str, Any], i: int, head: str, later: Mapping[int, int]) -> str:
    """Why record ``i`` breaks the chain after ``head``, or ''."""
    seq = row["seq"]
    if seq != i:
        if later.get(i, -1) > i:
            return f"out of order: it has seq {seq}, and seq {i} comes later, at line {later[i] + 1}"
        if seq > i:
            return f"record(s) missing before it: it has seq {seq}, seq {i} was expected"
        return f"out of order or repeated: it has seq {seq}, seq {i} was expected"
    if row["hash"] != chain_hash(row):
        return "altered: its hash does not match its content"
    if row["prev"] != head:
        before = "the genesis value" if i == 0 else f"record {i}"
        return f"does not link to {before}: a record before it was altered (and rehashed), removed or replaced"
    return ""


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of an intact audit log.

    Raises:
        AuditError: if the file cannot be read or its chain is broken (naming the first bad record).
    """
    verdict = verify(path)
    if not verdict.ok:
        raise AuditError(f"{path}: chain broken at {verdict.reason} (see qnet audit verify)")
    return [json.loads(line) for line in _lines(path)]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every line of a log that parses as a record, chained or not (none for a missing file)."""
    try:
        lines = _lines(path)
    except AuditError:
        return []
    return [row for row in map(_parse, lines) if isinstance(row, dict)]


def audit_files(path: Path) -> list[Path]:
    """The audit logs at ``path``: the file itself, or the ``*.jsonl`` in a directory or in its
    ``audit/`` subdirectory (a deployment directory).

    Raises:
        AuditError: if there is none.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise AuditError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise AuditError(f"{path}: not a file or directory")
    found = sorted(path.glob("*.jsonl")) or sorted((path / "audit").glob("*.jsonl"))
    if not found:
        raise AuditError(f"{path}: no audit logs (*.jsonl) here or in {path / 'audit'}")
    return found


# -- accounting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Keys and their bits."""

    keys: int = 0
    bits: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.keys + other.keys, self.bits + other.bits)


@dataclass(frozen=True)
class Accounting:
    """Key consumption: per application (master SAE, its slaves) and per (KME, link), each by event
    (``enc_keys``, ``dec_keys``, ``relay_stored``), from the audit records; and per (KME, link) by use
    (bits), from the stores when given (:func:`store_usage`)."""

    applications: dict[tuple[str, tuple[str, ...]], dict[str, Usage]] = field(default_factory=dict)
    links: dict[tuple[str, str], dict[str, Usage]] = field(default_factory=dict)
    store: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (lists of rows, sorted)."""
        def usage(by: Mapping[str, Usage]) -> dict[str, Any]:
            return {event: {"keys": u.keys, "bits": u.bits} for event, u in sorted(by.items())}

        return {
            "applications": [{"master_SAE_ID": m, "slave_SAE_IDs": list(s), **usage(by)}
                             for (m, s), by in sorted(self.applications.items())],
            "links": [{"kme": kme, "link_id": link, **usage(by)} for (kme, link), by in sorted(self.links.items())],
            "store": [{"kme": kme, "link_id": link, "bits": dict(sorted(by.items()))}
                      for (kme, link), by in sorted(self.store.items())],
        }


def accounting(records: Iterable[Mapping[str, Any]],
               store: Mapping[tuple[str, str], Mapping[str, int]] | None = None) -> Accounting:
    """Key bits per application and per link from audit records (and the stores' own count).

    Args:
        records: audit records (of one KME or several).
        store: (KME, link_id) -> use -> bits, from :func:`store_usage`.

    Examples:
        >>> rec = {"kme": "A", "event": "enc_keys", "master_SAE_ID": "S1", "slave_SAE_IDs": ["S2"],
        ...        "size_bits": 256, "link_id": "A-B"}
        >>> acc = accounting([rec, rec])
        >>> acc.applications[("S1", ("S2",))]["enc_keys"], acc.links[("A", "A-B")]["enc_keys"]
        (Usage(keys=2, bits=512), Usage(keys=2, bits=512))
    """
    apps: defaultdict[tuple[str, tuple[str, ...]], defaultdict[str, Usage]] = defaultdict(lambda: defaultdict(Usage))
    links: defaultdict[tuple[str, str], defaultdict[str, Usage]] = defaultdict(lambda: defaultdict(Usage))
    for rec in records:
        one, event = Usage(1, int(rec.get("size_bits") or 0)), str(rec["event"])
        apps[(str(rec["master_SAE_ID"]), tuple(rec["slave_SAE_IDs"]))][event] += one
        links[(str(rec["kme"]), str(rec.get("link_id") or "?"))][event] += one
    return Accounting({k: dict(v) for k, v in apps.items()}, {k: dict(v) for k, v in links.items()},
                      {k: dict(v) for k, v in (store or {}).items()})


_USE = sa.case(
    *[(keys.c.spent_as == use.value, use.value) for use in (SpentAs.ENC_KEYS, SpentAs.DEC_KEYS, SpentAs.RELAY,
                                                          SpentAs.EXPIRED)],
    else_="other",
)
"""A spent unit's use as the report names it (discarded ones are ``other``), from ``spent_as``."""


def store_usage(store: KeyStore, unit_bits: int) -> dict[tuple[str, str], dict[str, int]]:
    """Bits each link of a store has spent, by use: ``enc_keys`` (to masters), ``dec_keys`` (to
    slaves), ``relay`` (relay hops), ``expired``, ``other`` (discarded); relayed keys stored here for
    slaves (``relay:...``) count as a link of their own.

    Args:
        store: the key store (only read).
        unit_bits: bits per unit (the KME's ``unit_bits``).

    Raises:
        ValueError: if ``unit_bits`` is not positive.
    """
    if unit_bits <= 0:
        raise ValueError(f"unit_bits must be positive, got {unit_bits}")
    out: defaultdict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    with store.reading() as conn:
        rows = conn.execute(sa.select(keys.c.link_id, _USE.label("use"), sa.func.count(), sa.func.sum(keys.c.size_bits))
                            .where(keys.c.state == SPENT).group_by(keys.c.link_id, _USE))
        for link_id, use, units, sized in rows:
            relayed = str(link_id).startswith("relay:")  # one row per relayed key, of its own size
            out[(store.kme_id, str(link_id))][str(use)] = int(sized or 0) if relayed else int(units) * unit_bits
    return dict(out)
