"""Engines for the embedded backend: one code path for SQLite and PostgreSQL.

SQLite (the default, a file): WAL so readers never wait for the writer, a
busy timeout so a writer waits for another instead of failing, and
``BEGIN IMMEDIATE`` for writers so that several processes sharing the file
take the write lock up front (a deferred transaction that upgrades to a
writer can fail with "database is locked" without waiting). The stdlib
driver's own transaction handling is switched off so these BEGINs (issued by
Store._transaction, ``begin_statement``) are ours.

PostgreSQL: plain transactions; writers lock the rows they depend on
(``SELECT ... FOR UPDATE``) and the unique constraints are the last word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

BUSY_TIMEOUT_S = 30.0


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(db_url: str) -> Engine:
    url = make_url(db_url)
    common: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **common)

    database = url.database or ""
    memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if memory:
        # One connection shared by every thread; the backend serialises use.
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            **common,
        )
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=8,
            max_overflow=16,
            **common,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: consistent after a crash, may lose the last commits
            # on power loss; no fsync per commit keeps port creation fast.
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return engine


def begin_statement(write: bool) -> str:
    """SQLite's BEGIN for a transaction, issued by the caller on a fresh
    connection (Store._transaction). Not from a connection "begin" event: any
    connection event makes SQLAlchemy dispatch events around every statement
    (about a sixth of the agent's CPU per ADD/DEL pair under load, measured)."""
    return "BEGIN IMMEDIATE" if write else "BEGIN DEFERRED"


def is_memory_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and isinstance(engine.pool, StaticPool)
