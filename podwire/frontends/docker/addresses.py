"""Docker's addresses in the shared IPAM's terms (podwire.ipam): its pools,
--ip-range, gateway and endpoint addresses checked against CIDRs, with
errors naming Docker's field. The address rules themselves (usable range,
default gateway, pools around the gateway) are podwire.ipam's, the same the
backends apply."""

from __future__ import annotations

import ipaddress

from podwire import ipam
from podwire.errors import InvalidInput
from podwire.model import AllocationPool, Subnet

# Re-exported for the door's modules: one place to look for its address checks.
address_in = ipam.address_in
gateway_in = ipam.gateway_in


def parse_cidr(text: str, field_name: str) -> ipam.IpNetwork:
    """A pool as Docker sends it: a CIDR with no host bits set."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidInput(
            f"{field_name} {text!r} is not a CIDR: {exc}", field=field_name
        ) from None


def default_gateway(cidr: ipam.IpNetwork) -> str:
    """The gateway Docker gets when it asks for one without naming it: the
    subnet's default gateway, as the backends choose it."""
    gateway = ipam.default_gateway(cidr)
    if gateway is None:
        raise InvalidInput(
            f"pool {cidr} has no room for a gateway: give the network a bigger --subnet",
            field="Pool",
        )
    return gateway


def allocation_pools(
    cidr: str, sub_pool: str | None, gateway: str | None
) -> list[AllocationPool] | None:
    """--ip-range (``sub_pool``) becomes the subnet's allocation pools, minus
    the gateway; None without one (the backend's default: the whole subnet)."""
    if sub_pool is None:
        return None
    return ipam.ip_range_pools(ipam.network(cidr), ipam.network(sub_pool), gateway)


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
        subnet = ipam.subnet_of(str(iface.ip), subnets)
        if subnet is None:
            raise InvalidInput(
                f"Interface.{name} {text} is on no subnet of the backend network",
                field=name,
            )
        out.append((subnet, str(iface.ip)))
    return out
