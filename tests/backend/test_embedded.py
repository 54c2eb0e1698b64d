"""The embedded backend itself: storage, configuration, registry, failures.

Contract behaviour is in test_contract.py; here is what only the embedded
backend has: SQL tables to count, SQLite's WAL file, the engine to close.
"""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from podwire.backends import registry
from podwire.backends.base import Backend
from podwire.backends.embedded import EmbeddedBackend
from podwire.backends.embedded.schema import metadata
from podwire.backends.registry import open_backend
from podwire.config import Config, load_config
from podwire.errors import Conflict, InvalidInput, Unavailable
from podwire.model import (
    Context,
    FixedIpRequest,
    NetworkCreate,
    PortCreate,
    SubnetCreate,
    SubPort,
    TrunkCreate,
)
from tests.backend.helpers import project, snapshot
from tests.fixtures.common import unique


def _row_counts(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def test_refused_requests_leave_no_row_behind(embedded_db_url: str) -> None:
    backend = EmbeddedBackend(embedded_db_url)
    try:
        ctx = Context(project_id=unique("proj"))
        net = backend.create_network(ctx, NetworkCreate())
        v4 = backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.50.0/24"))
        backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="2001:db8:50::/64"))
        taken = backend.create_port(
            ctx,
            PortCreate(network_id=net.id, fixed_ips=[FixedIpRequest(ip_address="2001:db8:50::9")]),
        )
        parent = backend.create_port(ctx, PortCreate(network_id=net.id))
        sub = backend.create_port(ctx, PortCreate(network_id=net.id))
        before = _row_counts(embedded_db_url)

        # the v4 address is allocated first, then the v6 one collides
        with pytest.raises(Conflict):
            backend.create_port(
                ctx,
                PortCreate(
                    network_id=net.id,
                    fixed_ips=[
                        FixedIpRequest(subnet_id=v4.id),
                        FixedIpRequest(ip_address="2001:db8:50::9"),
                    ],
                ),
            )
        # the trunk row is written, then its second sub-port is refused
        with pytest.raises(Conflict):
            backend.create_trunk(
                ctx,
                TrunkCreate(
                    port_id=parent.id,
                    sub_ports=[
                        SubPort(port_id=sub.id, segmentation_id=5),
                        SubPort(port_id=parent.id, segmentation_id=6),
                    ],
                ),
            )
        with pytest.raises(Conflict):
            backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.50.0/25"))
        with pytest.raises(InvalidInput):
            backend.list_ports(ctx, {"nope": ["x"]})
        assert _row_counts(embedded_db_url) == before
        # taken: its one v6 address; parent and sub: one v4 and one v6 each
        assert before["allocations"] == 5
    finally:
        backend.close()
    assert taken.fixed_ips


def test_sqlite_file_is_in_wal_mode_and_shared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'podwire.db'}"
    first, second = EmbeddedBackend(url), EmbeddedBackend(url)
    try:
        ctx = Context(project_id="p")
        net = first.create_network(ctx, NetworkCreate(name="seen"))
        assert second.get_network(ctx, net.id) == net
        with sqlite3.connect(tmp_path / "state" / "podwire.db") as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        first.close()
        second.close()


def test_in_memory_sqlite_works_across_threads() -> None:
    import threading

    backend = EmbeddedBackend("sqlite://")
    try:
        ctx = Context(project_id="p")
        net = backend.create_network(ctx, NetworkCreate())
        backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.51.0/24"))
        errors: list[BaseException] = []

        def create() -> None:
            try:
                for _ in range(10):
                    backend.create_port(ctx, PortCreate(network_id=net.id))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        addresses = [ip.ip_address for p in backend.list_ports(ctx) for ip in p.fixed_ips]
        assert len(addresses) == len(set(addresses)) == 40
    finally:
        backend.close()


def test_mac_prefix_is_configurable(tmp_path: Path) -> None:
    config = load_config(state_dir=str(tmp_path), **{"embedded.mac_prefix": "02:AB"})
    backend = open_backend(config)
    try:
        assert isinstance(backend, Backend) and backend.name == "embedded"
        ctx = Context(project_id="p")
        net = backend.create_network(ctx, NetworkCreate())
        macs = [
            backend.create_port(ctx, PortCreate(network_id=net.id)).mac_address for _ in range(5)
        ]
        assert all(m.startswith("02:ab:") for m in macs)
    finally:
        backend.close()
    assert (tmp_path / "podwire.db").exists()


def test_registry_turns_a_missing_module_into_unavailable(tmp_path: Path) -> None:
    def ghost(config: Config) -> Backend:
        # what the lazy "ovn", "neutron" and "remote" factories do, for a module that is not there
        module = importlib.import_module("podwire.backends.no_such_backend")
        return module.Backend(config)  # type: ignore[no-any-return]

    registry.FACTORIES["ghost"] = ghost
    try:
        with pytest.raises(Unavailable) as err:
            open_backend(Config.model_construct(state_dir=tmp_path, backend="ghost"))
    finally:
        del registry.FACTORIES["ghost"]
    assert "ghost" in err.value.message and err.value.field == "backend"


def test_registry_names_the_known_backends() -> None:
    assert {"embedded", "ovn", "neutron", "remote"} <= set(registry.FACTORIES)


def test_registry_refuses_unknown_names(tmp_path: Path) -> None:
    config = Config.model_construct(state_dir=tmp_path, backend="nonesuch")
    with pytest.raises(InvalidInput) as err:
        open_backend(config)
    assert err.value.field == "backend"


def test_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        EmbeddedBackend(f"postgresql+psycopg://postgres@/podwire?host={tmp_path}/no-such-socket")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Unavailable):
        EmbeddedBackend(f"sqlite:///{blocker}/sub/podwire.db")


@pytest.mark.postgres
def test_close_releases_postgres_connections(fresh_postgres_url: str) -> None:
    backend = EmbeddedBackend(fresh_postgres_url)
    ctx = Context(project_id="p")
    backend.create_network(ctx, NetworkCreate())
    backend.list_networks(ctx)
    database = fresh_postgres_url.split("/")[3].split("?")[0]
    probe = create_engine(fresh_postgres_url.replace(f"/{database}?", "/postgres?"))

    def sessions() -> int:
        with probe.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %(d)s", {"d": database}
                ).scalar_one()
            )

    try:
        assert sessions() >= 1
        backend.close()
        assert sessions() == 0
    finally:
        probe.dispose()


def test_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'podwire.db'}"
    EmbeddedBackend(url).close()
    with sqlite3.connect(tmp_path / "podwire.db") as raw:
        raw.execute("UPDATE podwire_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(Unavailable, match="schema version 999"):
        EmbeddedBackend(url)


def test_one_network_per_segment(embedded_db_url: str) -> None:
    # Neutron's rule; in the embedded backend only (the OVN backend leaves
    # segments to its operator).
    backend = EmbeddedBackend(embedded_db_url)
    try:
        _one_network_per_segment(backend)
    finally:
        backend.close()


def _one_network_per_segment(backend: EmbeddedBackend) -> None:
    alice, bob = project(), project()
    vlan = backend.create_network(
        alice,
        NetworkCreate(network_type="vlan", segmentation_id=123, physical_network="physnet1"),
    )
    assert (vlan.network_type, vlan.segmentation_id, vlan.physical_network) == (
        "vlan",
        123,
        "physnet1",
    )
    before = snapshot(backend)
    # the same VLAN on the same physical network, even from another project
    with pytest.raises(Conflict) as err:
        backend.create_network(
            bob,
            NetworkCreate(network_type="vlan", segmentation_id=123, physical_network="physnet1"),
        )
    assert err.value.field == "segmentation_id"
    assert snapshot(backend) == before
    # another VLAN, or the same VLAN on another physical network, is another segment
    backend.create_network(
        bob, NetworkCreate(network_type="vlan", segmentation_id=124, physical_network="physnet1")
    )
    backend.create_network(
        bob, NetworkCreate(network_type="vlan", segmentation_id=123, physical_network="physnet2")
    )
    backend.create_network(alice, NetworkCreate(network_type="geneve", segmentation_id=5000))
    with pytest.raises(Conflict):
        backend.create_network(bob, NetworkCreate(network_type="geneve", segmentation_id=5000))


def test_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database from before ports had tags (schema 1) opens: the column is
    added, old ports read with no tags, new ones keep theirs."""
    import sqlite3

    from podwire.model import Context, NetworkCreate, PortCreate

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    ctx = Context(project_id="p1")
    backend = EmbeddedBackend(url)
    net = backend.create_network(ctx, NetworkCreate(name="n"))
    old = backend.create_port(ctx, PortCreate(network_id=net.id))
    backend.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE ports DROP COLUMN tags")
        for table in ("networks", "subnets", "ports", "trunks"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN revision_number")
        db.execute("UPDATE podwire_meta SET value = '1' WHERE key = 'schema_version'")
    db.close()

    backend = EmbeddedBackend(url)
    try:
        assert backend.get_port(ctx, old.id).tags == []
        new = backend.create_port(ctx, PortCreate(network_id=net.id, tags=["podwire:host=h"]))
        assert [p.id for p in backend.list_ports(ctx, {"tags": ["podwire:host=h"]})] == [new.id]
    finally:
        backend.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM podwire_meta WHERE key = 'schema_version'").fetchone() == (
        "3",
    )
    db.close()


def test_schema_2_database_gets_revision_numbers(tmp_path: Path) -> None:
    """A database from before revision numbers (schema 2) opens: old objects
    read at revision 0 and count from there."""
    import sqlite3

    from podwire.model import Context, NetworkCreate, PortCreate, PortUpdate

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    ctx = Context(project_id="p1")
    backend = EmbeddedBackend(url)
    net = backend.create_network(ctx, NetworkCreate(name="n"))
    old = backend.create_port(ctx, PortCreate(network_id=net.id))
    backend.close()
    db = sqlite3.connect(path)
    with db:
        for table in ("networks", "subnets", "ports", "trunks"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN revision_number")
        db.execute("UPDATE podwire_meta SET value = '2' WHERE key = 'schema_version'")
    db.close()

    backend = EmbeddedBackend(url)
    try:
        assert backend.get_port(ctx, old.id).revision_number == 0
        assert backend.update_port(ctx, old.id, PortUpdate(name="x")).revision_number == 1
        assert backend.get_network(ctx, net.id).revision_number == 0
    finally:
        backend.close()


def test_network_delete_takes_pooled_ports_with_it_not_ports_in_use(
    embedded_db_url: str,
) -> None:
    """Pooled ports (the pools' mark, no device_id) go with their network, as
    Neutron's network:dhcp ports do; a taken one, a trunk's parent or an
    unmarked port keeps it in use (docs/pools.md, "Network delete")."""
    backend = EmbeddedBackend(embedded_db_url)
    try:
        ctx = project()
        net = backend.create_network(ctx, NetworkCreate())
        backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.51.0/24"))
        pool_tags = ["podwire:host=h", "podwire:purpose=pool", "podwire:pool=p"]

        def pooled(device_id: str = "") -> str:
            req = PortCreate(
                network_id=net.id, device_owner="podwire:pool", device_id=device_id, tags=pool_tags
            )
            return backend.create_port(ctx, req).id

        free = [pooled(), pooled()]
        in_use = pooled("container-1")
        with pytest.raises(Conflict, match="still has 1 port"):
            backend.delete_network(ctx, net.id)
        backend.delete_port(ctx, in_use)
        parent = pooled()
        trunk = backend.create_trunk(ctx, TrunkCreate(port_id=parent))
        with pytest.raises(Conflict, match="still has 1 port"):
            backend.delete_network(ctx, net.id)
        backend.delete_trunk(ctx, trunk.id)
        unmarked = backend.create_port(
            ctx, PortCreate(network_id=net.id, device_owner="podwire:pool")
        )
        with pytest.raises(Conflict, match="still has 1 port"):
            backend.delete_network(ctx, net.id)
        backend.delete_port(ctx, unmarked.id)
        assert {p.id for p in backend.list_ports(ctx)} == {*free, parent}

        backend.delete_network(ctx, net.id)
        assert backend.list_ports(ctx) == [] and backend.list_networks(ctx) == []
        counts = _row_counts(embedded_db_url)
        assert counts["allocations"] == 0 and counts["ports"] == 0
    finally:
        backend.close()
