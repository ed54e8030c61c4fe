"""Accounting reads a typed column (``spent_as``), not free-text notes; a store written before the
column existed gets it on open, filled in from its notes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from qnet.keys.store import KeyStore, SpentAs, keys_table
from qnet.management.metrics import spent_units


def test_an_old_store_gets_the_column_filled_in_from_its_notes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    KeyStore(f"sqlite:///{path}", "A").close()
    with sqlite3.connect(path) as db:  # the schema as it was: no spent_as column
        db.execute("ALTER TABLE keys DROP COLUMN spent_as")
        for i, note in enumerate(["delivered to master SA", "relay k hop 1", "discarded: the peer never received it",
                                  "expired (key lifetime)", "delivered to slave SB"]):
            db.execute("INSERT INTO keys (key_ID, link_id, seq, owner, state, created_s, expires_s, note) "
                       "VALUES (?, 'L', ?, 'A', 'spent', 0, 1, ?)", (f"00000000-0000-4000-8000-{i:012d}", i, note))
    store = KeyStore(f"sqlite:///{path}", "A")
    with store.engine.connect() as conn:
        uses = [r[0] for r in conn.execute(sa.select(keys_table.c.spent_as).order_by(keys_table.c.seq))]
        assert uses == ["enc_keys", "relay", "discarded", "expired", "dec_keys"]
        assert spent_units(conn) == {"L": (2, 1, 1)}


def test_spending_records_the_use(tmp_path: Path) -> None:
    """A unit handed to a master says so in its column, whatever its note says."""
    store = KeyStore(f"sqlite:///{tmp_path / 'a.db'}", "A")
    store.add_units("L", ("A", "B"), [("00000000-0000-4000-8000-000000000000", bytes(32))], 0.0)
    with store.transaction() as conn:
        store.spend(conn, ["00000000-0000-4000-8000-000000000000"], "anything at all", SpentAs.ENC_KEYS)
    with store.engine.connect() as conn:
        assert spent_units(conn) == {"L": (1, 0, 0)}
