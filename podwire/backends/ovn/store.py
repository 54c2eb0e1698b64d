"""The OVN backend's connection and the scoped lookups every call starts with:
another project's object is NotFound, as in the embedded backend."""

from __future__ import annotations

import json

from podwire.backends import rules
from podwire.backends.ovn import codec
from podwire.backends.ovn.connection import NbConnection, SslFiles
from podwire.backends.ovn.objects import to_subnet
from podwire.backends.ovn.tables import (
    Row,
    Tables,
    find_port,
    find_subnet,
    find_switch,
    find_trunk_parent,
    ids_copy,
    subnet_rows,
    xids,
)
from podwire.config import DEFAULT_MAC_PREFIX
from podwire.model import Context, Subnet


class NbStore:
    """The northbound connection and project-scoped row lookups."""

    def __init__(
        self,
        nb_remotes: list[str],
        timeout: float = 10.0,
        *,
        mac_prefix: str = DEFAULT_MAC_PREFIX,
        ssl: SslFiles | None = None,
    ) -> None:
        self._nb = NbConnection(list(nb_remotes), timeout, ssl)
        self._mac_prefix = mac_prefix.lower()

    def close(self) -> None:
        self._nb.close()

    # --- scoped lookups (inside a transaction or a read) -------------------------

    def _network_row(
        self,
        t: Tables,
        ctx: Context,
        network_id: str,
        *,
        field: str | None = None,
        owner: bool = False,
    ) -> Row:
        ls = find_switch(t, network_id)
        ids = ids_copy(ls) if ls is not None else {}
        shared = ids.get(codec.PREFIX + "shared") == "true"
        project = ids.get(codec.PREFIX + "project_id")
        rules.check_network_access(
            ctx, network_id, project, shared, found=ls is not None, owner=owner, field=field
        )
        assert ls is not None
        return ls

    def _subnet_row(self, t: Tables, ctx: Context, subnet_id: str, *, owner: bool = False) -> Row:
        row = find_subnet(t, subnet_id)
        ids = xids(row) if row is not None else {}

        def network_shared() -> bool:
            ls = find_switch(t, ids.get(codec.PREFIX + "network_id", ""))
            return ls is not None and xids(ls).get(codec.PREFIX + "shared") == "true"

        rules.check_subnet_access(
            ctx,
            subnet_id,
            ids.get(codec.PREFIX + "project_id"),
            network_shared,
            found=row is not None,
            owner=owner,
        )
        assert row is not None
        return row

    def _port_row(
        self, t: Tables, ctx: Context, port_id: str, *, field: str | None = None, kind: str = "port"
    ) -> Row:
        row = find_port(t, port_id)
        project = xids(row).get(codec.PREFIX + "project_id") if row is not None else None
        rules.check_visible(ctx, kind, port_id, project, found=row is not None, field=field)
        assert row is not None
        return row

    def _trunk_parent(self, t: Tables, ctx: Context, trunk_id: str) -> Row:
        parent = find_trunk_parent(t, trunk_id)
        project = (
            json.loads(xids(parent)[codec.TRUNK_KEY]).get("project_id")
            if parent is not None
            else None
        )
        rules.check_visible(ctx, "trunk", trunk_id, project, found=parent is not None)
        assert parent is not None
        return parent

    @staticmethod
    def _subnets_of(t: Tables, network_id: str) -> list[Subnet]:
        return [to_subnet(r) for r in subnet_rows(t, network_id)]
