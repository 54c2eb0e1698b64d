"""The embedded backend's statements, built once: building a statement
costs more than running it on SQLite (the port-create hot path)."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, insert, select, update

from .schema import allocations, networks, ports, subnets, subports, trunks

# The port columns plus its trunk membership, as convert.port expects them.
PORT_COLUMNS = select(
    ports,
    trunks.c.port_id.label("parent_port_id"),
    subports.c.segmentation_id.label("sub_vlan"),
).select_from(
    ports.outerjoin(subports, subports.c.port_id == ports.c.id).outerjoin(
        trunks, trunks.c.id == subports.c.trunk_id
    )
)


NETWORK_BY_ID = select(networks).where(networks.c.id == bindparam("b_id"))
NETWORK_BY_ID_LOCKED = NETWORK_BY_ID.with_for_update()
SUBNETS_OF_NETWORK = (
    select(subnets).where(subnets.c.network_id == bindparam("b_network")).order_by(subnets.c.id)
)
SUBNETS_OF_NETWORK_LOCKED = SUBNETS_OF_NETWORK.with_for_update()
MAC_USED = select(ports.c.id).where(
    ports.c.network_id == bindparam("b_network"), ports.c.mac_address == bindparam("b_mac")
)
TAKEN = select(allocations.c.ip_address).where(
    allocations.c.subnet_id == bindparam("b_subnet"),
    allocations.c.ip_address.in_(bindparam("b_addresses", expanding=True)),
)
HOLDER = select(allocations.c.port_id).where(
    allocations.c.subnet_id == bindparam("b_subnet"),
    allocations.c.ip_address == bindparam("b_address"),
)
INSERT_PORT = insert(ports)
INSERT_ALLOCATION = insert(allocations)
SET_IPAM_LAST = (
    update(subnets)
    .where(subnets.c.id == bindparam("b_subnet"))
    .values(ipam_last=bindparam("b_last"))
)

# One port by id (get, update, delete and every scoped lookup).
PORT_BY_ID = PORT_COLUMNS.where(ports.c.id == bindparam("b_port"))
# FOR UPDATE cannot lock the nullable side of an outer join.
PORT_BY_ID_LOCKED = PORT_BY_ID.with_for_update(of=ports)
ALLOCATIONS_OF_PORT = (
    select(allocations.c.port_id, allocations.c.subnet_id, allocations.c.ip_address)
    .where(allocations.c.port_id == bindparam("b_port"))
    .order_by(allocations.c.position)
)
TRUNK_OF_PARENT = select(trunks.c.id).where(trunks.c.port_id == bindparam("b_port"))
DELETE_ALLOCATIONS_OF_PORT = delete(allocations).where(allocations.c.port_id == bindparam("b_port"))
DELETE_PORT = delete(ports).where(ports.c.id == bindparam("b_port"))
# Ports' status in one statement (the agent's batched ACTIVE marks); the
# scoped variant for a non-admin caller. A port already in that status is
# left alone (its revision too).
SET_STATUS = (
    update(ports)
    .where(
        ports.c.id.in_(bindparam("b_ports", expanding=True)),
        ports.c.status != bindparam("b_status"),
    )
    .values(
        status=bindparam("b_status"),
        revision_number=ports.c.revision_number + 1,
        updated_at=bindparam("b_now"),
    )
)
SET_STATUS_OF_PROJECT = SET_STATUS.where(ports.c.project_id == bindparam("b_project"))
