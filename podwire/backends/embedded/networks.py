"""Networks in the embedded backend, and Neutron's one-network-per-segment rule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, text, update

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.errors import Conflict
from podwire.model import Context, Network, NetworkCreate, NetworkUpdate, new_id

from . import convert
from .filters import where
from .schema import allocations, networks, ports, subnets, subports, trunks
from .store import Store, utc_now


class NetworkCalls(Store):
    """create/get/list/update/delete of networks."""

    def _network_scope(self, ctx: Context) -> list[Any]:
        if ctx.is_admin:
            return []
        return [or_(networks.c.project_id == ctx.project_id, networks.c.shared.is_(True))]

    def _networks(self, conn: Connection, clauses: Sequence[Any]) -> list[Network]:
        rows = conn.execute(
            select(networks).where(*clauses).order_by(networks.c.created_at, networks.c.id)
        ).all()
        if not rows:
            return []
        ids = select(networks.c.id).where(*clauses)
        subnet_ids: dict[str, list[str]] = defaultdict(list)
        for sid, nid in conn.execute(
            select(subnets.c.id, subnets.c.network_id)
            .where(subnets.c.network_id.in_(ids))
            .order_by(subnets.c.created_at, subnets.c.id)
        ):
            subnet_ids[nid].append(sid)
        return [convert.network(row, subnet_ids.get(row.id, [])) for row in rows]

    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        project = rules.project_for(ctx, req.project_id, "network")

        def work(conn: Connection) -> Network:
            self._check_segment(conn, req)
            network_id, now = new_id(), utc_now()
            conn.execute(
                insert(networks).values(
                    id=network_id,
                    **rules.network_fields(req, project),
                    status="ACTIVE",
                    created_at=now,
                    updated_at=now,
                )
            )
            return self._networks(conn, [networks.c.id == network_id])[0]

        return self._write(work)

    def _check_segment(self, conn: Connection, req: NetworkCreate) -> None:
        """Neutron's rule: one network per segment (a VLAN on a physical
        network, a VNI of a tunnel type, a flat physical network); two
        networks on one segment would be one L2 domain under two names."""
        kind = req.network_type
        if kind == "vlan" and req.segmentation_id is not None:
            same = [
                networks.c.network_type == "vlan",
                networks.c.segmentation_id == req.segmentation_id,
                networks.c.physical_network.is_(None)
                if req.physical_network is None
                else networks.c.physical_network == req.physical_network,
            ]
            what = f"VLAN {req.segmentation_id} on physical network {req.physical_network}"
            field = "segmentation_id"
        elif kind in ("vxlan", "geneve") and req.segmentation_id is not None:
            same = [
                networks.c.network_type == kind,
                networks.c.segmentation_id == req.segmentation_id,
            ]
            what = f"{kind} id {req.segmentation_id}"
            field = "segmentation_id"
        elif kind == "flat" and req.physical_network is not None:
            same = [
                networks.c.network_type == "flat",
                networks.c.physical_network == req.physical_network,
            ]
            what = f"flat physical network {req.physical_network}"
            field = "physical_network"
        else:
            return
        if self._postgres:
            # no row to lock for a segment not yet taken: serialise its takers
            conn.execute(text("SELECT pg_advisory_xact_lock(7170708)"))
        holder = conn.execute(select(networks.c.id).where(*same)).scalar()
        if holder is not None:
            raise Conflict(
                f"{what} is already used by network {holder}",
                kind="network",
                object_id=holder,
                field=field,
            )

    def get_network(self, ctx: Context, network_id: str) -> Network:
        def work(conn: Connection) -> Network:
            row = self._network_row(conn, ctx, network_id)
            return self._networks(conn, [networks.c.id == row.id])[0]

        return self._read(work)

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        clauses = [*self._network_scope(ctx), *where(networks, "network", filters)]
        return self._read(lambda conn: self._networks(conn, clauses))

    def update_network(
        self, ctx: Context, network_id: str, req: NetworkUpdate, *, if_revision: int | None = None
    ) -> Network:
        def work(conn: Connection) -> Network:
            row = self._network_row(conn, ctx, network_id, owner=True, lock=True)
            rules.check_revision("network", network_id, row.revision_number, if_revision)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            if values.get("shared") is False and row.shared:
                foreign = conn.execute(
                    select(func.count())
                    .select_from(ports)
                    .where(ports.c.network_id == network_id, ports.c.project_id != row.project_id)
                ).scalar_one()
                rules.check_unshare(network_id, foreign)
            conn.execute(
                update(networks)
                .where(networks.c.id == network_id)
                .values(
                    **values,
                    revision_number=networks.c.revision_number + 1,
                    updated_at=utc_now(),
                )
            )
            return self._networks(conn, [networks.c.id == network_id])[0]

        return self._write(work)

    def delete_network(self, ctx: Context, network_id: str) -> None:
        def work(conn: Connection) -> None:
            self._network_row(conn, ctx, network_id, owner=True, lock=True)
            rows = conn.execute(
                select(
                    ports.c.id,
                    ports.c.device_owner,
                    ports.c.device_id,
                    ports.c.tags,
                    trunks.c.id.label("trunk_id"),
                    subports.c.trunk_id.label("subport_of"),
                )
                .outerjoin(trunks, trunks.c.port_id == ports.c.id)
                .outerjoin(subports, subports.c.port_id == ports.c.id)
                .where(ports.c.network_id == network_id)
            ).all()
            # Pooled ports go with the network (as Neutron's own network:dhcp
            # ports do); a trunk's parent or sub-port is in use whatever it says.
            pooled = [
                r.id
                for r in rows
                if r.trunk_id is None
                and r.subport_of is None
                and rules.is_pooled_port(r.device_owner, r.device_id, r.tags or [])
            ]
            rules.check_network_deletable(network_id, len(rows) - len(pooled))
            if pooled:
                conn.execute(delete(allocations).where(allocations.c.port_id.in_(pooled)))
                conn.execute(delete(ports).where(ports.c.id.in_(pooled)))
            conn.execute(delete(subnets).where(subnets.c.network_id == network_id))
            conn.execute(delete(networks).where(networks.c.id == network_id))

        self._write(work)
