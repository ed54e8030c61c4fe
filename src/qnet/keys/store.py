"""The transactional key store of one key manager (KME), on SQLAlchemy Core.

SQLite (a WAL file) by default, PostgreSQL by URL; every state change is one transaction, so a crash
(``kill -9``) or two concurrent requests can neither lose nor double a key.

A key arrives from the link's :class:`~qnet.keys.source.KeySource` as one *unit* (``key_ID``,
bytes), in the same order at both ends. Each unit has an owner, the end that may hand it to a master
SAE (``enc_keys``); ownership starts as a function of the key_ID alone, so the ends agree on it
whatever order their feeds run in, and an end with more than it needs hands units over to the other
(:meth:`KeyStore.cede`), so a one-way demand gets the whole link. A unit moves through these states:

``new``        received here; the peer has not yet said it holds the same key_ID
``available``  confirmed by the peer (key synchronisation); the owner may serve it
``assigned``   at the slave's KME: reserved for the slave SAEs a master named; erased after the last
``spent``      handed out (or expired, or discarded); its material is gone, the row stays so that a
               second request for the key_ID is answered "already delivered", not "unknown"

A delivered key of ``size`` bits is made of ``ceil(size / unit_bits)`` consecutive units; its key_ID
is the first unit's, and the others carry it in ``group_id``. Key material never appears in reprs
or logs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from qnet.errors import InvalidRequestError, UnavailableError

__all__ = [
    "NOT_FOR_SAE",
    "NOT_YET_ASSIGNED",
    "DeliveredKey",
    "InsufficientKeyError",
    "KeyStore",
    "MalformedMessageError",
    "SpentAs",
    "StoreError",
    "owner_of",
]

NEW, AVAILABLE, ASSIGNED, SPENT = "new", "available", "assigned", "spent"


class SpentAs(StrEnum):
    """What a spent unit was used for (the ``spent_as`` column: accounting reads it, not the note)."""

    ENC_KEYS = "enc_keys"
    """Handed to a master SAE."""
    DEC_KEYS = "dec_keys"
    """Handed to a slave SAE (after the last one)."""
    RELAY = "relay"
    """Spent on a hop of a key relay (also when the relay failed further on)."""
    DISCARDED = "discarded"
    """Dropped by key synchronisation: one end lacked it."""
    EXPIRED = "expired"
    """Past its lifetime."""


_BACKFILL = {SpentAs.ENC_KEYS: "delivered to master %", SpentAs.DEC_KEYS: "delivered to slave %",
             SpentAs.RELAY: "relay %", SpentAs.DISCARDED: "discarded%", SpentAs.EXPIRED: "expired%"}
"""How a store written before ``spent_as`` existed is read: from its free-text notes, once."""
UNKNOWN, NOT_YET_ASSIGNED = "unknown key_ID", "not yet assigned by the master's KME"
NOT_FOR_SAE = "not a key for this SAE"
"""The reason for a key_ID whose key was given for other slave SAEs (ETSI 014 answers 401)."""

metadata = sa.MetaData()
keys_table = sa.Table(
    "keys", metadata,
    sa.Column("key_ID", sa.String(36), primary_key=True),
    sa.Column("link_id", sa.String(200), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("material", sa.LargeBinary, nullable=True),
    sa.Column("group_id", sa.String(36), nullable=True),
    sa.Column("part", sa.Integer, nullable=True),
    sa.Column("size_bits", sa.Integer, nullable=True),
    sa.Column("master_sae", sa.String(200), nullable=True),
    sa.Column("slaves", sa.Text, nullable=True),  # JSON list: the slave SAEs the master named
    sa.Column("pending", sa.Text, nullable=True),  # JSON list: slave SAEs still to receive the key
    sa.Column("created_s", sa.Float, nullable=False),
    sa.Column("expires_s", sa.Float, nullable=False),
    sa.Column("note", sa.String(200), nullable=True),
    sa.Column("spent_as", sa.String(16), nullable=True),  # a SpentAs value: what a spent unit was used for
    sa.Index("ix_keys_serve", "link_id", "owner", "state", "seq"),
    sa.Index("ix_keys_link_seq", "link_id", "seq"),  # a link's newest unit (add_units, produced): no scan
    sa.Index("ix_keys_group", "group_id"),
    sa.Index("ix_keys_expiry", "expires_s"),
)
outbox_table = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("peer", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_s", sa.Float, nullable=False),
    sqlite_autoincrement=True,  # never reuse an id: a late "done" must not delete a newer message
)
nonces_table = sa.Table(
    "nonces", metadata,
    sa.Column("sender", sa.String(200), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_s", sa.Float, nullable=False),
)
meta_table = sa.Table(
    "meta", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


_IDS: sa.BindParameter[list[str]] = sa.bindparam("ids", expanding=True)
"""A list parameter: one compiled statement for any number of ids (``in_([...])`` builds a bound
parameter per element, which costs more than the query at 128 keys)."""


_UNIT_COLUMNS = '"key_ID", link_id, seq, owner, state, material, created_s, expires_s'  # quoted: PostgreSQL folds case


def _mark(conn: Connection) -> str:
    """The driver's positional parameter marker for raw SQL (sqlite3: ``?``; psycopg: ``%s``)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _insert_units(conn: Connection) -> str:
    """Raw SQL inserting one unit (the DB-API's executemany is 10x cheaper than SQLAlchemy's)."""
    return f"INSERT INTO keys ({_UNIT_COLUMNS}) VALUES ({', '.join([_mark(conn)] * 8)})"


class StoreError(InvalidRequestError):
    """A request the store refuses; nothing was changed. ``details`` says which key and why."""


class MalformedMessageError(StoreError):
    """A KM-to-KM message (signed by a peer) that is not a message of the protocol: the sender's
    fault (400), never a reason to route around this node."""


class InsufficientKeyError(UnavailableError, StoreError):
    """Fewer units are servable than a request needs (ETSI 014: 503), named in the context.

    Attributes:
        needed_units: the units the request needs.
        available_units: the units there are.
    """

    def __init__(self, message: str, needed_units: int, available_units: int,
                 details: Sequence[Mapping[str, Any]] = ()) -> None:
        counts = {"available_units": str(available_units), "needed_units": str(needed_units)}
        super().__init__(message, details or [counts])
        self.needed_units, self.available_units = needed_units, available_units


def owner_of(key_id: str, ends: tuple[str, str]) -> str:
    """Which end of a link may serve a unit: a function of the key_ID only (its last hex digit's
    parity), so both ends agree without talking, and each owns about half of the units."""
    return ends[int(key_id[-1], 16) & 1]


class _JSONLists:
    """JSON lists of SAE_IDs, parsed once per distinct text (a request's keys share them)."""

    def __init__(self) -> None:
        self._seen: dict[str | None, list[str]] = {}

    def __call__(self, text: str | None) -> list[str]:
        if text not in self._seen:
            self._seen[text] = json.loads(text) if text else []
        return self._seen[text]


@dataclass(frozen=True)
class DeliveredKey:
    """A key handed to an SAE."""

    key_ID: str
    key: bytes = field(repr=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
    dbapi_conn.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks


def _sqlite_read(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")  # deferred: a snapshot of the WAL, no lock a writer waits for


def read_engine(url: str) -> Engine:
    """A second engine on a SQLite store for reads only (counts, meta, outbox): their transactions
    begin deferred, so they never queue behind a writer (a feeder's insert of thousands of units)
    nor hold one up, as ``BEGIN IMMEDIATE`` on the write engine would. The tables must exist."""
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", _sqlite_read)
    return engine


def make_engine(url: str, *, manual_checkpoints: bool = False) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``), tables created.
    With ``manual_checkpoints`` SQLite never checkpoints its WAL on a commit: the owner calls
    :meth:`KeyStore.checkpoint` from a background thread, off the requests' path."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        if manual_checkpoints:
            sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA wal_autocheckpoint=0"))
        sa.event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = sa.create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)
    metadata.create_all(engine)
    for index in keys_table.indexes:  # a store made before an index was added gets it
        index.create(engine, checkfirst=True)
    _add_spent_as(engine)
    return engine


def _add_spent_as(engine: Engine) -> None:
    """Give a store made before the ``spent_as`` column the column, filled in from the notes."""
    if "spent_as" in {c["name"] for c in sa.inspect(engine).get_columns("keys")}:
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE keys ADD COLUMN spent_as VARCHAR(16)")
        for use, pattern in _BACKFILL.items():
            conn.execute(keys_table.update().where(keys_table.c.state == SPENT, keys_table.c.note.like(pattern))
                         .values(spent_as=use.value))


class KeyStore:
    """The key store of KME ``kme_id``.

    Args:
        url: database URL.
        kme_id: this KME's ID (the owner name of the units it may serve).
        lifetime_s: how long a unit may wait for delivery before it is erased (key lifetime).
    """

    def __init__(self, url: str, kme_id: str, *, lifetime_s: float = 86400.0,
                 manual_checkpoints: bool = False) -> None:
        self.url, self.kme_id, self.lifetime_s = url, kme_id, lifetime_s
        self.engine = make_engine(url, manual_checkpoints=manual_checkpoints)
        database = sa.engine.make_url(url).database
        on_file = url.startswith("sqlite") and database not in (None, "", ":memory:")
        self._reads = read_engine(url) if on_file else self.engine  # an in-memory one is this engine's only
        # SQLite has one writer; threads of this process queue here instead of in SQLite's busy
        # handler, which sleeps in steps of up to 100 ms. Other processes still meet busy_timeout.
        self._writer = threading.Lock() if url.startswith("sqlite") else contextlib.nullcontext()
        self.last_outbox_id = 0
        """The id of the newest outbox message this process queued."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (committed on success, rolled back on any error)."""
        with self._writer, self.engine.begin() as conn:
            yield conn

    def reading(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection for reads only (:func:`read_engine` on SQLite: never queues behind a writer)."""
        return self._reads.connect()

    def __repr__(self) -> str:
        return f"KeyStore({self.kme_id!r}, {self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()
        self._reads.dispose()

    # -- units arriving from the link ------------------------------------------------------------

    def add_units(self, link_id: str, ends: tuple[str, str], units: Iterable[tuple[str, bytes]], now_s: float, *,
                  confirmed: bool = False) -> int:
        """Store units from the link's key source in order; key_IDs already known are skipped (a
        restarted source replays its stream). ``confirmed``: the source has already delivered them to
        the peer's store (a device pair that writes both ends: ``qnet.servers.feeder``), so they are
        ``available`` at once. Returns how many were new."""
        units = list(units)
        if not units:
            return 0
        with self.transaction() as conn:
            known = self._known(conn, [k for k, _ in units])
            seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(keys_table.c.seq), -1)).where(
                keys_table.c.link_id == link_id)).scalar_one()
            expires = now_s + self.lifetime_s
            state = AVAILABLE if confirmed else NEW
            rows = [(key_id, link_id, seq + i, owner_of(key_id, ends), state, material, now_s, expires)
                    for i, (key_id, material) in enumerate(((k, m) for k, m in units if k not in known), start=1)]
            if rows:  # the DB-API's executemany: SQLAlchemy's per-row parameter processing cost 10x more
                conn.exec_driver_sql(_insert_units(conn), rows)
        return len(rows)

    @staticmethod
    def _known(conn: Connection, key_ids: Sequence[str]) -> set[str]:
        """Which of ``key_ids`` the store holds already (raw SQL in slices of 500: SQLAlchemy's
        expanding parameters cost more than the query for a block's thousands of units)."""
        mark = _mark(conn)
        known: set[str] = set()
        for start in range(0, len(key_ids), 500):
            part = list(key_ids[start:start + 500])
            sql = f'SELECT "key_ID" FROM keys WHERE "key_ID" IN ({", ".join([mark] * len(part))})'
            known.update(r[0] for r in conn.exec_driver_sql(sql, tuple(part)))
        return known

    # -- key synchronisation (both ends hold the same key_IDs in the same order) -----------------

    def unconfirmed(self, link_id: str, limit: int = 20000) -> list[str]:
        """This end's own units that the peer has not yet confirmed, in link order."""
        with self.reading() as conn:
            return [r[0] for r in conn.execute(
                sa.select(keys_table.c.key_ID).where(keys_table.c.link_id == link_id,
                                                     keys_table.c.owner == self.kme_id,
                                                     keys_table.c.state == NEW)
                .order_by(keys_table.c.seq).limit(limit))]

    def check_offer(self, link_id: str, offered: Sequence[str], grace_s: float, now_s: float) -> dict[str, Any]:
        """The peer's side of synchronisation: which of the owner's offered key_IDs this end holds
        (they become ``available`` here too), whether they are in the same order here, and which of
        the owner's units this end holds that the owner skipped (never offered, older than
        ``grace_s`` and before the newest one offered): those can never be served and are discarded
        here. Returns the answer for the owner."""
        if not offered:  # a probe: nothing to confirm, and no write transaction to queue for
            return {"held": [], "in_order": True, "discarded": []}
        with self.transaction() as conn:
            rows = conn.execute(sa.select(keys_table.c.key_ID, keys_table.c.seq).where(
                keys_table.c.link_id == link_id, keys_table.c.key_ID.in_(_IDS)), {"ids": list(offered)}).all()
            seq_of = {k: s for k, s in rows}
            held = [k for k in offered if k in seq_of]
            in_order = all(seq_of[a] < seq_of[b] for a, b in itertools.pairwise(held))
            skipped: list[str] = []
            if held:  # confirmed here too, so that a later sync never takes them for skipped
                conn.execute(keys_table.update().where(keys_table.c.key_ID.in_(_IDS), keys_table.c.state == NEW)
                             .values(state=AVAILABLE), {"ids": held})
                owner = conn.execute(sa.select(keys_table.c.owner).where(
                    keys_table.c.key_ID == held[0])).scalar_one()
                skipped = [r[0] for r in conn.execute(sa.select(keys_table.c.key_ID).where(
                    keys_table.c.link_id == link_id, keys_table.c.owner == owner, keys_table.c.state == NEW,
                    keys_table.c.seq < max(seq_of.values()), keys_table.c.created_s < now_s - grace_s,
                    keys_table.c.key_ID.not_in(list(offered))))]
                self.spend(conn, skipped, "discarded: the owner never offered it (sync)", SpentAs.DISCARDED)
        return {"held": held, "in_order": in_order, "discarded": skipped}

    def apply_answer(self, link_id: str, offered: Sequence[str], held: Sequence[str], grace_s: float,
                     now_s: float) -> list[str]:
        """The owner's side: confirm what the peer holds; discard what it lacks once older than
        ``grace_s`` and older than a unit it holds (it will never come). Returns the discarded IDs."""
        held_set = set(held)
        with self.transaction() as conn:
            if held:
                conn.execute(keys_table.update().where(keys_table.c.key_ID.in_(_IDS), keys_table.c.state == NEW)
                             .values(state=AVAILABLE), {"ids": list(held)})
            newest = max((i for i, k in enumerate(offered) if k in held_set), default=-1)
            lacking = [k for k in offered[:newest] if k not in held_set]
            stale = [r[0] for r in conn.execute(sa.select(keys_table.c.key_ID).where(
                keys_table.c.key_ID.in_(lacking), keys_table.c.created_s < now_s - grace_s))] if lacking else []
            self.spend(conn, stale, "discarded: the peer never received it (sync)", SpentAs.DISCARDED)
        return stale

    # -- serving ----------------------------------------------------------------------------------

    def stock(self, link_id: str, owner: str | None = None) -> int:
        """Units that ``owner`` (this KME by default) can serve now."""
        with self.reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(keys_table).where(
                keys_table.c.link_id == link_id, keys_table.c.owner == (owner or self.kme_id),
                keys_table.c.state == AVAILABLE)).scalar_one())

    def owned(self, link_id: str) -> int:
        """Units of a link this end owns and has not spent (``new`` or ``available``): what it will
        be able to serve, the stock it tells its peer."""
        with self.reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(keys_table).where(
                keys_table.c.link_id == link_id, keys_table.c.owner == self.kme_id,
                keys_table.c.state.in_([NEW, AVAILABLE]))).scalar_one())

    def held(self, link_id: str) -> int:
        """Units of a link this end holds for either end to serve (``new`` or ``available``: what a
        feeder caps). Units assigned to a slave SAE are not counted: a slave that never fetches its
        keys must not stop the link."""
        with self.reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(keys_table).where(
                keys_table.c.link_id == link_id, keys_table.c.state.in_([NEW, AVAILABLE]))).scalar_one())

    def take_for_master(self, link_id: str, number: int, size_bits: int, unit_bits: int, *, master_sae: str,
                        slaves: Sequence[str], peer: str, now_s: float,
                        message: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> list[DeliveredKey]:
        """Hand ``number`` keys of ``size_bits`` to a master SAE, in one transaction: the units are
        erased here and an ``assign`` message for the peer (built by ``message`` from the groups) is
        queued in the outbox in the same commit, so the peer learns of every key this end handed out.

        Raises:
            InsufficientKeyError: if fewer units are available; nothing changes.
        """
        per_key = math.ceil(size_bits / unit_bits)
        need = number * per_key
        with self.transaction() as conn:
            rows = self.servable(conn, link_id, need, now_s)
            if len(rows) < need:
                raise InsufficientKeyError(f"not enough key: {number} key(s) of {size_bits} bits need {need} units "
                                           f"of {unit_bits} bits, {len(rows)} available", need, len(rows))
            keys, groups = [], []
            for i in range(number):
                part = rows[i * per_key:(i + 1) * per_key]
                ids = [r[0] for r in part]
                keys.append(DeliveredKey(ids[0], b"".join(r[1] for r in part)[:size_bits // 8]))
                groups.append({"key_ID": ids[0], "units": ids, "size": size_bits})
            self.spend(conn, [r[0] for r in rows], f"delivered to master {master_sae}", SpentAs.ENC_KEYS)
            self._queue(conn, peer, message(groups), now_s)
        return keys

    def _queue(self, conn: Connection, peer: str, body: dict[str, Any], now_s: float) -> None:
        """Within the caller's transaction: queue a message for ``peer`` in the outbox."""
        row = conn.execute(outbox_table.insert().values(peer=peer, created_s=now_s, body=json.dumps(body)))
        inserted = row.inserted_primary_key
        if inserted is None:
            raise StoreError("the outbox did not return the new message's id")
        self.last_outbox_id = int(inserted[0])

    # -- handing units over to the other end ---------------------------------------------------------

    def cede(self, link_id: str, peer: str, count: int, now_s: float,
             message: Callable[[list[str]], dict[str, Any]]) -> int:
        """Hand up to ``count`` of this end's servable units of ``link_id`` (oldest first) to ``peer``,
        in one transaction: they become the peer's here, and a ``cede`` message (built by ``message``
        from their key_IDs) is queued in the outbox in the same commit. This end never serves them
        again; the peer serves them once it has applied the message, so a unit is never servable at
        both ends (a lost message loses the units, never doubles them; the outbox resends it).
        Returns how many units were handed over."""
        with self.transaction() as conn:
            ids = [key_id for key_id, _ in self.servable(conn, link_id, count, now_s)]
            if ids:
                conn.execute(keys_table.update().where(keys_table.c.key_ID.in_(_IDS)).values(owner=peer),
                             {"ids": ids})
                self._queue(conn, peer, message(ids), now_s)
        return len(ids)

    def take_over(self, conn: Connection, sender: str, link_id: str, key_ids: Sequence[str]) -> int:
        """At the receiving end of a ``cede``, inside the caller's transaction: the units ``sender``
        handed over become this end's to serve (those still unspent and the sender's; idempotent for
        a resent message). Returns how many changed owner."""
        done = conn.execute(keys_table.update().where(
            keys_table.c.key_ID.in_(_IDS), keys_table.c.link_id == link_id, keys_table.c.owner == sender,
            keys_table.c.state.in_([NEW, AVAILABLE])).values(owner=self.kme_id), {"ids": list(key_ids)})
        return int(done.rowcount)

    def servable(self, conn: Connection, link_id: str, limit: int, now_s: float) -> list[tuple[str, bytes]]:
        """Within the caller's transaction: up to ``limit`` units of ``link_id`` this end may serve,
        oldest first, as (key_ID, material)."""
        return [(r[0], r[1]) for r in conn.execute(
            sa.select(keys_table.c.key_ID, keys_table.c.material)
            .where(keys_table.c.link_id == link_id, keys_table.c.owner == self.kme_id,
                   keys_table.c.state == AVAILABLE, keys_table.c.expires_s > now_s)
            .order_by(keys_table.c.seq).limit(limit).with_for_update(skip_locked=True))]

    def assign(self, conn: Connection, sender: str, groups: Sequence[dict[str, Any]], master_sae: str,
               slaves: Sequence[str]) -> None:
        """At the slave's KME, inside the caller's transaction: reserve each group's units for the
        slaves. Idempotent for a group already assigned (a resent message).

        Raises:
            StoreError: if a unit is unknown here, not the sender's, or taken otherwise.
        """
        ids = [u for g in groups for u in g["units"]]
        slave_list = json.dumps(sorted(set(slaves)))
        common = {"state": ASSIGNED, "master_sae": master_sae, "slaves": slave_list, "pending": slave_list}
        if self._assign_single_units(conn, sender, groups, ids, common):
            return
        rows = {r.key_ID: r for r in conn.execute(sa.select(
            keys_table.c.key_ID, keys_table.c.owner, keys_table.c.state, keys_table.c.group_id).where(
            keys_table.c.key_ID.in_(_IDS)), {"ids": ids})}
        problems, updates = [], []
        for group in groups:
            for part, unit in enumerate(group["units"]):
                row = rows.get(unit)
                if row is not None and row.group_id == group["key_ID"]:
                    continue  # already assigned to this group: a resent message
                if row is None or row.owner != sender or row.state not in (NEW, AVAILABLE):
                    why = "unknown here" if row is None else f"owner {row.owner}, state {row.state}"
                    problems.append({"key_ID": unit, "reason": why})
                    continue
                updates.append({"b_id": unit, "b_group": group["key_ID"], "b_part": part, "b_size": group["size"]})
        if problems:
            raise StoreError("key synchronisation mismatch: the peer assigned units this KME cannot hold", problems)
        single = [u for u in updates if u["b_id"] == u["b_group"]]
        sizes = {u["b_size"] for u in single}
        if single and len(single) == len(updates) and len(sizes) == 1:  # one unit per key: one statement
            conn.execute(keys_table.update().where(keys_table.c.key_ID.in_(_IDS)).values(
                group_id=keys_table.c.key_ID, part=0, size_bits=sizes.pop(), **common),
                {"ids": [u["b_id"] for u in single]})
        elif updates:
            conn.execute(keys_table.update().where(keys_table.c.key_ID == sa.bindparam("b_id")).values(
                group_id=sa.bindparam("b_group"), part=sa.bindparam("b_part"), size_bits=sa.bindparam("b_size"),
                **common), updates)

    @staticmethod
    def _assign_single_units(conn: Connection, sender: str, groups: Sequence[dict[str, Any]], ids: list[str],
                             common: dict[str, Any]) -> bool:
        """The common case in one statement: every key one unit, all of one size, all free here.
        False (with some rows possibly assigned, which the detailed path then accepts) otherwise."""
        sizes = {g["size"] for g in groups}
        if len(sizes) != 1 or any(g["units"] != [g["key_ID"]] for g in groups):
            return False
        done = conn.execute(keys_table.update().where(
            keys_table.c.key_ID.in_(_IDS), keys_table.c.owner == sender, keys_table.c.state.in_([NEW, AVAILABLE]))
            .values(group_id=keys_table.c.key_ID, part=0, size_bits=sizes.pop(), **common), {"ids": ids})
        return bool(done.rowcount == len(ids))

    def take_for_slave(self, key_ids: Sequence[str], sae_id: str, master_sae: str) -> list[DeliveredKey]:
        """Hand the keys with these key_IDs to slave ``sae_id``, in one transaction; each slave gets a
        key once, and its units are erased after the last slave.

        Raises:
            StoreError: naming each key_ID that is unknown, not for this SAE, or already delivered;
                nothing changes.
        """
        with self.transaction() as conn:
            rows = conn.execute(sa.select(
                keys_table.c.group_id, keys_table.c.part, keys_table.c.key_ID, keys_table.c.material,
                keys_table.c.size_bits, keys_table.c.master_sae, keys_table.c.slaves, keys_table.c.pending,
                keys_table.c.state)
                .where(keys_table.c.group_id.in_(_IDS)).order_by(keys_table.c.part), {"ids": list(key_ids)}).all()
            by_group: dict[str, list[Any]] = {}
            for r in rows:
                by_group.setdefault(r.group_id, []).append(r)
            problems, out, updates = [], [], []
            lists = _JSONLists()
            for key_id in key_ids:
                reason = self._slave_problem(by_group.get(key_id), sae_id, master_sae, lists)
                if reason:
                    problems.append({"key_ID": key_id, "reason": reason})
                    continue
                group = by_group[key_id]
                out.append(DeliveredKey(key_id, b"".join(r.material for r in group)[:group[0].size_bits // 8]))
                updates.append((group, [s for s in lists(group[0].pending) if s != sae_id]))
            self._mark_unassigned(conn, problems)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise StoreError(f"key_ID {problems[0]['key_ID']}: {problems[0]['reason']}{more}", problems)
            done = [r.key_ID for group, pending in updates if not pending for r in group]
            self.spend(conn, done, f"delivered to slave {sae_id}", SpentAs.DEC_KEYS)
            for group, pending in updates:
                if pending:
                    conn.execute(keys_table.update().where(keys_table.c.key_ID.in_([r.key_ID for r in group])).values(
                        pending=json.dumps(pending)))
        return out

    def _mark_unassigned(self, conn: Connection, problems: list[dict[str, str]]) -> None:
        """Tell "unknown" from "not yet assigned" (a unit the peer owns and has not, or not yet, said
        it handed out: the master's KME may still be sending the ``assign`` message) and from "not a
        key for this SAE" (a key this KME handed to a master: its slaves fetch it at their KME)."""
        unknown = {p["key_ID"]: p for p in problems if p["reason"] == UNKNOWN}
        if not unknown:
            return
        for key_id, owner, state, spent_as in conn.execute(sa.select(
                keys_table.c.key_ID, keys_table.c.owner, keys_table.c.state, keys_table.c.spent_as)
                .where(keys_table.c.key_ID.in_(list(unknown)))):
            if owner != self.kme_id and state in (NEW, AVAILABLE):
                unknown[key_id]["reason"] = NOT_YET_ASSIGNED
            elif state == SPENT and spent_as == SpentAs.ENC_KEYS.value:
                unknown[key_id]["reason"] = NOT_FOR_SAE

    @staticmethod
    def _slave_problem(group: list[Any] | None, sae_id: str, master_sae: str, lists: _JSONLists) -> str:
        if not group:
            return UNKNOWN
        head = group[0]
        if sae_id not in lists(head.slaves):
            return NOT_FOR_SAE
        if head.master_sae != master_sae:
            return f"not a key from master SAE {master_sae}"
        if head.state == SPENT or sae_id not in lists(head.pending):
            return "already delivered"
        return ""

    # -- the outbox, replay protection, housekeeping ------------------------------------------------

    def outbox(self, limit: int = 500, before_s: float | None = None) -> list[tuple[int, str, dict[str, Any]]]:
        """Messages waiting to reach a peer, oldest first (only those queued before ``before_s``)."""
        query = sa.select(outbox_table).order_by(outbox_table.c.id).limit(limit)
        if before_s is not None:
            query = query.where(outbox_table.c.created_s < before_s)
        with self.reading() as conn:
            return [(r.id, r.peer, json.loads(r.body)) for r in conn.execute(query)]

    def outbox_done(self, ids: Sequence[int]) -> None:
        """Forget delivered outbox messages."""
        with self.transaction() as conn:
            conn.execute(outbox_table.delete().where(outbox_table.c.id.in_(_IDS)), {"ids": list(ids)})

    def record_nonce(self, conn: Connection, sender: str, nonce: str, expires_s: float) -> bool:
        """Within the caller's transaction: remember a message's nonce; False if seen before (replay)."""
        seen = conn.execute(sa.select(nonces_table.c.nonce).where(
            nonces_table.c.sender == sender, nonces_table.c.nonce == nonce)).first()
        if seen is not None:
            return False
        conn.execute(nonces_table.insert().values(sender=sender, nonce=nonce, expires_s=expires_s))
        return True

    def checkpoint(self) -> None:
        """Copy the SQLite WAL into the database without blocking writers (PASSIVE); a no-op on
        PostgreSQL."""
        if self.url.startswith("sqlite"):
            raw = self.engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
            finally:
                raw.close()

    def expire(self, now_s: float) -> int:
        """Erase units past their lifetime and forget old nonces; returns the units erased."""
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute(sa.select(keys_table.c.key_ID).where(
                keys_table.c.state != SPENT, keys_table.c.expires_s <= now_s))]
            self.spend(conn, ids, "expired (key lifetime)", SpentAs.EXPIRED)
            conn.execute(nonces_table.delete().where(nonces_table.c.expires_s <= now_s))
        return len(ids)

    def counts(self, link_id: str) -> dict[str, int]:
        """Units per (owner, state) on a link, e.g. ``{"A/available": 10}`` (no material)."""
        with self.reading() as conn:
            return {f"{o}/{s}": int(n) for o, s, n in conn.execute(
                sa.select(keys_table.c.owner, keys_table.c.state, sa.func.count())
                .where(keys_table.c.link_id == link_id).group_by(keys_table.c.owner, keys_table.c.state))}

    def produced(self, link_id: str) -> int:
        """Units the link has delivered to this store since it began (spent ones included)."""
        with self.reading() as conn:
            last = conn.execute(sa.select(sa.func.max(keys_table.c.seq))
                                .where(keys_table.c.link_id == link_id)).scalar()
        return 0 if last is None else int(last) + 1

    def set_meta(self, name: str, value: str) -> None:
        """Store ``value`` under ``name``, replacing what was there."""
        with self.transaction() as conn:
            if conn.execute(meta_table.update().where(meta_table.c.name == name).values(value=value)).rowcount == 0:
                conn.execute(meta_table.insert().values(name=name, value=value))

    def meta(self, prefix: str = "") -> dict[str, str]:
        """Every stored setting whose name starts with ``prefix``, in one read."""
        with self.reading() as conn:
            return {str(n): str(v) for n, v in conn.execute(sa.select(meta_table.c.name, meta_table.c.value)
                                                              .where(meta_table.c.name.startswith(prefix)))}

    def get_meta(self, name: str) -> str | None:
        """A stored setting (e.g. a link's epoch)."""
        with self.reading() as conn:
            return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.name == name)).scalar()

    def set_meta_once(self, name: str, value: str) -> str:
        """Store ``value`` under ``name`` unless one is there; returns the stored value."""
        with self.transaction() as conn:
            old = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.name == name)).scalar()
            if old is not None:
                return str(old)
            conn.execute(meta_table.insert().values(name=name, value=value))
        return value

    @staticmethod
    def spend(conn: Connection, ids: Sequence[str], note: str, spent_as: SpentAs) -> None:
        """Within the caller's transaction: mark units spent (``spent_as``, with a note for people)
        and erase their material."""
        for start in range(0, len(ids), 500):
            conn.execute(keys_table.update().where(keys_table.c.key_ID.in_(_IDS)).values(
                state=SPENT, material=None, pending=None, note=note, spent_as=spent_as.value),
                {"ids": list(ids[start:start + 500])})
