"""The Backend contract: where networks, subnets, ports and trunks live.

Every call takes the caller's ``Context``. A backend never lets a non-admin
read or change another project's objects; shared networks are readable (and
may get ports) from every project. Objects of another project are reported as
NotFound, not Forbidden, so ids do not leak (Neutron does the same).

Typed errors only (podwire.errors): NotFound, Conflict, Exhausted, Forbidden,
InvalidInput, Unavailable. IPAM lives behind this contract.

Every object carries Neutron's ``revision_number``, bumped by each change of
it; ``update_*(..., if_revision=N)`` applies only while the object is still
at revision N and raises PreconditionFailed (HTTP 412) otherwise.

Filters follow Neutron's list semantics: ``{field: [value, ...]}``, values of
one field OR-ed, fields AND-ed, values compared as strings. Besides plain
fields, ports accept ``fixed_ips.ip_address`` and ``fixed_ips.subnet_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from podwire.errors import NotFound
from podwire.model import (
    Context,
    Network,
    NetworkCreate,
    NetworkUpdate,
    Port,
    PortCreate,
    PortUpdate,
    Subnet,
    SubnetCreate,
    SubnetUpdate,
    SubPort,
    Trunk,
    TrunkCreate,
    TrunkUpdate,
)

Filters = Mapping[str, Sequence[str]]


@runtime_checkable
class Backend(Protocol):
    #: registry name: "embedded", "ovn", "remote", "neutron"
    name: str
    #: capabilities the agent asks instead of naming backends:
    #: the backend sets a port's status itself from the data plane (OVN's
    #: ovn-controller binding), so the agent never marks ports ACTIVE;
    derives_port_status: bool
    #: the binding.vif_type the backend itself answers for a port bound to a
    #: host (OVN: "veth_ovs"), so the agent writes only binding.host_id and
    #: decides the kind from the answer; None: the agent writes the kind it
    #: chose.
    bound_vif_type: str | None

    # networks
    def create_network(self, ctx: Context, req: NetworkCreate) -> Network: ...
    def get_network(self, ctx: Context, network_id: str) -> Network: ...
    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]: ...
    def update_network(
        self, ctx: Context, network_id: str, req: NetworkUpdate, *, if_revision: int | None = None
    ) -> Network: ...
    def delete_network(self, ctx: Context, network_id: str) -> None: ...

    # subnets
    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet: ...
    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet: ...
    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]: ...
    def update_subnet(
        self, ctx: Context, subnet_id: str, req: SubnetUpdate, *, if_revision: int | None = None
    ) -> Subnet: ...
    def delete_subnet(self, ctx: Context, subnet_id: str) -> None: ...

    # ports
    def create_port(self, ctx: Context, req: PortCreate) -> Port: ...
    def get_port(self, ctx: Context, port_id: str) -> Port: ...
    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]: ...
    def update_port(
        self, ctx: Context, port_id: str, req: PortUpdate, *, if_revision: int | None = None
    ) -> Port: ...
    def delete_port(self, ctx: Context, port_id: str) -> None: ...
    def set_ports_status(self, ctx: Context, port_ids: Sequence[str], status: str) -> None:
        """Set the status of every port named that the caller may change,
        bumping its revision; ports gone or out of reach are skipped, not an
        error (the agent's ACTIVE marks: a port may be deleted meanwhile)."""
        ...

    # trunks
    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk: ...
    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk: ...
    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]: ...
    def update_trunk(
        self, ctx: Context, trunk_id: str, req: TrunkUpdate, *, if_revision: int | None = None
    ) -> Trunk: ...
    def delete_trunk(self, ctx: Context, trunk_id: str) -> None: ...
    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk: ...
    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk: ...

    def close(self) -> None: ...


def set_status_one_by_one(
    backend: Backend, ctx: Context, port_ids: Sequence[str], status: str
) -> None:
    """``set_ports_status`` for a backend with no cheaper way: one update each."""
    for port_id in port_ids:
        with contextlib.suppress(NotFound):
            backend.update_port(ctx, port_id, PortUpdate(status=status))
