"""Address arithmetic of the Docker IPAM door: pure functions, no state.

Docker's pools, sub-pools (--ip-range), gateways and endpoint addresses
checked against CIDRs, with errors naming Docker's field."""

from __future__ import annotations

import ipaddress
from typing import Any

from podwire.errors import InvalidInput
from podwire.model import AllocationPool, Subnet

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_cidr(text: str, field_name: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidInput(
            f"{field_name} {text!r} is not a CIDR: {exc}", field=field_name
        ) from None


def address_in(text: str, cidr: IPNetwork, field_name: str) -> IPAddress:
    """An address (bare or with a prefix) that must lie inside ``cidr``."""
    try:
        ip = ipaddress.ip_interface(text).ip if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(
            f"{field_name} {text!r} is not an IP address", field=field_name
        ) from None
    if ip not in cidr:
        raise InvalidInput(f"{field_name} {ip} is outside pool {cidr}", field=field_name)
    return ip


def gateway_in(text: str | None, cidr: IPNetwork) -> str | None:
    if not text:
        return None
    return str(address_in(text, cidr, "Gateway"))


def default_gateway(cidr: IPNetwork) -> IPAddress:
    """The gateway Docker gets when it asks for one without naming it."""
    return cidr[1] if cidr.num_addresses > 2 else cidr[0]


def allocation_pools(
    cidr: str, sub_pool: str | None, gateway: str | None
) -> list[AllocationPool] | None:
    """--ip-range (``sub_pool``) becomes the subnet's allocation pools, minus
    the gateway; None without one (the backend's default: the whole subnet)."""
    if sub_pool is None:
        return None
    start, end = _host_bounds(ipaddress.ip_network(sub_pool), ipaddress.ip_network(cidr))
    gw = ipaddress.ip_address(gateway) if gateway else None
    if gw is not None and start <= gw <= end:
        pools = []
        if start < gw:
            pools.append(AllocationPool(start=str(start), end=str(gw - 1)))
        if gw < end:
            pools.append(AllocationPool(start=str(gw + 1), end=str(end)))
        return pools
    return [AllocationPool(start=str(start), end=str(end))]


def _host_bounds(sub: IPNetwork, cidr: IPNetwork) -> tuple[Any, Any]:
    first, last = sub[0], sub[-1]
    # The network's own network and broadcast addresses are never a host's.
    if first == cidr[0]:
        first = first + 1
    if cidr.version == 4 and last == cidr[-1]:
        last = last - 1
    return first, last


def interface_addresses(
    address: str, address_v6: str, subnets: list[Subnet]
) -> list[tuple[Subnet, str]]:
    """Docker's endpoint addresses (empty = unset), each with the backend
    subnet that holds it."""
    out = []
    for text, version, name in ((address, 4, "Address"), (address_v6, 6, "AddressIPv6")):
        if not text:
            continue
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise InvalidInput(f"Interface.{name} {text!r} is not an address", field=name) from None
        if iface.version != version:
            raise InvalidInput(f"Interface.{name} {text} is not IPv{version}", field=name)
        match = [s for s in subnets if iface.ip in ipaddress.ip_network(s.cidr)]
        if not match:
            raise InvalidInput(
                f"Interface.{name} {text} is on no subnet of the backend network",
                field=name,
            )
        out.append((match[0], str(iface.ip)))
    return out
