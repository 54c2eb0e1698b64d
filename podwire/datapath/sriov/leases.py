"""The one authority over VFs: leases and baselines in the agent's durable
state (its own SQLite file, ``<state_dir>/sriov.db``; the attachment store
is not touched).

One row per VF the agent has discovered:

- ``baseline``: the VF's clean state (MAC, VLAN, QoS, spoofchk, trust,
  min/max tx rate, link state, kernel driver, netdev name, MTU), recorded
  ONCE, when the agent first discovers the VF (not at every ADD);
- ``attachment_id``: the lease. UNIQUE, and taken with a conditional UPDATE
  inside one write transaction: a VF is never leased to two attachments;
- ``state``: ``clean`` or ``touched``; ``intent``: what is about to be
  applied, written BEFORE the VF is touched, so a restore after kill -9 at
  any moment knows the VF may be dirty.

Restoring needs nothing but the row: the data path puts the baseline back.
``leases()`` is the cheap read for metrics and ``podwire vf list``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS vfs (
    pci TEXT PRIMARY KEY,
    pf_pci TEXT NOT NULL,
    vf_index INTEGER NOT NULL,
    physical_network TEXT,
    numa_node INTEGER,
    baseline TEXT NOT NULL,
    attachment_id TEXT UNIQUE,
    container_id TEXT,
    ifname TEXT,
    state TEXT NOT NULL DEFAULT 'clean',
    intent TEXT,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Lease:
    pci: str
    pf_pci: str
    vf_index: int
    physical_network: str | None
    numa_node: int | None
    baseline: dict[str, Any]
    attachment_id: str | None
    container_id: str | None
    ifname: str | None
    state: str
    intent: dict[str, Any] | None

    @property
    def leased(self) -> bool:
        return self.attachment_id is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pci_address": self.pci,
            "pf_pci_address": self.pf_pci,
            "vf_index": self.vf_index,
            "physical_network": self.physical_network,
            "numa_node": self.numa_node,
            "attachment_id": self.attachment_id,
            "container_id": self.container_id,
            "ifname": self.ifname,
            "state": self.state,
            "baseline": self.baseline,
        }


def lease_levels(leases: list[Lease]) -> dict[tuple[str, str], int]:
    """VFs by (physical network, "leased" or "free"), for metrics: what a
    pool has left is what an operator watches."""
    levels: dict[tuple[str, str], int] = {}
    for lease in leases:
        key = (lease.physical_network or "", "leased" if lease.leased else "free")
        levels[key] = levels.get(key, 0) + 1
    return levels


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(
        pci=row["pci"],
        pf_pci=row["pf_pci"],
        vf_index=row["vf_index"],
        physical_network=row["physical_network"],
        numa_node=row["numa_node"],
        baseline=json.loads(row["baseline"]),
        attachment_id=row["attachment_id"],
        container_id=row["container_id"],
        ifname=row["ifname"],
        state=row["state"],
        intent=json.loads(row["intent"]) if row["intent"] else None,
    )


class LeaseStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reads ----------------------------------------------------------------------

    def leases(self) -> list[Lease]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM vfs ORDER BY pf_pci, vf_index").fetchall()
        return [_lease(r) for r in rows]

    def get(self, pci: str) -> Lease | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM vfs WHERE pci = ?", (pci,)).fetchone()
        return _lease(row) if row else None

    def by_attachment(self, attachment_id: str) -> Lease | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM vfs WHERE attachment_id = ?", (attachment_id,)
            ).fetchone()
        return _lease(row) if row else None

    # --- discovery --------------------------------------------------------------------

    def discovered(self, pci: str) -> bool:
        return self.get(pci) is not None

    def record_baseline(
        self,
        pci: str,
        *,
        pf_pci: str,
        vf_index: int,
        physical_network: str | None,
        numa_node: int | None,
        baseline: dict[str, Any],
    ) -> None:
        """The first discovery of a VF: its baseline, never overwritten."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO vfs (pci, pf_pci, vf_index, physical_network,"
                " numa_node, baseline, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    pci,
                    pf_pci,
                    vf_index,
                    physical_network,
                    numa_node,
                    json.dumps(baseline),
                    time.time(),
                ),
            )
            # The pool a VF belongs to may change with the configuration.
            self._db.execute(
                "UPDATE vfs SET physical_network = ?, numa_node = ? WHERE pci = ?",
                (physical_network, numa_node, pci),
            )

    def forget_missing(self, present: Iterable[str], pf_pcis: Iterable[str]) -> list[str]:
        """VFs of these PFs that no longer exist (numvfs lowered) and are not
        leased: their rows go (a VF made again later is discovered afresh)."""
        keep = set(present)
        pfs = set(pf_pcis)
        gone = []
        with self._lock:
            for row in self._db.execute(
                "SELECT pci, pf_pci FROM vfs WHERE attachment_id IS NULL"
            ).fetchall():
                if row["pf_pci"] in pfs and row["pci"] not in keep:
                    gone.append(row["pci"])
            for pci in gone:
                self._db.execute("DELETE FROM vfs WHERE pci = ?", (pci,))
        return gone

    # --- leases -----------------------------------------------------------------------

    def take(self, pci: str, attachment_id: str, container_id: str, ifname: str) -> bool:
        """Lease ``pci`` to the attachment; False when someone holds it."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE vfs SET attachment_id = ?, container_id = ?, ifname = ?,"
                " updated_at = ? WHERE pci = ? AND attachment_id IS NULL",
                (attachment_id, container_id, ifname, time.time(), pci),
            )
            return cur.rowcount == 1

    def free_pcis(self, pcis: Iterable[str]) -> set[str]:
        wanted = list(pcis)
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        with self._lock:
            rows = self._db.execute(
                f"SELECT pci FROM vfs WHERE attachment_id IS NULL AND pci IN ({marks})",
                wanted,
            ).fetchall()
        return {r["pci"] for r in rows}

    def touching(self, pci: str, intent: dict[str, Any]) -> None:
        """Written before a VF is touched."""
        with self._lock:
            self._db.execute(
                "UPDATE vfs SET state = 'touched', intent = ?, updated_at = ? WHERE pci = ?",
                (json.dumps(intent), time.time(), pci),
            )

    def cleaned(self, pci: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE vfs SET state = 'clean', intent = NULL, updated_at = ? WHERE pci = ?",
                (time.time(), pci),
            )

    def release(self, pci: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE vfs SET attachment_id = NULL, container_id = NULL, ifname = NULL,"
                " updated_at = ? WHERE pci = ?",
                (time.time(), pci),
            )
