"""From a backend port to a VIF: the one place that decides which kind of
data path an attachment gets, and fills in that kind's fields.

``choose_vif_kind`` looks at, in order: the network's datapath hint, the
port's vnic_type, the backend. A new kind is one entry in ``_BUILDERS`` plus
a branch in ``choose_vif_kind``; the agent core does not change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from podwire.config import Config
from podwire.datapath.vif import AddressPair, PortSecurity, Route, VethBridge, VethOvs, Vif
from podwire.errors import InvalidInput
from podwire.model import Network, Port, Subnet

# Interface names are at most 15 bytes (IFNAMSIZ - 1).
_IFNAMSIZ = 15
BRIDGE_PREFIX = "pwbr"
HOST_VETH_PREFIX = "pwv"

_DATAPATH_TO_KIND = {
    "bridge": "veth_bridge",
    "ovs": "veth_ovs",
    "macvlan": "macvlan_nested",
    "ipvlan": "ipvlan_nested",
    "vlan": "vlan_nested",
    "sriov": "sriov_vf",
    "vhostuser": "vhostuser",
}
_VNIC_TO_KIND = {
    "direct": "sriov_vf",
    "direct-physical": "sriov_vf",
    "virtio-forwarder": "vhostuser",
}
_BACKEND_DEFAULT_KIND = {"ovn": "veth_ovs"}


@dataclass(frozen=True)
class PortContext:
    """Everything a VIF builder may look at."""

    backend: str
    network: Network
    port: Port
    subnets: list[Subnet]
    config: Config


def _hexid(object_id: str) -> str:
    return object_id.replace("-", "")


def bridge_name(network_id: str) -> str:
    return (BRIDGE_PREFIX + _hexid(network_id))[:_IFNAMSIZ]


def host_veth_name(port_id: str) -> str:
    return (HOST_VETH_PREFIX + _hexid(port_id))[:_IFNAMSIZ]


def choose_vif_kind(backend: str, network: Network, vnic_type: str = "normal") -> str:
    if network.datapath is not None:
        return _DATAPATH_TO_KIND[network.datapath]
    if vnic_type in _VNIC_TO_KIND:
        return _VNIC_TO_KIND[vnic_type]
    return _BACKEND_DEFAULT_KIND.get(backend, "veth_bridge")


def build_vif(ctx: PortContext) -> Vif:
    kind = choose_vif_kind(ctx.backend, ctx.network, ctx.port.vnic_type)
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise InvalidInput(
            f"network {ctx.network.name or ctx.network.id} needs data path kind {kind!r}, "
            "which this agent cannot build yet",
            kind="network",
            object_id=ctx.network.id,
            field="datapath",
        )
    return builder(ctx)


# --- common fields -------------------------------------------------------------


def _subnets_by_id(ctx: PortContext) -> dict[str, Subnet]:
    return {s.id: s for s in ctx.subnets}


def addresses(ctx: PortContext) -> tuple[str, ...]:
    by_id = _subnets_by_id(ctx)
    out = []
    for fip in ctx.port.fixed_ips:
        subnet = by_id.get(fip.subnet_id)
        prefix = ipaddress.ip_network(subnet.cidr).prefixlen if subnet else None
        if prefix is None:
            prefix = 32 if ipaddress.ip_address(fip.ip_address).version == 4 else 128
        out.append(f"{fip.ip_address}/{prefix}")
    return tuple(out)


def routes(ctx: PortContext) -> tuple[Route, ...]:
    """A default route per IP family via the first subnet (of those the port
    has an address on) with a gateway, then every subnet's host_routes."""
    used = {fip.subnet_id for fip in ctx.port.fixed_ips}
    out: list[Route] = []
    families_done: set[int] = set()
    for subnet in ctx.subnets:
        if subnet.id not in used or subnet.gateway_ip is None:
            continue
        if subnet.ip_version in families_done:
            continue
        families_done.add(subnet.ip_version)
        default = "0.0.0.0/0" if subnet.ip_version == 4 else "::/0"
        out.append(Route(destination=default, gateway=subnet.gateway_ip))
    for subnet in ctx.subnets:
        if subnet.id not in used:
            continue
        for hr in subnet.host_routes:
            out.append(Route(destination=hr.destination, gateway=hr.nexthop))
    return tuple(out)


def dns_nameservers(ctx: PortContext) -> tuple[str, ...]:
    used = {fip.subnet_id for fip in ctx.port.fixed_ips}
    seen: list[str] = []
    for subnet in ctx.subnets:
        if subnet.id in used:
            for ns in subnet.dns_nameservers:
                if ns not in seen:
                    seen.append(ns)
    return tuple(seen)


def port_security(ctx: PortContext) -> PortSecurity:
    port = ctx.port
    allowed = [AddressPair(ip=fip.ip_address, mac=port.mac_address) for fip in port.fixed_ips]
    allowed += [
        AddressPair(ip=pair.ip_address, mac=pair.mac_address or port.mac_address)
        for pair in port.allowed_address_pairs
    ]
    return PortSecurity(enabled=port.port_security_enabled, allowed=tuple(allowed))


def bridge_addresses(ctx: PortContext) -> tuple[str, ...]:
    """Gateways with their prefix, for the subnets the port is on, so the host
    side of the bridge answers on the gateway address (nothing is routed)."""
    used = {fip.subnet_id for fip in ctx.port.fixed_ips}
    out = []
    for subnet in ctx.subnets:
        if subnet.id in used and subnet.gateway_ip is not None:
            prefix = ipaddress.ip_network(subnet.cidr).prefixlen
            out.append(f"{subnet.gateway_ip}/{prefix}")
    return tuple(out)


def _common(ctx: PortContext) -> dict[str, object]:
    return {
        "port_id": ctx.port.id,
        "network_id": ctx.network.id,
        "mac": ctx.port.mac_address,
        "addresses": addresses(ctx),
        "routes": routes(ctx),
        "mtu": ctx.network.mtu,
        "dns_nameservers": dns_nameservers(ctx),
        "port_security": port_security(ctx),
    }


# --- one builder per kind -----------------------------------------------------------


def _veth_bridge(ctx: PortContext) -> Vif:
    return VethBridge(
        **_common(ctx),
        bridge=bridge_name(ctx.network.id),
        host_ifname=host_veth_name(ctx.port.id),
        bridge_addresses=bridge_addresses(ctx),
    )


def _veth_ovs(ctx: PortContext) -> Vif:
    # OVN names a Logical_Switch_Port after the port id; the OVN backend may
    # refine this (it owns the mapping), here is the one place to do it.
    return VethOvs(
        **_common(ctx),
        bridge=ctx.config.ovn.integration_bridge,
        host_ifname=host_veth_name(ctx.port.id),
        iface_id=ctx.port.id,
        bind_timeout=ctx.config.ovn.bind_timeout,
    )


_BUILDERS: dict[str, Callable[[PortContext], Vif]] = {
    "veth_bridge": _veth_bridge,
    "veth_ovs": _veth_ovs,
}
