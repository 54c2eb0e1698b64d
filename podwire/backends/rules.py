"""Business rules shared by the storage backends (embedded, OVN).

Each rule is a pure function of plain values: the backend looks up the facts
its own way (SQL rows, northbound rows) and passes them in; the rule raises
the podwire.errors the contract promises, with one wording for every backend.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from ..errors import Conflict, Exhausted, Forbidden, InvalidInput, NotFound, PreconditionFailed
from ..model import (
    AllowedAddressPair,
    Context,
    FixedIpRequest,
    HostRoute,
    NetworkCreate,
    SubPort,
)
from ..model import check_unique_subports as _check_unique_subports


class SubnetLike(Protocol):
    """What planning needs of a subnet: a model Subnet or a database row."""

    @property
    def id(self) -> str: ...

    @property
    def cidr(self) -> str: ...


S = TypeVar("S", bound=SubnetLike)


# --- projects -------------------------------------------------------------------


def project_for(ctx: Context, requested: str | None, kind: str) -> str:
    """The project a new object goes to; only an admin may name another one."""
    if requested is None or requested == ctx.project_id:
        return ctx.project_id
    if not ctx.is_admin:
        raise Forbidden(
            f"only an admin may create a {kind} in another project ({requested})",
            kind=kind,
            field="project_id",
        )
    return requested


def owns(ctx: Context, project_id: str | None) -> bool:
    return ctx.is_admin or project_id == ctx.project_id


# --- who sees what ----------------------------------------------------------------
# Another project's object is "not found", never "forbidden", so that ids do
# not leak; a shared network and its subnets are visible but not changeable.


def check_network_access(
    ctx: Context,
    network_id: str,
    project_id: str | None,
    shared: bool,
    *,
    found: bool = True,
    owner: bool = False,
    field: str | None = None,
) -> None:
    if not found or not (owns(ctx, project_id) or shared):
        raise NotFound(
            f"network {network_id} not found", kind="network", object_id=network_id, field=field
        )
    if owner and not owns(ctx, project_id):
        raise Forbidden(
            f"network {network_id} is shared by another project; only its owner may change it",
            kind="network",
            object_id=network_id,
            field=field,
        )


def check_subnet_access(
    ctx: Context,
    subnet_id: str,
    project_id: str | None,
    network_shared: Callable[[], bool],
    *,
    found: bool = True,
    owner: bool = False,
) -> None:
    """``network_shared`` is asked only for another project's subnet."""
    if found and owns(ctx, project_id):
        return
    if found and network_shared():
        if owner:
            raise Forbidden(
                f"subnet {subnet_id} belongs to a network shared by another project;"
                " only its owner may change it",
                kind="subnet",
                object_id=subnet_id,
            )
        return
    raise NotFound(f"subnet {subnet_id} not found", kind="subnet", object_id=subnet_id)


def check_visible(
    ctx: Context,
    kind: str,
    object_id: str,
    project_id: str | None,
    *,
    found: bool = True,
    field: str | None = None,
) -> None:
    """A port or trunk: visible to its project and to admins only."""
    if not found or not owns(ctx, project_id):
        raise NotFound(f"{kind} {object_id} not found", kind=kind, object_id=object_id, field=field)


# --- networks -------------------------------------------------------------------


def network_fields(req: NetworkCreate, project_id: str) -> dict[str, Any]:
    """A new network's settings from the request, defaults filled in."""
    return {
        "project_id": project_id,
        "name": req.name,
        "description": req.description,
        "mtu": req.mtu if req.mtu is not None else 1500,
        "network_type": req.network_type or "local",
        "segmentation_id": req.segmentation_id,
        "physical_network": req.physical_network,
        "port_security_enabled": req.port_security_enabled,
        "shared": req.shared,
        "admin_state_up": req.admin_state_up,
        "datapath": req.datapath,
    }


def check_unshare(network_id: str, foreign_ports: int) -> None:
    """A network stops being shared only when no other project has a port on it."""
    if foreign_ports:
        raise Conflict(
            f"network {network_id} has {foreign_ports} port(s) of other projects;"
            " it cannot stop being shared",
            kind="network",
            object_id=network_id,
            field="shared",
        )


# A pooled port, pre-created by an agent's port pool and not handed out (the
# mark of podwire/agent/pools/marks.py; the backends import no agent code, so
# the two strings are repeated here and a unit test keeps them equal).
POOL_DEVICE_OWNER = "podwire:pool"
POOL_PURPOSE_TAG = "podwire:purpose=pool"


def is_pooled_port(device_owner: str, device_id: str, tags: Collection[str]) -> bool:
    """A port a network delete removes with the network, as Neutron removes
    its own network:dhcp ports: pool-marked, and attached to nothing (an ADD
    that takes it sets ``device_id``; from then on it holds the network).
    Every host's agent finds its entry's port gone at its next take or sweep."""
    return device_owner == POOL_DEVICE_OWNER and POOL_PURPOSE_TAG in tags and not device_id


def check_network_deletable(network_id: str, ports: int) -> None:
    if ports:
        raise Conflict(
            f"network {network_id} still has {ports} port(s); delete them first",
            kind="network",
            object_id=network_id,
        )


# --- subnets --------------------------------------------------------------------


def check_host_routes(routes: Iterable[HostRoute], version: int) -> None:
    for route in routes:
        if (
            ipaddress.ip_network(route.destination).version != version
            or ipaddress.ip_address(route.nexthop).version != version
        ):
            raise InvalidInput(
                f"host route {route.destination} via {route.nexthop} is not IPv{version}",
                kind="subnet",
                field="host_routes",
            )


def check_no_overlap(cidr: str, network_id: str, others: Iterable[SubnetLike]) -> None:
    """A new subnet's cidr may not overlap another subnet of its network."""
    net = ipaddress.ip_network(cidr)
    for other in others:
        if net.overlaps(ipaddress.ip_network(other.cidr)):
            raise Conflict(
                f"cidr {cidr} overlaps cidr {other.cidr} of subnet {other.id}"
                f" on network {network_id}",
                kind="subnet",
                object_id=other.id,
                field="cidr",
            )


def check_dns_nameservers(subnet_id: str, version: int, servers: Iterable[str]) -> None:
    for dns in servers:
        if ipaddress.ip_address(dns).version != version:
            raise InvalidInput(
                f"dns_nameservers entry {dns} is not IPv{version}",
                kind="subnet",
                object_id=subnet_id,
                field="dns_nameservers",
            )


def check_subnet_deletable(subnet_id: str, allocated: int) -> None:
    if allocated:
        raise Conflict(
            f"subnet {subnet_id} still has {allocated} allocated address(es);"
            " delete the ports first",
            kind="subnet",
            object_id=subnet_id,
        )


# --- ports ----------------------------------------------------------------------


def plan_fixed_ips(
    network_id: str, subnets: Sequence[S], requests: list[FixedIpRequest] | None
) -> list[tuple[S, str | None]]:
    """Which subnet each requested address comes from (None: any free one).
    ``subnets`` is the network's subnets, oldest first; an address without a
    subnet goes to the first one holding it. Addresses are returned as given."""
    if requests is None:
        return [(s, None) for s in subnets]
    by_id = {s.id: s for s in subnets}
    plan: list[tuple[S, str | None]] = []
    for i, request in enumerate(requests):
        address = ipaddress.ip_address(request.ip_address) if request.ip_address else None
        if request.subnet_id is not None:
            subnet = by_id.get(request.subnet_id)
            if subnet is None:
                raise InvalidInput(
                    f"fixed_ips[{i}]: subnet {request.subnet_id} is not a subnet of"
                    f" network {network_id}",
                    kind="port",
                    field="fixed_ips",
                )
            if address is not None and address not in ipaddress.ip_network(subnet.cidr):
                raise InvalidInput(
                    f"fixed_ips[{i}]: ip_address {request.ip_address} is outside subnet"
                    f" {subnet.id} ({subnet.cidr})",
                    kind="port",
                    field="fixed_ips",
                )
        else:
            found = [s for s in subnets if address in ipaddress.ip_network(s.cidr)]
            if not found:
                raise InvalidInput(
                    f"fixed_ips[{i}]: ip_address {request.ip_address} is on no subnet of"
                    f" network {network_id}",
                    kind="port",
                    field="fixed_ips",
                )
            subnet = found[0]
        plan.append((subnet, request.ip_address))
    return plan


def requested_mac(network_id: str, requested: str, used: bool) -> str:
    """A MAC the caller named: taken as is unless the network uses it."""
    if used:
        raise Conflict(
            f"mac_address {requested} is already used on network {network_id}",
            kind="port",
            field="mac_address",
        )
    return requested


def no_free_mac(network_id: str, prefix: str) -> Exhausted:
    return Exhausted(
        f"no free MAC address with prefix {prefix} on network {network_id}",
        kind="network",
        object_id=network_id,
        field="mac_address",
    )


def check_pairs(pairs: Iterable[AllowedAddressPair]) -> None:
    """allowed_address_pairs may not list one (ip, mac) twice."""
    seen: set[tuple[str, str | None]] = set()
    for pair in pairs:
        key = (pair.ip_address, pair.mac_address)
        if key in seen:
            raise InvalidInput(
                f"allowed_address_pairs: {pair.ip_address}"
                f"{' ' + pair.mac_address if pair.mac_address else ''} is listed twice",
                kind="port",
                field="allowed_address_pairs",
            )
        seen.add(key)


def check_port_deletable(port_id: str, trunk_of: str | None, parent_port: str | None) -> None:
    """A trunk's parent or sub-port is released from the trunk first.
    ``trunk_of``: the trunk this port is the parent of; ``parent_port``: the
    parent port of the trunk this port is a sub-port of."""
    if trunk_of is not None:
        raise Conflict(
            f"port {port_id} is the parent of trunk {trunk_of}; delete the trunk first",
            kind="port",
            object_id=port_id,
        )
    if parent_port is not None:
        raise Conflict(
            f"port {port_id} is a sub-port of the trunk of port {parent_port};"
            " remove it from the trunk first",
            kind="port",
            object_id=port_id,
        )


# --- trunks ---------------------------------------------------------------------


def check_trunk_parent(port_id: str, parent_port: str | None, trunk_of: str | None) -> None:
    """A trunk's parent may be neither a sub-port nor another trunk's parent."""
    if parent_port is not None:
        raise Conflict(
            f"port {port_id} is a sub-port of another trunk; it cannot be a parent",
            kind="trunk",
            field="port_id",
        )
    if trunk_of is not None:
        raise Conflict(
            f"port {port_id} is already the parent of trunk {trunk_of}",
            kind="trunk",
            object_id=trunk_of,
            field="port_id",
        )


def check_new_subports(sub_ports: Sequence[SubPort]) -> None:
    """The request itself names each port and each VLAN once."""
    try:
        _check_unique_subports(list(sub_ports))
    except ValueError as exc:
        raise InvalidInput(f"sub_ports: {exc}", kind="trunk", field="sub_ports") from None


def check_subport(
    trunk_id: str,
    trunk_parent: str,
    sp: SubPort,
    *,
    parent_port: str | None,
    trunk_of: str | None,
    vlans: Mapping[int, str],
) -> None:
    """One sub-port to add. ``parent_port``: the parent port of the trunk the
    port is already a sub-port of; ``trunk_of``: the trunk the port is the
    parent of; ``vlans``: segmentation_id -> port id already on the trunk."""
    if sp.port_id == trunk_parent:
        raise Conflict(
            f"sub_ports: port {sp.port_id} is the trunk's parent port",
            kind="trunk",
            object_id=trunk_id,
            field="sub_ports",
        )
    if parent_port is not None:
        raise Conflict(
            f"sub_ports: port {sp.port_id} is already a sub-port"
            f" (of the trunk of port {parent_port})",
            kind="trunk",
            object_id=trunk_id,
            field="sub_ports",
        )
    if trunk_of is not None:
        raise Conflict(
            f"sub_ports: port {sp.port_id} is the parent of trunk {trunk_of}",
            kind="trunk",
            object_id=trunk_id,
            field="sub_ports",
        )
    if sp.segmentation_id in vlans:
        raise Conflict(
            f"sub_ports: segmentation_id {sp.segmentation_id} is already used on trunk"
            f" {trunk_id} by port {vlans[sp.segmentation_id]}",
            kind="trunk",
            object_id=trunk_id,
            field="sub_ports",
        )


def check_members(trunk_id: str, members: Collection[str], port_ids: Iterable[str]) -> None:
    """Only the trunk's sub-ports can be removed from it."""
    for port_id in port_ids:
        if port_id not in members:
            raise NotFound(
                f"sub_ports: port {port_id} is not a sub-port of trunk {trunk_id}",
                kind="trunk",
                object_id=trunk_id,
                field="sub_ports",
            )


def check_revision(kind: str, object_id: str, current: int, expected: int | None) -> None:
    """Neutron's If-Match: revision_number=N: the change applies only while
    the object is still at revision N."""
    if expected is not None and current != expected:
        raise PreconditionFailed(
            f"{kind} {object_id} is at revision_number {current}, not {expected}:"
            " it changed since it was read",
            kind=kind,
            object_id=object_id,
            field="revision_number",
        )
