"""Ports in the embedded backend: unique MACs per network, fixed IPs from
addresses.py, allowed-address-pairs and binding."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from sqlalchemy.exc import IntegrityError

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.backends.filtering import split_tag_filters, tags_match
from podwire.errors import Conflict, Exhausted
from podwire.model import (
    AllowedAddressPair,
    Context,
    FixedIp,
    FixedIpRequest,
    Port,
    PortCreate,
    PortUpdate,
    new_id,
)

from . import convert, macs
from . import statements as stmt
from .filters import where
from .ipam import AddressAllocation
from .schema import allocations, ports
from .store import utc_now

_MAC_TRIES = 16


class PortCalls(AddressAllocation):
    """create/get/list/update/delete of ports."""

    def _port(self, conn: Connection, port_id: str) -> Port:
        """One port, by prebuilt statements (the hot path: every update)."""
        row = conn.execute(stmt.PORT_BY_ID, {"b_port": port_id}).one()
        fixed = [
            convert.fixed_ip(subnet_id, ip_address)
            for _, subnet_id, ip_address in conn.execute(
                stmt.ALLOCATIONS_OF_PORT, {"b_port": port_id}
            )
        ]
        return convert.port(dict(zip(convert.PORT_FIELDS, row, strict=True)), fixed)

    def _ports(self, conn: Connection, clauses: Sequence[Any]) -> list[Port]:
        rows = conn.execute(
            stmt.PORT_COLUMNS.where(*clauses).order_by(ports.c.created_at, ports.c.id)
        ).all()
        if not rows:
            return []
        fixed: dict[str, list[FixedIp]] = defaultdict(list)
        if len(rows) == 1:
            owners: Any = allocations.c.port_id == rows[0].id
        else:
            owners = allocations.c.port_id.in_(select(ports.c.id).where(*clauses))
        for port_id, subnet_id, ip_address in conn.execute(
            select(allocations.c.port_id, allocations.c.subnet_id, allocations.c.ip_address)
            .where(owners)
            .order_by(allocations.c.port_id, allocations.c.position)
        ):
            fixed[port_id].append(convert.fixed_ip(subnet_id, ip_address))
        names = convert.PORT_FIELDS
        return [
            convert.port(dict(zip(names, row, strict=True)), fixed.get(row[0], [])) for row in rows
        ]

    def _port_scope(self, ctx: Context) -> list[Any]:
        return [] if ctx.is_admin else [ports.c.project_id == ctx.project_id]

    @staticmethod
    def _pairs(pairs: list[AllowedAddressPair]) -> list[dict[str, Any]]:
        rules.check_pairs(pairs)
        return [pair.model_dump() for pair in pairs]

    def _mac(self, conn: Connection, network_id: str, requested: str | None) -> str:
        def used(mac: str) -> bool:
            return (
                conn.execute(stmt.MAC_USED, {"b_network": network_id, "b_mac": mac}).first()
                is not None
            )

        if requested is not None:
            return rules.requested_mac(network_id, requested, used(requested))
        for _ in range(_MAC_TRIES):
            mac = macs.random_mac(self._mac_prefix)
            if not used(mac):
                return mac
        raise rules.no_free_mac(network_id, self._mac_prefix)

    def _insert_port(self, conn: Connection, values: dict[str, Any], mac: str | None) -> None:
        """Insert the port with the requested MAC or a free random one. On
        SQLite writers take turns, so the check in _mac is final; on
        PostgreSQL two writers may draw the same random MAC at once, and the
        unique constraint decides: the loser draws again (in a savepoint)."""
        for _ in range(_MAC_TRIES):
            values["mac_address"] = self._mac(conn, values["network_id"], mac)
            if not self._postgres:
                conn.execute(stmt.INSERT_PORT, values)
                return
            try:
                with conn.begin_nested():
                    conn.execute(stmt.INSERT_PORT, values)
                return
            except IntegrityError:
                if mac is not None:
                    raise Conflict(
                        f"mac_address {mac} is already used on network {values['network_id']}",
                        kind="port",
                        field="mac_address",
                    ) from None
        raise Exhausted(
            f"no free MAC address with prefix {self._mac_prefix} on network {values['network_id']}",
            kind="network",
            object_id=values["network_id"],
            field="mac_address",
        )

    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        project = rules.project_for(ctx, req.project_id, "port")
        pairs = self._pairs(req.allowed_address_pairs)
        binding = req.binding.model_dump() if req.binding is not None else None

        def work(conn: Connection) -> Port:
            net = self._network_row(conn, ctx, req.network_id, field="network_id")
            subnet_rows = self._locked_subnets(conn, net.id)
            plan = self._plan(net.id, subnet_rows, req.fixed_ips)
            port_id, now = new_id(), utc_now()
            security = (
                req.port_security_enabled
                if req.port_security_enabled is not None
                else net.port_security_enabled
            )
            values = {
                "id": port_id,
                "network_id": net.id,
                "project_id": project,
                "name": req.name,
                "description": req.description,
                "mac_address": "",
                "device_id": req.device_id,
                "device_owner": req.device_owner,
                "status": "DOWN",
                "admin_state_up": req.admin_state_up,
                "port_security_enabled": security,
                "security_groups": list(req.security_groups or []),
                "allowed_address_pairs": pairs,
                "vnic_type": req.vnic_type,
                "binding_host_id": binding["host_id"] if binding else "",
                "binding_profile": binding["profile"] if binding else {},
                "binding_vif_type": binding["vif_type"] if binding else "unbound",
                "binding_vif_details": binding["vif_details"] if binding else {},
                "tags": list(req.tags),
                "revision_number": 0,
                "created_at": now,
                "updated_at": now,
            }
            self._insert_port(conn, values, req.mac_address)
            fixed_ips = self._allocate(conn, port_id, plan, req.device_owner)
            return convert.port(dict(values, parent_port_id=None, sub_vlan=None), fixed_ips)

        return self._write(work)

    def get_port(self, ctx: Context, port_id: str) -> Port:
        def work(conn: Connection) -> Port:
            self._port_row(conn, ctx, port_id)
            return self._port(conn, port_id)

        return self._read(work)

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        # Tags are a JSON list: matched here, the other filters in SQL.
        rest, every, any_of = split_tag_filters(filters)
        clauses = [*self._port_scope(ctx), *where(ports, "port", rest)]
        found = self._read(lambda conn: self._ports(conn, clauses))
        if every or any_of:
            found = [p for p in found if tags_match(p.tags, every, any_of)]
        return found

    def update_port(
        self, ctx: Context, port_id: str, req: PortUpdate, *, if_revision: int | None = None
    ) -> Port:
        def work(conn: Connection) -> Port:
            row = self._port_row(conn, ctx, port_id, lock=True)
            # Checked under the write lock (SQLite) or the row lock (PostgreSQL):
            # no other writer can change the port between this check and ours.
            rules.check_revision("port", port_id, row.revision_number, if_revision)
            values: dict[str, Any] = {}
            for key in (
                "name",
                "description",
                "device_id",
                "device_owner",
                "status",
                "admin_state_up",
                "port_security_enabled",
                "vnic_type",
            ):
                value = getattr(req, key)
                if value is not None:
                    values[key] = value
            if req.security_groups is not None:
                values["security_groups"] = list(req.security_groups)
            if req.allowed_address_pairs is not None:
                values["allowed_address_pairs"] = self._pairs(req.allowed_address_pairs)
            if req.tags is not None:
                values["tags"] = list(req.tags)
            if req.binding is not None:
                values.update(
                    binding_host_id=req.binding.host_id,
                    binding_profile=req.binding.profile,
                    binding_vif_type=req.binding.vif_type,
                    binding_vif_details=req.binding.vif_details,
                )
            if req.mac_address is not None and req.mac_address != row.mac_address:
                values["mac_address"] = self._mac(conn, row.network_id, req.mac_address)
            if req.fixed_ips is not None:
                self._reallocate(
                    conn, row, req.fixed_ips, values.get("device_owner", row.device_owner)
                )
            conn.execute(
                update(ports)
                .where(ports.c.id == port_id)
                .values(
                    **values,
                    revision_number=ports.c.revision_number + 1,
                    updated_at=utc_now(),
                )
            )
            return self._port(conn, port_id)

        return self._write(work)

    def _reallocate(
        self, conn: Connection, row: Row[Any], requests: list[FixedIpRequest], device_owner: str
    ) -> None:
        """Replace the port's addresses. Addresses it keeps stay allocated
        throughout; a subnet-only request keeps an address the port already
        has on that subnet rather than trading it for a new one."""
        subnet_rows = self._locked_subnets(conn, row.network_id)
        plan = self._plan(row.network_id, subnet_rows, requests)
        current = [
            (subnet_id, address)
            for subnet_id, address in conn.execute(
                select(allocations.c.subnet_id, allocations.c.ip_address)
                .where(allocations.c.port_id == row.id)
                .order_by(allocations.c.position)
            )
        ]
        claimed = {(r.id, a) for r, a in plan if a is not None}
        spare = [c for c in current if c not in claimed]
        resolved: list[tuple[Row[Any], str | None]] = []
        for subnet_row, address in plan:
            if address is None:
                reuse = next((c for c in spare if c[0] == subnet_row.id), None)
                if reuse is not None:
                    spare.remove(reuse)
                    address = reuse[1]
            resolved.append((subnet_row, address))
        # Free everything, then take back what is kept: the named-address
        # checks then see only other ports' allocations.
        conn.execute(delete(allocations).where(allocations.c.port_id == row.id))
        self._allocate(conn, row.id, resolved, device_owner)

    def set_ports_status(self, ctx: Context, port_ids: Sequence[str], status: str) -> None:
        """One UPDATE for the lot (the agent's ACTIVE marks come in batches
        under churn); a port already in that status keeps its revision."""
        if not port_ids:
            return
        params = {"b_ports": list(port_ids), "b_status": status, "b_now": utc_now()}
        statement = stmt.SET_STATUS
        if not ctx.is_admin:
            statement, params["b_project"] = stmt.SET_STATUS_OF_PROJECT, ctx.project_id
        self._write(lambda conn: conn.execute(statement, params))

    def delete_port(self, ctx: Context, port_id: str) -> None:
        def work(conn: Connection) -> None:
            row = self._port_row(conn, ctx, port_id, lock=True)
            trunk_id = conn.execute(stmt.TRUNK_OF_PARENT, {"b_port": port_id}).scalar()
            rules.check_port_deletable(port_id, trunk_id, row.parent_port_id)
            conn.execute(stmt.DELETE_ALLOCATIONS_OF_PORT, {"b_port": port_id})
            conn.execute(stmt.DELETE_PORT, {"b_port": port_id})

        self._write(work)
