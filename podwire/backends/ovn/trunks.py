"""Trunks in OVN's containers-in-VMs model: the trunk lives in the parent
port's external_ids, each sub-port is a Logical_Switch_Port with parent_name
and tag."""

from __future__ import annotations

from typing import Any

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.backends.ovn import codec
from podwire.backends.ovn.filters import matches
from podwire.backends.ovn.objects import to_trunk, trunk_json
from podwire.backends.ovn.store import NbStore
from podwire.backends.ovn.tables import (
    Row,
    Tables,
    created_order,
    name_of,
    optional,
    port_rows,
    trunk_id_of_parent,
    utc_now,
    xids,
)
from podwire.model import Context, SubPort, Trunk, TrunkCreate, TrunkUpdate, new_id


class TrunkCalls(NbStore):
    """create/get/list/update/delete of trunks, add/remove of sub-ports."""

    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        project = rules.project_for(ctx, req.project_id, "trunk")

        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._port_row(t, ctx, req.port_id, field="port_id")
            parent.verify("external_ids")
            parent.verify("parent_name")
            rules.check_trunk_parent(
                req.port_id, optional(parent.parent_name), trunk_id_of_parent(parent)
            )
            now = utc_now()
            trunk = Trunk(
                id=new_id(),
                name=req.name,
                project_id=project,
                description=req.description,
                port_id=req.port_id,
                admin_state_up=req.admin_state_up,
                created_at=now,
                updated_at=now,
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, trunk_json(trunk))
            self._add_subports(t, ctx, trunk.id, parent, [], req.sub_ports)
            return trunk.model_copy(
                update={"sub_ports": sorted(req.sub_ports, key=lambda s: s.segmentation_id)}
            )

        return self._nb.write(work)

    def _add_subports(
        self,
        t: Tables,
        ctx: Context,
        trunk_id: str,
        parent: Row,
        existing: list[SubPort],
        sub_ports: list[SubPort],
    ) -> None:
        rules.check_new_subports(sub_ports)
        vlans = {sp.segmentation_id: sp.port_id for sp in existing}
        for sp in sub_ports:
            lsp = self._port_row(t, ctx, sp.port_id, field="sub_ports")
            lsp.verify("parent_name")
            lsp.verify("external_ids")
            rules.check_subport(
                trunk_id,
                name_of(parent),
                sp,
                parent_port=optional(lsp.parent_name),
                trunk_of=trunk_id_of_parent(lsp),
                vlans=vlans,
            )
            vlans[sp.segmentation_id] = sp.port_id
            # OVN's containers-in-VMs model: parent_name + tag. tag_request is
            # what northd honours; tag is written too so the row is complete
            # before northd runs (northd keeps tag == tag_request).
            lsp.parent_name = [name_of(parent)]
            lsp.tag_request = [sp.segmentation_id]
            lsp.tag = [sp.segmentation_id]
            lsp.setkey("external_ids", codec.TRUNK_ID_KEY, trunk_id)
            codec.bump_revision(lsp)

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        def work(_: Any, t: Tables) -> Trunk:
            return to_trunk(self._trunk_parent(t, ctx, trunk_id), port_rows(t))

        return self._nb.read(work)

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        def work(_: Any, t: Tables) -> list[Trunk]:
            ports = port_rows(t)
            out = []
            for row in ports:
                if codec.TRUNK_KEY not in xids(row):
                    continue
                trunk = to_trunk(row, ports)
                if rules.owns(ctx, trunk.project_id) and matches(trunk, "trunk", filters):
                    out.append(trunk)
            return sorted(out, key=created_order)

        return self._nb.read(work)

    def update_trunk(
        self, ctx: Context, trunk_id: str, req: TrunkUpdate, *, if_revision: int | None = None
    ) -> Trunk:
        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            current = to_trunk(parent, port_rows(t))
            rules.check_revision("trunk", trunk_id, current.revision_number, if_revision)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            updated = Trunk.model_validate(
                {
                    **current.model_dump(),
                    **values,
                    "revision_number": current.revision_number + 1,
                    "updated_at": utc_now(),
                }
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, trunk_json(updated))
            return updated

        return self._nb.write(work)

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            for lsp in port_rows(t):
                if xids(lsp).get(codec.TRUNK_ID_KEY) == trunk_id:
                    _clear_subport(lsp)
            parent.delkey("external_ids", codec.TRUNK_KEY)

        self._nb.write(work)

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            current = to_trunk(parent, port_rows(t))
            self._add_subports(t, ctx, trunk_id, parent, current.sub_ports, sub_ports)
            updated = current.model_copy(
                update={
                    "sub_ports": sorted(
                        [*current.sub_ports, *sub_ports], key=lambda s: s.segmentation_id
                    ),
                    "revision_number": current.revision_number + 1,
                    "updated_at": utc_now(),
                }
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, trunk_json(updated))
            return updated

        return self._nb.write(work)

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            current = to_trunk(parent, port_rows(t))
            members = {sp.port_id for sp in current.sub_ports}
            rules.check_members(trunk_id, members, port_ids)
            gone = set(port_ids)
            for lsp in port_rows(t):
                if name_of(lsp) in gone:
                    lsp.verify("parent_name")
                    _clear_subport(lsp)
            updated = current.model_copy(
                update={
                    "sub_ports": [sp for sp in current.sub_ports if sp.port_id not in gone],
                    "revision_number": current.revision_number + 1,
                    "updated_at": utc_now(),
                }
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, trunk_json(updated))
            return updated

        return self._nb.write(work)


def _clear_subport(lsp: Row) -> None:
    lsp.parent_name = []
    lsp.tag_request = []
    lsp.tag = []
    lsp.delkey("external_ids", codec.TRUNK_ID_KEY)
    codec.bump_revision(lsp)
