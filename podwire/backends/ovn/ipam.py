"""Address management for the OVN backend: pure functions over a subnet and
the addresses already used on its network.

The used set is read from the Logical_Switch_Port ``addresses`` column inside
the same OVSDB transaction that writes the new port (see codec.IPAM_GENERATION
for why two allocations can never both win), so these functions hold no state.
Arithmetic is on integers; text goes in and out.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import random
from collections.abc import Iterable

from podwire.errors import Conflict, Exhausted, InvalidInput
from podwire.model import AllocationPool, Subnet

# Pools bigger than this (an IPv6 /64) get random candidates; never walked.
SEQUENTIAL_LIMIT = 1 << 16
_RANDOM_TRIES = 64
_rng = random.SystemRandom()

Span = tuple[int, int]  # first and last address, both included


def _int(address: str) -> int:
    return int(ipaddress.ip_address(address))


@functools.lru_cache(maxsize=1 << 17)
def _parsed(address: str) -> tuple[int, int]:
    """(version, integer) of an address; cached, as the same used addresses
    are read again on every allocation on a network."""
    addr = ipaddress.ip_address(address)
    return addr.version, int(addr)


def _text(value: int, version: int) -> str:
    if version == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


def _usable(cidr: str) -> tuple[Span, int]:
    """First and last address a host may get, and the IP version. IPv4 keeps
    the network and broadcast addresses out (except on /31 and /32); IPv6
    keeps the subnet-router anycast address out (except on /127 and /128)."""
    net = ipaddress.ip_network(cidr)
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.prefixlen >= net.max_prefixlen - 1:
        return (first, last), net.version
    if net.version == 4:
        return (first + 1, last - 1), 4
    return (first + 1, last), 6


def default_gateway(cidr: str) -> str | None:
    (first, last), version = _usable(cidr)
    return None if first == last else _text(first, version)


def default_pools(cidr: str, gateway_ip: str | None) -> list[AllocationPool]:
    """The whole usable range, split around the gateway (Neutron's default)."""
    (first, last), version = _usable(cidr)
    hole = _int(gateway_ip) if gateway_ip is not None else None
    spans: list[Span] = [(first, last)]
    if hole is not None and first <= hole <= last:
        spans = [s for s in ((first, hole - 1), (hole + 1, last)) if s[0] <= s[1]]
    return [AllocationPool(start=_text(a, version), end=_text(b, version)) for a, b in spans]


def check_pools(cidr: str, pools: list[AllocationPool], gateway_ip: str | None) -> None:
    """Pools inside the usable range, not overlapping, not holding the gateway."""
    (first, last), _ = _usable(cidr)
    spans = sorted((_int(p.start), _int(p.end)) for p in pools)
    for (start, end), pool in zip(spans, sorted(pools, key=lambda p: _int(p.start)), strict=True):
        if start < first or end > last:
            raise InvalidInput(
                f"allocation pool {pool.start}-{pool.end} is outside the usable addresses of "
                f"{cidr} (the network, broadcast and subnet-router addresses are not usable)",
                kind="subnet",
                field="allocation_pools",
            )
    for (_, prev_end), (start, _end) in itertools.pairwise(spans):
        if start <= prev_end:
            raise InvalidInput("allocation pools overlap", kind="subnet", field="allocation_pools")
    if gateway_ip is not None:
        gw = _int(gateway_ip)
        if any(start <= gw <= end for start, end in spans):
            raise Conflict(
                f"gateway_ip {gateway_ip} is inside an allocation pool of {cidr}",
                kind="subnet",
                field="gateway_ip",
            )


def check_gateway(cidr: str, gateway_ip: str) -> None:
    """A chosen gateway may not be the network or broadcast address."""
    (first, last), _ = _usable(cidr)
    if not first <= _int(gateway_ip) <= last:
        raise InvalidInput(
            f"gateway_ip {gateway_ip} is the network or broadcast address of {cidr}",
            kind="subnet",
            field="gateway_ip",
        )


def subnet_of(ip: str, subnets: Iterable[Subnet]) -> Subnet | None:
    addr = ipaddress.ip_address(ip)
    for subnet in subnets:
        if addr in ipaddress.ip_network(subnet.cidr):
            return subnet
    return None


def check_requested(subnet: Subnet, ip: str, used: set[str], *, may_be_gateway: bool) -> str:
    """A caller-chosen address: inside the subnet, a host address, free; the
    gateway only for router-like owners (``may_be_gateway``)."""
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(subnet.cidr):
        raise InvalidInput(
            f"fixed IP {ip} is outside subnet {subnet.id} ({subnet.cidr})",
            kind="port",
            field="fixed_ips",
        )
    (first, last), _ = _usable(subnet.cidr)
    if not first <= int(addr) <= last:
        raise InvalidInput(
            f"fixed_ips: {ip} is the network or broadcast address of {subnet.cidr}",
            kind="port",
            field="fixed_ips",
        )
    gateway = subnet.gateway_ip
    if not may_be_gateway and gateway is not None and int(addr) == _int(gateway):
        raise Conflict(
            f"fixed_ips: {ip} is the gateway of subnet {subnet.id}", kind="port", field="fixed_ips"
        )
    if str(addr) in used:
        raise Conflict(
            f"fixed_ips: ip_address {ip} is already allocated on subnet {subnet.id}",
            kind="port",
            field="fixed_ips",
        )
    return str(addr)


def allocate(subnet: Subnet, used: set[str]) -> str:
    """A free address of the subnet's pools: the lowest one on pools of up to
    SEQUENTIAL_LIMIT addresses, a random one on bigger pools; Exhausted when
    none is left."""
    version = ipaddress.ip_network(subnet.cidr).version
    taken = {value for v, value in map(_parsed, used) if v == version}
    if subnet.gateway_ip is not None:
        taken.add(_int(subnet.gateway_ip))
    spans = [(_int(p.start), _int(p.end)) for p in subnet.allocation_pools]
    total = sum(end - start + 1 for start, end in spans)
    if total > SEQUENTIAL_LIMIT:
        for _ in range(_RANDOM_TRIES):
            candidate = _nth(spans, _rng.randrange(total))
            if candidate not in taken:
                return _text(candidate, version)
    for start, end in spans:
        candidate = start
        # Walks past used addresses only, so the cost is bounded by len(used).
        while candidate <= end:
            if candidate not in taken:
                return _text(candidate, version)
            candidate += 1
    raise Exhausted(
        f"subnet {subnet.id} ({subnet.cidr}) has no free address left",
        kind="subnet",
        object_id=subnet.id,
        field="fixed_ips",
    )


def _nth(spans: list[Span], n: int) -> int:
    for start, end in spans:
        if n <= end - start:
            return start + n
        n -= end - start + 1
    raise IndexError(n)
