"""Networks as Logical_Switches in the OVN northbound database."""

from __future__ import annotations

from typing import Any

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.backends.ovn import codec
from podwire.backends.ovn.filters import matches
from podwire.backends.ovn.objects import to_network
from podwire.backends.ovn.store import NbStore
from podwire.backends.ovn.tables import (
    LS,
    Tables,
    created_order,
    ids_copy,
    pid,
    subnet_rows,
    switches,
    utc_now,
    xids,
)
from podwire.model import Context, Network, NetworkCreate, NetworkUpdate, new_id


class NetworkCalls(NbStore):
    """create/get/list/update/delete of networks."""

    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        project = rules.project_for(ctx, req.project_id, "network")
        now = utc_now()
        net = Network(
            id=new_id(),
            **rules.network_fields(req, project),
            created_at=now,
            updated_at=now,
        )

        def work(txn: Any, t: Tables) -> Network:
            ls = txn.insert(t[LS])
            ls.name = codec.switch_name(net.id)
            ls.external_ids = codec.encode(net, exclude={"subnets"})
            return net

        return self._nb.write(work)

    def get_network(self, ctx: Context, network_id: str) -> Network:
        def work(_: Any, t: Tables) -> Network:
            ls = self._network_row(t, ctx, network_id)
            return to_network(ls, [pid(r) for r in subnet_rows(t, network_id)])

        return self._nb.read(work)

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        def work(_: Any, t: Tables) -> list[Network]:
            subnet_ids: dict[str, list[str]] = {}
            for row in subnet_rows(t):
                nid = xids(row).get(codec.PREFIX + "network_id", "")
                subnet_ids.setdefault(nid, []).append(pid(row))
            out = []
            for ls in switches(t):
                net = to_network(ls, subnet_ids.get(pid(ls), []))
                visible = rules.owns(ctx, net.project_id) or net.shared
                if visible and matches(net, "network", filters):
                    out.append(net)
            return sorted(out, key=created_order)

        return self._nb.read(work)

    def update_network(
        self, ctx: Context, network_id: str, req: NetworkUpdate, *, if_revision: int | None = None
    ) -> Network:
        def work(txn: Any, t: Tables) -> Network:
            ls = self._network_row(t, ctx, network_id, owner=True)
            ls.verify("external_ids")
            current = to_network(ls, [pid(r) for r in subnet_rows(t, network_id)])
            rules.check_revision("network", network_id, current.revision_number, if_revision)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            if values.get("shared") is False and current.shared:
                foreign = [
                    p
                    for p in ls.ports
                    if xids(p).get(codec.PREFIX + "project_id") != current.project_id
                ]
                rules.check_unshare(network_id, len(foreign))
            updated = current.model_copy(
                update={
                    **values,
                    "revision_number": current.revision_number + 1,
                    "updated_at": utc_now(),
                }
            )
            updated = Network.model_validate(updated.model_dump())
            ids = ids_copy(ls)
            ids.update(codec.encode(updated, exclude={"subnets"}))
            ls.external_ids = ids
            return updated

        return self._nb.write(work)

    def delete_network(self, ctx: Context, network_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            ls = self._network_row(t, ctx, network_id, owner=True)
            ls.verify("ports")
            rules.check_network_deletable(network_id, len(ls.ports))
            for row in subnet_rows(t, network_id):
                row.delete()
            ls.delete()

        self._nb.write(work)
