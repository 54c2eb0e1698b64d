"""Fast reads of IDL rows.

python-ovs converts a column from its wire form into Python on every
attribute access, which costs tens of microseconds; listing or allocating on
a network of thousands of ports reads each port's columns many times. The
replica is only changed by the IDL's update processing, which tells
``notify`` about every row it creates, changes or deletes: ``TrackingIdl``
counts a version per row there, and ``col(row, column)`` remembers each
conversion until the row's version moves.

Columns the running transaction has written (or mutated) are read through
python-ovs as usual, so a transaction always sees its own writes.

Only the thread holding the connection's lock reads rows or runs the IDL
(ovsdbapp runs every command under it), so nothing here needs a lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ovsdbapp.backend.ovs_idl import connection

_MAX_ENTRIES = 500_000


class TrackingIdl(connection.OvsdbIdl):
    """An IDL that counts a version per row, bumped on every change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_versions: dict[Any, int] = {}
        self.memo: dict[tuple[Any, str, str], tuple[int, Any]] = {}

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        versions = self.row_versions
        if event == "delete":
            versions.pop(row.uuid, None)
        else:
            versions[row.uuid] = versions.get(row.uuid, 0) + 1
        super().notify(event, row, updates)


def _dirty(row: Any, column: str) -> bool:
    """True when the row is new or the running transaction touched ``column``."""
    state = row.__dict__
    if state.get("_data") is None:
        return True
    if column in (state.get("_changes") or {}):
        return True
    return any(column in changed for changed in (state.get("_mutations") or {}).values())


def derived(row: Any, column: str, kind: str, compute: Callable[[Any], Any]) -> Any:
    """``compute(value of column)``, remembered until the row changes."""
    idl = row.__dict__.get("_idl")
    versions = getattr(idl, "row_versions", None)
    if versions is None or _dirty(row, column):
        return compute(getattr(row, column))
    version = versions.get(row.uuid, 0)
    key = (row.uuid, column, kind)
    hit = idl.memo.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = compute(getattr(row, column))
    if len(idl.memo) > _MAX_ENTRIES:
        idl.memo.clear()
    idl.memo[key] = (version, value)
    return value


def col(row: Any, column: str) -> Any:
    """The column's Python value (shared: do not mutate it)."""
    return derived(row, column, "", lambda value: value)
