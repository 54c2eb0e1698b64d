"""The embedded backend's side of IPAM: the allocations table. Which
addresses a port may get, and which free one to hand out, is podwire.ipam's
(shared with the OVN backend and the Docker door); here are the queries that
answer whether an address is taken, the inserts, and ``subnets.ipam_last``
(where the next sequential search starts)."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import Connection, Row

from podwire import ipam
from podwire.backends import rules
from podwire.model import FixedIp, FixedIpRequest

from . import convert
from . import statements as stmt
from .store import Store


class AddressAllocation(Store):
    """The allocations table: planning and taking addresses for a port."""

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
        return [(row, str(ipaddress.ip_address(a)) if a else None) for row, a in plan]

    def _allocate(
        self,
        conn: Connection,
        port_id: str,
        plan: list[tuple[Row[Any], str | None]],
        device_owner: str,
    ) -> list[FixedIp]:
        """Allocate every planned address for the port, the requested ones
        first (podwire.ipam.requested_first)."""
        result: list[FixedIp | None] = [None] * len(plan)
        requested, free = ipam.requested_first(plan)
        may_be_gateway = ipam.may_hold_gateway(device_owner)
        rows_out: list[dict[str, Any]] = []
        for position, row, address in requested:
            ipam.check_requested(row, address, may_be_gateway=may_be_gateway)
            holder = conn.execute(stmt.HOLDER, {"b_subnet": row.id, "b_address": address}).scalar()
            if holder is not None:
                raise ipam.already_allocated(address, row.id)
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
        for position, row in free:
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
            raise ipam.no_free_address(row.id, row.cidr)
        if ipam.size(ranges) <= ipam.SEQUENTIAL_LIMIT:
            last_seen[row.id] = value
        return ipam.to_text(value, version)
