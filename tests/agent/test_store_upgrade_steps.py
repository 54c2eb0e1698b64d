"""An attachment store from before recorded steps: it opens, and its
records' undo is the one their port and VIF imply."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from podwire.agent import steps
from podwire.agent.store import AttachmentStore
from podwire.datapath.vif import VethBridge

OLD_SCHEMA = """
CREATE TABLE attachments (
    id VARCHAR(36) PRIMARY KEY, container_id VARCHAR(255) NOT NULL,
    ifname VARCHAR(15) NOT NULL, netns TEXT, network_id VARCHAR(255) NOT NULL,
    port_id VARCHAR(64), owns_port BOOLEAN NOT NULL, vif TEXT,
    state VARCHAR(16) NOT NULL, frontend VARCHAR(16) NOT NULL,
    labels TEXT NOT NULL, created_at VARCHAR(40) NOT NULL, updated_at VARCHAR(40) NOT NULL,
    CONSTRAINT uq_container_ifname UNIQUE (container_id, ifname)
)
"""


def test_records_without_steps_are_undone_from_their_port_and_vif(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    vif = VethBridge(
        port_id="p1", network_id="n1", mac="0a:70:77:00:00:01", bridge="pwbrx", host_ifname="pwvx"
    )
    stamps = ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")
    db = sqlite3.connect(path)
    with db:
        db.execute(OLD_SCHEMA)
        row = ("a1", "c1", "eth0", None, "n1", "p1", 1, vif.model_dump_json(), "ready", "cni")
        db.execute(
            "INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (*row, json.dumps({}), *stamps),
        )
        # Crashed between creating the port and recording it.
        db.execute(
            "INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ("a2", "c2", "eth0", None, "n1", None, 1, None, "pending", "cni", "{}", *stamps),
        )
    db.close()

    store = AttachmentStore(path)
    try:
        ready = store.get("a1")
        assert ready.vif == vif and ready.steps == [] and ready.default_route is True
        implied = steps.steps_of(ready)
        assert [(s.name, s.state, s.data.get("port_id")) for s in implied] == [
            (steps.PORT_CREATE, "done", "p1"),
            (steps.PLUG, "done", None),
        ]
        pending = store.get("a2")
        assert [(s.name, s.data) for s in steps.steps_of(pending)] == [
            (steps.PORT_CREATE, {"legacy_name": "pw-c2-eth0"})
        ]
        # And it takes new records with steps.
        store.update("a1", frontend_state={"joined": True})
        assert store.get("a1").frontend_state == {"joined": True}
    finally:
        store.close()
