"""Subnets in the embedded backend: their ranges and pools are checked before the
transaction, their overlap with the network's other subnets inside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from podwire import ipam
from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.model import Context, Subnet, SubnetCreate, SubnetUpdate, new_id

from . import convert
from .filters import where
from .schema import allocations, networks, subnets
from .store import Store, utc_now


class SubnetCalls(Store):
    """create/get/list/update/delete of subnets."""

    def _subnet_scope(self, ctx: Context) -> list[Any]:
        if ctx.is_admin:
            return []
        shared = select(networks.c.id).where(networks.c.shared.is_(True))
        return [or_(subnets.c.project_id == ctx.project_id, subnets.c.network_id.in_(shared))]

    def _subnets(self, conn: Connection, clauses: Sequence[Any]) -> list[Subnet]:
        rows = conn.execute(
            select(subnets).where(*clauses).order_by(subnets.c.created_at, subnets.c.id)
        ).all()
        return [convert.subnet(row) for row in rows]

    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        project = rules.project_for(ctx, req.project_id, "subnet")
        cidr, gateway, ranges = ipam.subnet_addressing(
            req.cidr, req.gateway_ip, req.allocation_pools
        )
        rules.check_host_routes(req.host_routes, cidr.version)

        def work(conn: Connection) -> Subnet:
            net = self._network_row(
                conn, ctx, req.network_id, field="network_id", owner=True, lock=True
            )
            others = conn.execute(
                select(subnets.c.id, subnets.c.cidr).where(subnets.c.network_id == net.id)
            ).all()
            rules.check_no_overlap(req.cidr, net.id, others)
            subnet_id, now = new_id(), utc_now()
            conn.execute(
                insert(subnets).values(
                    id=subnet_id,
                    network_id=net.id,
                    project_id=project,
                    name=req.name,
                    description=req.description,
                    ip_version=cidr.version,
                    cidr=str(cidr),
                    gateway_ip=gateway,
                    allocation_pools=ipam.pools_as_dicts(ranges, cidr.version),
                    dns_nameservers=list(req.dns_nameservers),
                    host_routes=[r.model_dump() for r in req.host_routes],
                    enable_dhcp=req.enable_dhcp,
                    ipam_last=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            return self._subnets(conn, [subnets.c.id == subnet_id])[0]

        return self._write(work)

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        return self._read(lambda conn: convert.subnet(self._subnet_row(conn, ctx, subnet_id)))

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        clauses = [*self._subnet_scope(ctx), *where(subnets, "subnet", filters)]
        return self._read(lambda conn: self._subnets(conn, clauses))

    def update_subnet(
        self, ctx: Context, subnet_id: str, req: SubnetUpdate, *, if_revision: int | None = None
    ) -> Subnet:
        def work(conn: Connection) -> Subnet:
            row = self._subnet_row(conn, ctx, subnet_id, owner=True)
            rules.check_revision("subnet", subnet_id, row.revision_number, if_revision)
            values: dict[str, Any] = {}
            for key in ("name", "description"):
                if getattr(req, key) is not None:
                    values[key] = getattr(req, key)
            if req.dns_nameservers is not None:
                rules.check_dns_nameservers(subnet_id, row.ip_version, req.dns_nameservers)
                values["dns_nameservers"] = list(req.dns_nameservers)
            if req.host_routes is not None:
                values["host_routes"] = [r.model_dump() for r in req.host_routes]
            conn.execute(
                update(subnets)
                .where(subnets.c.id == subnet_id)
                .values(
                    **values,
                    revision_number=subnets.c.revision_number + 1,
                    updated_at=utc_now(),
                )
            )
            return self._subnets(conn, [subnets.c.id == subnet_id])[0]

        return self._write(work)

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        def work(conn: Connection) -> None:
            self._subnet_row(conn, ctx, subnet_id, owner=True)
            used = conn.execute(
                select(func.count())
                .select_from(allocations)
                .where(allocations.c.subnet_id == subnet_id)
            ).scalar_one()
            rules.check_subnet_deletable(subnet_id, used)
            conn.execute(delete(subnets).where(subnets.c.id == subnet_id))

        self._write(work)
