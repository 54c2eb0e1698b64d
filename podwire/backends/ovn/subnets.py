"""Subnets as DHCP_Options rows in the OVN northbound database."""

from __future__ import annotations

import ipaddress
from typing import Any

from podwire import ipam
from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.backends.ovn import codec
from podwire.backends.ovn.filters import matches
from podwire.backends.ovn.objects import to_subnet
from podwire.backends.ovn.store import NbStore
from podwire.backends.ovn.tables import (
    DHCP,
    Tables,
    bump_generation,
    find_switch,
    ids_copy,
    pid,
    subnet_rows,
    switches,
    used_addresses,
    utc_now,
    xids,
)
from podwire.model import Context, Subnet, SubnetCreate, SubnetUpdate, new_id


class SubnetCalls(NbStore):
    """create/get/list/update/delete of subnets."""

    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        project = rules.project_for(ctx, req.project_id, "subnet")
        net, gateway, ranges = ipam.subnet_addressing(
            req.cidr, req.gateway_ip, req.allocation_pools
        )
        pools = ipam.as_allocation_pools(ranges, net.version)
        version = net.version
        rules.check_host_routes(req.host_routes, version)

        def work(txn: Any, t: Tables) -> Subnet:
            ls = self._network_row(t, ctx, req.network_id, field="network_id", owner=True)
            bump_generation(ls)
            rules.check_no_overlap(req.cidr, req.network_id, self._subnets_of(t, req.network_id))
            now = utc_now()
            subnet = Subnet(
                id=new_id(),
                name=req.name,
                project_id=project,
                network_id=req.network_id,
                description=req.description,
                ip_version=version,
                cidr=req.cidr,
                gateway_ip=gateway,
                allocation_pools=pools,
                dns_nameservers=list(req.dns_nameservers),
                host_routes=list(req.host_routes),
                enable_dhcp=req.enable_dhcp,
                created_at=now,
                updated_at=now,
            )
            row = txn.insert(t[DHCP])
            row.cidr = subnet.cidr
            row.external_ids = codec.encode(subnet, exclude={"cidr"})
            return subnet

        return self._nb.write(work)

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        return self._nb.read(lambda _, t: to_subnet(self._subnet_row(t, ctx, subnet_id)))

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        def work(_: Any, t: Tables) -> list[Subnet]:
            shared = {
                pid(ls) for ls in switches(t) if xids(ls).get(codec.PREFIX + "shared") == "true"
            }
            out = []
            for row in subnet_rows(t):
                subnet = to_subnet(row)
                visible = rules.owns(ctx, subnet.project_id) or subnet.network_id in shared
                if visible and matches(subnet, "subnet", filters):
                    out.append(subnet)
            return out

        return self._nb.read(work)

    def update_subnet(
        self, ctx: Context, subnet_id: str, req: SubnetUpdate, *, if_revision: int | None = None
    ) -> Subnet:
        def work(txn: Any, t: Tables) -> Subnet:
            row = self._subnet_row(t, ctx, subnet_id, owner=True)
            row.verify("external_ids")
            current = to_subnet(row)
            rules.check_revision("subnet", subnet_id, current.revision_number, if_revision)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            rules.check_dns_nameservers(subnet_id, current.ip_version, req.dns_nameservers or [])
            updated = Subnet.model_validate(
                {
                    **current.model_dump(),
                    **values,
                    "revision_number": current.revision_number + 1,
                    "updated_at": utc_now(),
                }
            )
            ids = ids_copy(row)
            ids.update(codec.encode(updated, exclude={"cidr"}))
            row.external_ids = ids
            return updated

        return self._nb.write(work)

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            row = self._subnet_row(t, ctx, subnet_id, owner=True)
            subnet = to_subnet(row)
            ls = find_switch(t, subnet.network_id)
            if ls is not None:
                bump_generation(ls)
                net = ipaddress.ip_network(subnet.cidr)
                used = [ip for ip in used_addresses(ls) if ipaddress.ip_address(ip) in net]
                rules.check_subnet_deletable(subnet_id, len(used))
            row.delete()

        self._nb.write(work)
