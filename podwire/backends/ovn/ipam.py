"""The OVN backend's side of IPAM: the addresses a network's ports hold.

They are read from the Logical_Switch_Port ``addresses`` column inside the
same OVSDB transaction that writes the new port (see codec.IPAM_GENERATION
for why two allocations can never both win), so nothing here holds state.
What an address may be, and which free one to hand out, is podwire.ipam's
(shared with the embedded backend and the Docker door); small pools are
searched from their start, so a port gets the lowest free address.
"""

from __future__ import annotations

import functools
import ipaddress

from podwire import ipam
from podwire.model import FixedIp, Subnet


@functools.lru_cache(maxsize=1 << 17)
def _parsed(address: str) -> tuple[int, int]:
    """(version, integer) of an address; cached, as the same used addresses
    are read again on every allocation on a network."""
    addr = ipaddress.ip_address(address)
    return addr.version, int(addr)


def allocate(
    plan: list[tuple[Subnet, str | None]], used: set[str], device_owner: str
) -> list[FixedIp]:
    """The port's addresses: the requested ones checked and taken first,
    then a free one for each entry that names none. ``used``: the canonical
    addresses the network's other ports hold."""
    result: list[FixedIp | None] = [None] * len(plan)
    taken = set(used)
    requested, free = ipam.requested_first(plan)
    may_be_gateway = ipam.may_hold_gateway(device_owner)
    for position, subnet, ip in requested:
        ipam.check_requested(subnet, ip, may_be_gateway=may_be_gateway)
        if ip in taken:
            raise ipam.already_allocated(ip, subnet.id)
        taken.add(ip)
        result[position] = FixedIp(subnet_id=subnet.id, ip_address=ip)
    for position, subnet in free:
        ip = _pick(subnet, taken)
        taken.add(ip)
        result[position] = FixedIp(subnet_id=subnet.id, ip_address=ip)
    return [r for r in result if r is not None]


def _pick(subnet: Subnet, used: set[str]) -> str:
    version = ipaddress.ip_network(subnet.cidr).version
    values = {value for v, value in map(_parsed, used) if v == version}
    ranges = ipam.parse_pools(subnet.allocation_pools)
    value = ipam.pick_free(ranges, None, values.intersection)
    if value is None:
        raise ipam.no_free_address(subnet.id, subnet.cidr)
    return ipam.to_text(value, version)
