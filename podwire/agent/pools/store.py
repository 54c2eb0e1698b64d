"""The pools' durable record: one SQLite file (state_dir/pools.db), apart
from the attachment store, so pools never reshape it.

Two tables:
- ``pools``: each pool's spec (network, project, security groups, kind), so
  a restarted agent refills the pools it had;
- ``entries``: one row per pooled port, with its state:

  ==========  ==========================================================
  creating    the create is about to be (or was) sent; the port, if it
              exists, carries this entry's id in its tags
  ready       in the backend, reset, not handed out
  taken       handed to an ADD; the attachment's ``port.pool`` step holds it
  draining    taken, but deleted instead of reset when given back
  deleting    the delete is about to be (or was) sent
  ==========  ==========================================================

Every transition is written (and committed) before the backend call it
guards, so the sweep finishes or undoes any entry from this file alone.
One connection behind a lock: the pools write a few rows per port.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EntryState = Literal["creating", "ready", "taken", "draining", "deleting"]
STATES: tuple[EntryState, ...] = ("creating", "ready", "taken", "draining", "deleting")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    security_groups TEXT NOT NULL,
    vif_type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    pool_id TEXT NOT NULL,
    port_id TEXT,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    -- the port's security groups as created: what a reset puts back
    groups TEXT,
    -- the port as the backend last answered it (JSON): what a take hands
    -- out without asking the backend again
    port TEXT
);
CREATE INDEX IF NOT EXISTS entries_pool_state ON entries (pool_id, state);
CREATE UNIQUE INDEX IF NOT EXISTS entries_port ON entries (port_id);
"""


@dataclass(frozen=True)
class PoolSpec:
    """What every port of one pool shares: the pool's key."""

    id: str
    network_id: str
    project_id: str
    security_groups: tuple[str, ...]  # empty: the backend's default group
    vif_type: str  # the binding the agent writes ("" when the backend decides)


@dataclass(frozen=True)
class Entry:
    id: str
    pool_id: str
    port_id: str | None
    state: EntryState
    generation: int
    changed_at: float
    groups: tuple[str, ...] | None = None
    port_json: str | None = None


class PoolStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- pools ----------------------------------------------------------------------

    def put_pool(self, spec: PoolSpec) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO pools VALUES (?, ?, ?, ?, ?)",
                (
                    spec.id,
                    spec.network_id,
                    spec.project_id,
                    json.dumps(list(spec.security_groups)),
                    spec.vif_type,
                ),
            )

    def drop_pool(self, pool_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM pools WHERE id = ?", (pool_id,))

    def pools(self) -> list[PoolSpec]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM pools ORDER BY id").fetchall()
        return [PoolSpec(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4]) for r in rows]

    # --- entries --------------------------------------------------------------------

    def add(self, entry_id: str, pool_id: str, generation: int) -> None:
        """A new entry, ``creating``."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO entries VALUES (?, ?, NULL, 'creating', ?, ?, NULL, NULL)",
                (entry_id, pool_id, generation, time.time()),
            )

    def move(
        self,
        entry_id: str,
        to: EntryState,
        *,
        only_from: Iterable[EntryState] | None = None,
        port_id: str | None = None,
        groups: Iterable[str] | None = None,
        port_json: str | None = None,
    ) -> bool:
        """Write the entry's new state (and port, when learned); with
        ``only_from``, only from those states. True if it moved."""
        sql = "UPDATE entries SET state = ?, changed_at = ?"
        args: list[object] = [to, time.time()]
        if port_id is not None:
            sql += ", port_id = ?"
            args.append(port_id)
        if groups is not None:
            sql += ", groups = ?"
            args.append(json.dumps(sorted(groups)))
        if port_json is not None:
            sql += ", port = ?"
            args.append(port_json)
        sql += " WHERE id = ?"
        args.append(entry_id)
        if only_from is not None:
            states = list(only_from)
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += states
        with self._lock:
            return self._conn.execute(sql, args).rowcount == 1

    def take_ready(self, pool_id: str, generation: int) -> Entry | None:
        """The oldest ready entry of the pool, now ``taken`` (one write)."""
        with self._lock:
            row = self._conn.execute(
                "UPDATE entries SET state = 'taken', changed_at = ? WHERE id = ("
                " SELECT id FROM entries WHERE pool_id = ? AND state = 'ready'"
                " AND generation = ? ORDER BY changed_at LIMIT 1) RETURNING *",
                (time.time(), pool_id, generation),
            ).fetchone()
        return _entry(row) if row else None

    def remove(self, entry_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))

    def get(self, entry_id: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def by_port(self, port_id: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM entries WHERE port_id = ?", (port_id,)
            ).fetchone()
        return _entry(row) if row else None

    def entries(
        self, pool_id: str | None = None, states: Iterable[EntryState] | None = None
    ) -> list[Entry]:
        sql, args = "SELECT * FROM entries WHERE 1 = 1", []
        if pool_id is not None:
            sql += " AND pool_id = ?"
            args.append(pool_id)
        if states is not None:
            wanted = list(states)
            sql += f" AND state IN ({', '.join('?' for _ in wanted)})"
            args += wanted
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY changed_at", args).fetchall()
        return [_entry(r) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """(pool id, state) -> entries."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT pool_id, state, COUNT(*) FROM entries GROUP BY pool_id, state"
            ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}


def _entry(row: tuple[object, ...]) -> Entry:
    return Entry(
        id=str(row[0]),
        pool_id=str(row[1]),
        port_id=None if row[2] is None else str(row[2]),
        state=row[3],  # type: ignore[arg-type]
        generation=int(row[4]),  # type: ignore[call-overload]
        changed_at=float(row[5]),  # type: ignore[arg-type]
        groups=None if row[6] is None else tuple(json.loads(str(row[6]))),
        port_json=None if row[7] is None else str(row[7]),
    )
