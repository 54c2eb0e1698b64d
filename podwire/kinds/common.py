"""VIF fields every kind fills the same way, from a BuildContext: addresses
with their prefix, routes, DNS, port security, MTU; and host names that
derive from ids (short enough for IFNAMSIZ).

Only the container's default-route owner gets default routes and DNS; the
others get their subnets' host routes (on-link routes come with the
addresses' prefixes)."""

from __future__ import annotations

import ipaddress

from podwire.datapath.vif import AddressPair, PortSecurity, Route
from podwire.kinds.base import BuildContext
from podwire.model import Subnet

# Interface names are at most 15 bytes (IFNAMSIZ - 1).
IFNAMSIZ = 15


def hexid(object_id: str) -> str:
    return object_id.replace("-", "")


def short_name(prefix: str, object_id: str) -> str:
    """``prefix`` + the id's hex digits, cut to an interface name's size.
    Used when the VIF is built; undo reads the name from the record."""
    return (prefix + hexid(object_id))[:IFNAMSIZ]


def _used_subnets(ctx: BuildContext) -> list[Subnet]:
    used = {fip.subnet_id for fip in ctx.port.fixed_ips}
    return [s for s in ctx.subnets if s.id in used]


def addresses(ctx: BuildContext) -> tuple[str, ...]:
    by_id = {s.id: s for s in ctx.subnets}
    out = []
    for fip in ctx.port.fixed_ips:
        subnet = by_id.get(fip.subnet_id)
        prefix = ipaddress.ip_network(subnet.cidr).prefixlen if subnet else None
        if prefix is None:
            prefix = 32 if ipaddress.ip_address(fip.ip_address).version == 4 else 128
        out.append(f"{fip.ip_address}/{prefix}")
    return tuple(out)


def routes(ctx: BuildContext) -> tuple[Route, ...]:
    """For the default-route owner, a default route per IP family via the
    first subnet (of those the port has an address on) with a gateway; then,
    for everyone, every such subnet's host_routes."""
    out: list[Route] = []
    if ctx.default_route:
        families_done: set[int] = set()
        for subnet in _used_subnets(ctx):
            if subnet.gateway_ip is None or subnet.ip_version in families_done:
                continue
            families_done.add(subnet.ip_version)
            default = "0.0.0.0/0" if subnet.ip_version == 4 else "::/0"
            out.append(Route(destination=default, gateway=subnet.gateway_ip))
    for subnet in _used_subnets(ctx):
        for hr in subnet.host_routes:
            out.append(Route(destination=hr.destination, gateway=hr.nexthop))
    return tuple(out)


def dns_nameservers(ctx: BuildContext) -> tuple[str, ...]:
    if not ctx.default_route:
        return ()
    seen: list[str] = []
    for subnet in _used_subnets(ctx):
        for ns in subnet.dns_nameservers:
            if ns not in seen:
                seen.append(ns)
    return tuple(seen)


def port_security(ctx: BuildContext) -> PortSecurity:
    port = ctx.port
    allowed = [AddressPair(ip=fip.ip_address, mac=port.mac_address) for fip in port.fixed_ips]
    allowed += [
        AddressPair(ip=pair.ip_address, mac=pair.mac_address or port.mac_address)
        for pair in port.allowed_address_pairs
    ]
    return PortSecurity(enabled=port.port_security_enabled, allowed=tuple(allowed))


def gateway_addresses(ctx: BuildContext) -> tuple[str, ...]:
    """Gateways with their prefix, for the subnets the port is on."""
    out = []
    for subnet in _used_subnets(ctx):
        if subnet.gateway_ip is not None:
            prefix = ipaddress.ip_network(subnet.cidr).prefixlen
            out.append(f"{subnet.gateway_ip}/{prefix}")
    return tuple(out)


def common_fields(ctx: BuildContext) -> dict[str, object]:
    """The VifBase fields, for a kind's builder to pass on."""
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
