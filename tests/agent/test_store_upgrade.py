"""A store written before ``frontend_state`` existed opens and keeps working:
the column is added at open, old rows read as {} and can be given a state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from podwire.agent.store import AttachmentStore

_OLD_SCHEMA = """
CREATE TABLE attachments (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    container_id VARCHAR(255) NOT NULL,
    ifname VARCHAR(15) NOT NULL,
    netns TEXT,
    network_id VARCHAR(255) NOT NULL,
    port_id VARCHAR(64),
    owns_port BOOLEAN NOT NULL,
    vif TEXT,
    state VARCHAR(16) NOT NULL,
    frontend VARCHAR(16) NOT NULL,
    labels TEXT NOT NULL,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    CONSTRAINT uq_container_ifname UNIQUE (container_id, ifname)
)
"""


def test_old_store_gains_frontend_state(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with sqlite3.connect(path) as db:
        db.execute(_OLD_SCHEMA)
        db.execute(
            "INSERT INTO attachments VALUES ('a1', 'e1', 'pwd-e1', NULL, 'n1', 'p1', 1, NULL,"
            " 'ready', 'docker', '{\"docker.network\": \"d1\"}',"
            " '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
        )
    store = AttachmentStore(path)
    try:
        (old,) = store.list(frontend="docker")
        assert old.frontend_state == {} and old.labels == {"docker.network": "d1"}
        store.update(old.id, frontend_state={"unplugged": True})
        assert store.get(old.id).frontend_state == {"unplugged": True}
        new = store.create(
            container_id="e2",
            ifname="pwd-e2",
            netns=None,
            network="n1",
            frontend="docker",
            labels={},
            frontend_state={"docker_network_id": "d1"},
        )
        assert store.get(new.id).frontend_state == {"docker_network_id": "d1"}
    finally:
        store.close()
    # Opened again: the column is there, nothing is added twice.
    AttachmentStore(path).close()
