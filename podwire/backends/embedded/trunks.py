"""Trunks and their sub-ports in the embedded backend."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.errors import InvalidInput
from podwire.model import Context, SubPort, Trunk, TrunkCreate, TrunkUpdate, new_id

from . import convert
from .filters import where
from .schema import ports, subports, trunks
from .store import Store, utc_now


class TrunkCalls(Store):
    """create/get/list/update/delete of trunks, add/remove of sub-ports."""

    def _trunks(self, conn: Connection, clauses: Sequence[Any]) -> list[Trunk]:
        rows = conn.execute(
            select(trunks).where(*clauses).order_by(trunks.c.created_at, trunks.c.id)
        ).all()
        if not rows:
            return []
        subs: dict[str, list[SubPort]] = defaultdict(list)
        for sub in conn.execute(
            select(subports)
            .where(subports.c.trunk_id.in_(select(trunks.c.id).where(*clauses)))
            .order_by(subports.c.trunk_id, subports.c.segmentation_id)
        ):
            subs[sub.trunk_id].append(convert.subport(sub))
        return [convert.trunk(row, subs.get(row.id, [])) for row in rows]

    def _trunk_scope(self, ctx: Context) -> list[Any]:
        return [] if ctx.is_admin else [trunks.c.project_id == ctx.project_id]

    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        project = rules.project_for(ctx, req.project_id, "trunk")

        def work(conn: Connection) -> Trunk:
            parent = self._port_row(conn, ctx, req.port_id, field="port_id", lock=True)
            other = conn.execute(
                select(trunks.c.id).where(trunks.c.port_id == req.port_id)
            ).scalar()
            rules.check_trunk_parent(req.port_id, parent.parent_port_id, other)
            trunk_id, now = new_id(), utc_now()
            conn.execute(
                insert(trunks).values(
                    id=trunk_id,
                    project_id=project,
                    name=req.name,
                    description=req.description,
                    port_id=req.port_id,
                    status="ACTIVE",
                    admin_state_up=req.admin_state_up,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._add_subports(conn, ctx, trunk_id, req.port_id, req.sub_ports)
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)

    def _add_subports(
        self,
        conn: Connection,
        ctx: Context,
        trunk_id: str,
        parent_id: str,
        sub_ports: Iterable[SubPort],
    ) -> None:
        sub_ports = list(sub_ports)
        rules.check_new_subports(sub_ports)
        vlans = {
            vlan: port_id
            for vlan, port_id in conn.execute(
                select(subports.c.segmentation_id, subports.c.port_id).where(
                    subports.c.trunk_id == trunk_id
                )
            )
        }
        now = utc_now()
        for sp in sub_ports:
            if not 1 <= sp.segmentation_id <= 4094:
                raise InvalidInput(
                    f"sub_ports: segmentation_id {sp.segmentation_id} is outside 1-4094",
                    kind="trunk",
                    field="sub_ports",
                )
            port = self._port_row(conn, ctx, sp.port_id, field="sub_ports", lock=True)
            parent_of = conn.execute(
                select(trunks.c.id).where(trunks.c.port_id == sp.port_id)
            ).scalar()
            rules.check_subport(
                trunk_id,
                parent_id,
                sp,
                parent_port=port.parent_port_id,
                trunk_of=parent_of,
                vlans=vlans,
            )
            vlans[sp.segmentation_id] = sp.port_id
            conn.execute(
                insert(subports).values(
                    port_id=sp.port_id,
                    trunk_id=trunk_id,
                    segmentation_type=sp.segmentation_type,
                    segmentation_id=sp.segmentation_id,
                )
            )
            conn.execute(
                update(ports)
                .where(ports.c.id == sp.port_id)
                .values(revision_number=ports.c.revision_number + 1, updated_at=now)
            )

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        def work(conn: Connection) -> Trunk:
            self._trunk_row(conn, ctx, trunk_id)
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._read(work)

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        clauses = [*self._trunk_scope(ctx), *where(trunks, "trunk", filters)]
        return self._read(lambda conn: self._trunks(conn, clauses))

    def update_trunk(
        self, ctx: Context, trunk_id: str, req: TrunkUpdate, *, if_revision: int | None = None
    ) -> Trunk:
        def work(conn: Connection) -> Trunk:
            row = self._trunk_row(conn, ctx, trunk_id)
            rules.check_revision("trunk", trunk_id, row.revision_number, if_revision)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            conn.execute(
                update(trunks)
                .where(trunks.c.id == trunk_id)
                .values(
                    **values,
                    revision_number=trunks.c.revision_number + 1,
                    updated_at=utc_now(),
                )
            )
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        def work(conn: Connection) -> None:
            self._trunk_row(conn, ctx, trunk_id)
            conn.execute(delete(subports).where(subports.c.trunk_id == trunk_id))
            conn.execute(delete(trunks).where(trunks.c.id == trunk_id))

        self._write(work)

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        def work(conn: Connection) -> Trunk:
            row = self._trunk_row(conn, ctx, trunk_id)
            self._add_subports(conn, ctx, trunk_id, row.port_id, sub_ports)
            conn.execute(
                update(trunks)
                .where(trunks.c.id == trunk_id)
                .values(revision_number=trunks.c.revision_number + 1, updated_at=utc_now())
            )
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        def work(conn: Connection) -> Trunk:
            self._trunk_row(conn, ctx, trunk_id)
            members = set(
                conn.execute(
                    select(subports.c.port_id).where(subports.c.trunk_id == trunk_id)
                ).scalars()
            )
            rules.check_members(trunk_id, members, port_ids)
            now = utc_now()
            unique_ids = list(dict.fromkeys(port_ids))
            if unique_ids:
                conn.execute(
                    delete(subports).where(
                        subports.c.trunk_id == trunk_id, subports.c.port_id.in_(unique_ids)
                    )
                )
                conn.execute(
                    update(ports)
                    .where(ports.c.id.in_(unique_ids))
                    .values(revision_number=ports.c.revision_number + 1, updated_at=now)
                )
            conn.execute(
                update(trunks)
                .where(trunks.c.id == trunk_id)
                .values(revision_number=trunks.c.revision_number + 1, updated_at=now)
            )
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)
