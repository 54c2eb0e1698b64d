"""Address allocation for ports in the embedded backend: which subnet each
requested address comes from, the named addresses first, then any free one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from podwire.backends import rules
from podwire.errors import Conflict, Exhausted, InvalidInput
from podwire.model import FixedIp, FixedIpRequest

from . import convert, ipam
from . import statements as stmt
from .store import Store


class AddressAllocation(Store):
    """The allocations table: planning, checking and taking addresses for a port."""

    def _locked_subnets(self, conn: Connection, network_id: str) -> list[Row[Any]]:
        """The network's subnets, oldest first; on PostgreSQL locked (in id
        order, so two writers never wait on each other crosswise) so that
        allocations on one subnet happen one at a time."""
        query = stmt.SUBNETS_OF_NETWORK_LOCKED if self._postgres else stmt.SUBNETS_OF_NETWORK
        rows = conn.execute(query, {"b_network": network_id}).all()
        return sorted(rows, key=lambda r: (r.created_at, r.id))

    @staticmethod
    def _plan(
        network_id: str, subnet_rows: list[Row[Any]], requests: list[FixedIpRequest] | None
    ) -> list[tuple[Row[Any], str | None]]:
        """Which subnet each requested address comes from (None: any free one),
        addresses in canonical form."""
        plan = rules.plan_fixed_ips(network_id, subnet_rows, requests)
        return [(row, str(ipam.ipaddress.ip_address(a)) if a else None) for row, a in plan]

    def _allocate(
        self,
        conn: Connection,
        port_id: str,
        plan: list[tuple[Row[Any], str | None]],
        device_owner: str,
    ) -> list[FixedIp]:
        """Allocate every planned address for the port: the named ones first
        (so that "any free address" never takes one named later in the list)."""
        result: list[FixedIp | None] = [None] * len(plan)
        named: set[tuple[str, str]] = set()
        rows_out: list[dict[str, Any]] = []
        for position, (row, address) in enumerate(plan):
            if address is None:
                continue
            self._check_named(conn, row, address, device_owner, named)
            named.add((row.id, address))
            rows_out.append(
                {
                    "subnet_id": row.id,
                    "ip_address": address,
                    "port_id": port_id,
                    "position": position,
                }
            )
            result[position] = convert.fixed_ip(row.id, address)
        if rows_out:
            conn.execute(stmt.INSERT_ALLOCATION, rows_out)

        last_seen: dict[str, int | None] = {}
        for position, (row, address) in enumerate(plan):
            if address is not None:
                continue
            chosen = self._pick(conn, row, last_seen)
            conn.execute(
                stmt.INSERT_ALLOCATION,
                {
                    "subnet_id": row.id,
                    "ip_address": chosen,
                    "port_id": port_id,
                    "position": position,
                },
            )
            result[position] = convert.fixed_ip(row.id, chosen)
        versions = {row.id: row.ip_version for row, _ in plan}
        for subnet_id, last in last_seen.items():
            if last is not None:
                conn.execute(
                    stmt.SET_IPAM_LAST,
                    {"b_subnet": subnet_id, "b_last": ipam.to_text(last, versions[subnet_id])},
                )
        return [ip for ip in result if ip is not None]

    @staticmethod
    def _check_named(
        conn: Connection,
        row: Row[Any],
        address: str,
        device_owner: str,
        named: set[tuple[str, str]],
    ) -> None:
        cidr = ipam.network(row.cidr)
        value = ipam.to_int(address)
        if (
            cidr.version == 4
            and cidr.prefixlen < 31
            and value
            in (
                int(cidr.network_address),
                int(cidr.broadcast_address),
            )
        ):
            raise InvalidInput(
                f"fixed_ips: {address} is the network or broadcast address of {cidr}",
                kind="port",
                field="fixed_ips",
            )
        # Only router-like owners (network:router_interface, ...) hold the gateway.
        if address == row.gateway_ip and not device_owner.startswith("network:"):
            raise Conflict(
                f"fixed_ips: {address} is the gateway of subnet {row.id}",
                kind="port",
                field="fixed_ips",
            )
        if (row.id, address) in named:
            raise rules.requested_twice(address)
        holder = conn.execute(stmt.HOLDER, {"b_subnet": row.id, "b_address": address}).scalar()
        if holder is not None:
            raise Conflict(
                f"fixed_ips: ip_address {address} is already allocated on subnet {row.id}",
                kind="port",
                field="fixed_ips",
            )

    @staticmethod
    def _pick(conn: Connection, row: Row[Any], last_seen: dict[str, int | None]) -> str:
        version = row.ip_version
        ranges = ipam.parse_pools(row.allocation_pools)
        if row.id not in last_seen:
            last_seen[row.id] = ipam.to_int(row.ipam_last) if row.ipam_last else None

        def taken(candidates: list[int]) -> set[int]:
            texts = [ipam.to_text(c, version) for c in candidates]
            found = conn.execute(stmt.TAKEN, {"b_subnet": row.id, "b_addresses": texts}).scalars()
            return {ipam.to_int(t) for t in found}

        value = ipam.pick_free(ranges, last_seen[row.id], taken)
        if value is None:
            raise Exhausted(
                f"subnet {row.id} ({row.cidr}) has no free address left",
                kind="subnet",
                object_id=row.id,
                field="fixed_ips",
            )
        if ipam.size(ranges) <= ipam.SEQUENTIAL_LIMIT:
            last_seen[row.id] = value
        return ipam.to_text(value, version)
