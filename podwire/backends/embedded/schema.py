"""The embedded backend's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Uniqueness that must hold under concurrency lives here as constraints, not
only in Python: an address is allocated once per subnet (the primary key of
``allocations``), a MAC once per network, a port is the parent of at most
one trunk and a sub-port of at most one trunk, a VLAN id once per trunk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

# 2: ports.tags (Neutron tags; podwire's ownership mark).
# 3: revision_number on networks, subnets, ports and trunks (Neutron's).
# Older versions are upgraded in place.
SCHEMA_VERSION = 3


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. PostgreSQL stores timestamptz. SQLite
    has no datetime type: we store fixed-width ISO text with microseconds,
    which sorts in time order and parses back with one C call
    (``fromisoformat``), cheaper than SQLAlchemy's generic parser when
    10,000 ports are listed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.isoformat(timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:  # rows written by the first version, without a zone
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

_ID = 36  # a UUID in text form
_ADDR = 64  # an IPv6 address or CIDR in text form


def _stamps() -> list[Column[Any]]:
    return [
        # Neutron's revision_number: bumped by every change of the row.
        Column("revision_number", Integer, nullable=False, default=0, server_default="0"),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
    ]


meta = Table(
    "podwire_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

networks = Table(
    "networks",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("mtu", Integer, nullable=False),
    Column("network_type", String(16), nullable=False),
    Column("segmentation_id", Integer),
    Column("physical_network", String(255)),
    Column("port_security_enabled", Boolean, nullable=False),
    Column("shared", Boolean, nullable=False),
    Column("admin_state_up", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("datapath", String(16)),
    *_stamps(),
)

subnets = Table(
    "subnets",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("network_id", String(_ID), ForeignKey("networks.id"), nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("ip_version", Integer, nullable=False),
    Column("cidr", String(_ADDR), nullable=False),
    Column("gateway_ip", String(_ADDR)),
    # [{"start": ..., "end": ...}], as the model has them
    Column("allocation_pools", JSON, nullable=False),
    Column("dns_nameservers", JSON, nullable=False),
    Column("host_routes", JSON, nullable=False),
    Column("enable_dhcp", Boolean, nullable=False),
    # The last address handed out by the sequential allocator: the next
    # search starts after it, so a growing subnet costs one query per port.
    Column("ipam_last", String(_ADDR)),
    *_stamps(),
)

ports = Table(
    "ports",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("network_id", String(_ID), ForeignKey("networks.id"), nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("mac_address", String(17), nullable=False),
    Column("device_id", String(255), nullable=False, index=True),
    Column("device_owner", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("admin_state_up", Boolean, nullable=False),
    Column("port_security_enabled", Boolean, nullable=False),
    Column("security_groups", JSON, nullable=False),
    Column("allowed_address_pairs", JSON, nullable=False),
    Column("vnic_type", String(32), nullable=False),
    Column("binding_host_id", String(255), nullable=False, index=True),
    Column("binding_profile", JSON, nullable=False),
    Column("binding_vif_type", String(64), nullable=False),
    Column("binding_vif_details", JSON, nullable=False),
    Column("tags", JSON, nullable=False, default=list),
    *_stamps(),
    # Neutron's rule: a MAC is unique within its network (one L2 domain).
    UniqueConstraint("network_id", "mac_address", name="uq_ports_network_mac"),
)

allocations = Table(
    "allocations",
    metadata,
    Column("subnet_id", String(_ID), ForeignKey("subnets.id"), primary_key=True),
    Column("ip_address", String(_ADDR), primary_key=True),
    Column("port_id", String(_ID), ForeignKey("ports.id"), nullable=False),
    # The address's place in the port's fixed_ips list.
    Column("position", Integer, nullable=False),
    Index("ix_allocations_port", "port_id"),
    Index("ix_allocations_ip", "ip_address"),
)

trunks = Table(
    "trunks",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    # unique: a port is the parent of one trunk at most
    Column("port_id", String(_ID), ForeignKey("ports.id"), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("admin_state_up", Boolean, nullable=False),
    *_stamps(),
)

subports = Table(
    "subports",
    metadata,
    # primary key: a port is a sub-port of one trunk at most
    Column("port_id", String(_ID), ForeignKey("ports.id"), primary_key=True),
    Column("trunk_id", String(_ID), ForeignKey("trunks.id"), nullable=False, index=True),
    Column("segmentation_type", String(16), nullable=False),
    Column("segmentation_id", Integer, nullable=False),
    UniqueConstraint("trunk_id", "segmentation_id", name="uq_subports_trunk_vlan"),
    CheckConstraint("segmentation_id BETWEEN 1 AND 4094", name="ck_subports_vlan_range"),
)
