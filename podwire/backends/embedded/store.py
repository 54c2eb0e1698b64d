"""The embedded backend's database: engine, transactions and scoped lookups.

Every public call is one transaction: it either commits everything or
nothing, so a refused request leaves no half-made row and no allocated
address behind. Writers on SQLite take the database's write lock up front
(BEGIN IMMEDIATE); on PostgreSQL they lock the rows they depend on (the
network, the subnets they allocate from) in a fixed order. The unique
constraints in schema.py are the final guard against duplicates.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, Select, insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from podwire.backends import rules
from podwire.config import DEFAULT_MAC_PREFIX
from podwire.errors import Conflict, Unavailable
from podwire.model import Context

from . import statements as stmt
from .db import begin_statement, is_memory_sqlite, make_engine
from .schema import SCHEMA_VERSION, meta, metadata, networks, subnets, trunks

T = TypeVar("T")

# PostgreSQL's "try again" states: serialization failure, deadlock.
_RETRY_SQLSTATES = {"40001", "40P01"}
_MAX_TRIES = 5


class _Retry(Exception):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The database and its transactions, and the scoped row lookups every
    call starts with; the calls themselves live in the modules beside this one."""

    def __init__(self, db_url: str, *, mac_prefix: str = DEFAULT_MAC_PREFIX) -> None:
        self.db_url = db_url
        self._mac_prefix = mac_prefix
        try:
            self._engine = make_engine(db_url)
        except OSError as exc:
            raise Unavailable(f"cannot prepare the database {db_url}: {exc}") from None
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._postgres = self._engine.dialect.name == "postgresql"
        # An in-memory SQLite database is one connection: one user at a time.
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if is_memory_sqlite(self._engine) else contextlib.nullcontext()
        )
        # SQLite has one writer at a time anyway; threads of this process
        # queue on a lock instead of polling the file lock with the busy
        # handler's growing sleeps. Other processes still meet that handler:
        # an flock queue across processes was tried and measured worse (fair
        # hand-offs between processes cost more throughput than the busy
        # handler's occasional long sleep costs in tail latency).
        self._writers: contextlib.AbstractContextManager[Any] = (
            threading.Lock()
            if self._engine.dialect.name == "sqlite" and not is_memory_sqlite(self._engine)
            else contextlib.nullcontext()
        )
        try:
            self._write(self._create_schema)
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        self._engine.dispose()

    # --- transactions -----------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Connection]:
        writers = self._writers if write else contextlib.nullcontext()
        try:
            with self._serial, writers, self._engine.connect() as conn:
                if self._sqlite:
                    conn.exec_driver_sql(begin_statement(write))
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
        except IntegrityError as exc:
            # Our checks run before every write; a constraint firing means a
            # concurrent writer won a race the checks could not see.
            raise Conflict(f"the change collides with another one: {exc.orig}") from None
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES:
                raise _Retry() from exc
            raise Unavailable(f"database {self._where()} is unavailable: {exc.orig}") from None
        except DBAPIError as exc:
            raise Unavailable(f"database {self._where()} failed: {exc.orig}") from None

    def _where(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def _write(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(_MAX_TRIES):
            try:
                with self._transaction(write=True) as conn:
                    return work(conn)
            except _Retry:
                if attempt == _MAX_TRIES - 1:
                    raise Unavailable(
                        f"database {self._where()} kept aborting the transaction"
                    ) from None
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self._transaction(write=False) as conn:
            return work(conn)

    def _create_schema(self, conn: Connection) -> None:
        if self._postgres:
            # Several processes may start at once on an empty database.
            conn.execute(text("SELECT pg_advisory_xact_lock(7170707)"))
        metadata.create_all(conn)
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        if version is None:
            conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif version in ("1", "2"):
            if version == "1":
                conn.execute(text("ALTER TABLE ports ADD COLUMN tags JSON NOT NULL DEFAULT '[]'"))
            for table in ("networks", "subnets", "ports", "trunks"):
                columns = {c["name"] for c in inspect(conn).get_columns(table)}
                if "revision_number" not in columns:
                    conn.execute(
                        text(
                            f"ALTER TABLE {table}"
                            " ADD COLUMN revision_number INTEGER NOT NULL DEFAULT 0"
                        )
                    )
            conn.execute(
                update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
            )
        elif version != str(SCHEMA_VERSION):
            raise Unavailable(
                f"database {self._where()} has schema version {version};"
                f" this podwire needs {SCHEMA_VERSION}"
            )

    # --- scoping ------------------------------------------------------------------

    @staticmethod
    def _owns(ctx: Context, row: Row[Any]) -> bool:
        return rules.owns(ctx, row.project_id)

    def _lock(self, query: Select[Any], lock: bool) -> Select[Any]:
        return query.with_for_update() if lock and self._postgres else query

    def _network_row(
        self,
        conn: Connection,
        ctx: Context,
        network_id: str,
        *,
        field: str | None = None,
        owner: bool = False,
        lock: bool = False,
    ) -> Row[Any]:
        """The network if the caller may see it (and change it, with ``owner``)."""
        query = stmt.NETWORK_BY_ID_LOCKED if lock and self._postgres else stmt.NETWORK_BY_ID
        row = conn.execute(query, {"b_id": network_id}).first()
        rules.check_network_access(
            ctx,
            network_id,
            row.project_id if row is not None else None,
            row is not None and bool(row.shared),
            found=row is not None,
            owner=owner,
            field=field,
        )
        assert row is not None
        return row

    def _subnet_row(
        self, conn: Connection, ctx: Context, subnet_id: str, *, owner: bool = False
    ) -> Row[Any]:
        row = conn.execute(
            self._lock(select(subnets).where(subnets.c.id == subnet_id), owner)
        ).first()

        def network_shared() -> bool:
            assert row is not None
            return bool(
                conn.execute(
                    select(networks.c.shared).where(networks.c.id == row.network_id)
                ).scalar()
            )

        rules.check_subnet_access(
            ctx,
            subnet_id,
            row.project_id if row is not None else None,
            network_shared,
            found=row is not None,
            owner=owner,
        )
        assert row is not None
        return row

    def _port_row(
        self,
        conn: Connection,
        ctx: Context,
        port_id: str,
        *,
        field: str | None = None,
        kind: str = "port",
        lock: bool = False,
    ) -> Row[Any]:
        query = stmt.PORT_BY_ID_LOCKED if lock and self._postgres else stmt.PORT_BY_ID
        row = conn.execute(query, {"b_port": port_id}).first()
        rules.check_visible(
            ctx,
            kind,
            port_id,
            row.project_id if row is not None else None,
            found=row is not None,
            field=field,
        )
        assert row is not None
        return row

    def _trunk_row(self, conn: Connection, ctx: Context, trunk_id: str) -> Row[Any]:
        row = conn.execute(self._lock(select(trunks).where(trunks.c.id == trunk_id), True)).first()
        rules.check_visible(
            ctx,
            "trunk",
            trunk_id,
            row.project_id if row is not None else None,
            found=row is not None,
        )
        assert row is not None
        return row
