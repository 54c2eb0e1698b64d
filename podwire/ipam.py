"""One IPAM for podwire: the address rules of a subnet, as pure functions.

The embedded backend (backends/embedded/ipam.py: the allocations table),
the OVN backend (backends/ovn/ipam.py: the ports' ``addresses`` column) and
the Docker IPAM door keep only their own storage; what an address may be,
and which one to hand out, is decided here, once. Arithmetic is on integers
(``Range``: first and last address, both included); text goes in and out.

The rules (docs/backend.md):
* usable range: the IPv4 network and broadcast addresses and the IPv6
  subnet-router anycast address are never in a pool, except on /31, /32,
  /127 and /128 where nothing else would be left;
* default gateway: the first usable address; none on a single-address subnet;
* default pools: the usable range minus the gateway (a gateway in the
  middle splits it); requested pools must lie in the usable range, must not
  overlap and must not hold the gateway;
* requested fixed IPs: taken before any free address is picked, so "any
  free address" never takes one named later; an IPv4 network or broadcast
  address is refused, the gateway is left to router-like owners;
* picking a free address: small pools (up to ``SEQUENTIAL_LIMIT``) are
  walked in order from a starting point, wrapping round, asking the storage
  about a batch of candidates at a time; big pools (an IPv6 /64) get random
  candidates, so nothing ever walks the whole range.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from podwire.errors import Conflict, Exhausted, InvalidInput
from podwire.model import AllocationPool

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
Range = tuple[int, int]  # first and last address, both included

SEQUENTIAL_LIMIT = 1 << 16
_FIRST_BATCH = 8
_MAX_BATCH = 4096
# Random draws in a big pool almost never collide: a few candidates first,
# then bigger batches if the pool turns out crowded.
_RANDOM_BATCHES = (4, 32, 64, 64, 64, 64, 64)

_rng = random.SystemRandom()


class SubnetLike(Protocol):
    """What the address checks need of a subnet: a model Subnet or a row."""

    @property
    def id(self) -> str: ...

    @property
    def cidr(self) -> str: ...

    @property
    def gateway_ip(self) -> str | None: ...


S = TypeVar("S")
C = TypeVar("C", bound="_HasCidr")


class _HasCidr(Protocol):
    @property
    def cidr(self) -> str: ...


# --- addresses as integers -----------------------------------------------------------------


def network(cidr: str) -> IpNetwork:
    return ipaddress.ip_network(cidr)


def to_int(address: str) -> int:
    return int(ipaddress.ip_address(address))


def to_text(value: int, version: int) -> str:
    if version == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


# --- the usable range and the gateway --------------------------------------------------------


def usable_range(net: IpNetwork) -> Range:
    """The addresses a host may use: the IPv4 network and broadcast
    addresses and the IPv6 subnet-router anycast address are excluded, except
    on the tiny subnets where nothing would be left (/31, /32, /127, /128)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.prefixlen >= net.max_prefixlen - 1:
        return first, last
    if net.version == 4:
        return first + 1, last - 1
    return first + 1, last


def default_gateway(net: IpNetwork) -> str | None:
    first, last = usable_range(net)
    if first == last:
        return None  # a single-address subnet has no room for a gateway
    return to_text(first, net.version)


def check_gateway(net: IpNetwork, gateway: str) -> None:
    """A chosen gateway (inside the subnet) may not be an address no host
    may use: the network or broadcast address (the subnet-router address)."""
    first, last = usable_range(net)
    if not first <= to_int(gateway) <= last:
        raise InvalidInput(
            f"gateway_ip {gateway} is the network or broadcast address of {net}",
            kind="subnet",
            field="gateway_ip",
        )


# --- allocation pools ------------------------------------------------------------------------


def without(span: Range, hole: int | None) -> list[Range]:
    """``span`` minus one address (the gateway), in zero, one or two pieces."""
    first, last = span
    if hole is None or not first <= hole <= last:
        return [(first, last)]
    out = []
    if hole > first:
        out.append((first, hole - 1))
    if hole < last:
        out.append((hole + 1, last))
    return out


def default_pools(net: IpNetwork, gateway: str | None) -> list[Range]:
    """The whole usable range, split around the gateway (Neutron's default)."""
    return without(usable_range(net), to_int(gateway) if gateway is not None else None)


def check_pools(net: IpNetwork, ranges: list[Range], gateway: str | None) -> list[Range]:
    """Validate requested pools against the subnet and its gateway; return them sorted."""
    first, last = usable_range(net)
    ranges = sorted(ranges)
    for start, end in ranges:
        text = f"{to_text(start, net.version)}-{to_text(end, net.version)}"
        if start > end:
            raise InvalidInput(
                f"allocation pool {text} ends before it starts",
                kind="subnet",
                field="allocation_pools",
            )
        if start < first or end > last:
            raise InvalidInput(
                f"allocation pool {text} is outside the usable addresses of {net}"
                " (the network, broadcast and subnet-router addresses are not usable)",
                kind="subnet",
                field="allocation_pools",
            )
    for (_, end_a), (start_b, end_b) in itertools.pairwise(ranges):
        if start_b <= end_a:
            raise InvalidInput(
                f"allocation pools overlap at {to_text(start_b, net.version)}"
                f"-{to_text(min(end_a, end_b), net.version)}",
                kind="subnet",
                field="allocation_pools",
            )
    if gateway is not None and in_ranges(ranges, to_int(gateway)):
        raise Conflict(
            f"gateway_ip {gateway} is inside an allocation pool of {net}",
            kind="subnet",
            field="gateway_ip",
        )
    return ranges


def subnet_addressing(
    cidr: str, gateway_ip: str | None, pools: Sequence[Any] | None
) -> tuple[IpNetwork, str | None, list[Range]]:
    """A new subnet's network, gateway and pools, from the request's
    ``gateway_ip`` ("auto": the default; None: no gateway) and
    ``allocation_pools`` (None: the default), checked."""
    net = network(cidr)
    if gateway_ip == "auto":
        gateway = default_gateway(net)
    else:
        gateway = gateway_ip
        if gateway is not None:
            check_gateway(net, gateway)
    if pools is None:
        return net, gateway, default_pools(net, gateway)
    return net, gateway, check_pools(net, parse_pools(pools), gateway)


def ip_range_pools(
    net: IpNetwork, ip_range: IpNetwork, gateway: str | None
) -> list[AllocationPool]:
    """A sub-range of the subnet (Docker's ``--ip-range``) as allocation
    pools: its addresses a host may use, minus the gateway."""
    first, last = usable_range(net)
    span = (max(int(ip_range.network_address), first), min(int(ip_range.broadcast_address), last))
    return as_allocation_pools(without(span, to_int(gateway) if gateway else None), net.version)


def parse_pools(pools: Sequence[Any]) -> list[Range]:
    """Pools as stored ({"start", "end"} dicts or AllocationPool objects) to ranges."""
    out = []
    for pool in pools:
        start = pool["start"] if isinstance(pool, dict) else pool.start
        end = pool["end"] if isinstance(pool, dict) else pool.end
        out.append((to_int(start), to_int(end)))
    return out


def pools_as_dicts(ranges: Sequence[Range], version: int) -> list[dict[str, str]]:
    return [{"start": to_text(a, version), "end": to_text(b, version)} for a, b in ranges]


def as_allocation_pools(ranges: Sequence[Range], version: int) -> list[AllocationPool]:
    return [AllocationPool(start=to_text(a, version), end=to_text(b, version)) for a, b in ranges]


def in_ranges(ranges: Sequence[Range], value: int) -> bool:
    return any(a <= value <= b for a, b in ranges)


def size(ranges: Sequence[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)


# --- requested addresses ---------------------------------------------------------------------


def address_in(text: str, pool: IpNetwork, field_name: str) -> IpAddr:
    """An address (bare or with a prefix) that must lie inside ``pool``."""
    try:
        ip = ipaddress.ip_interface(text).ip if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(
            f"{field_name} {text!r} is not an IP address", field=field_name
        ) from None
    if ip not in pool:
        raise InvalidInput(f"{field_name} {ip} is outside pool {pool}", field=field_name)
    return ip


def gateway_in(text: str | None, pool: IpNetwork) -> str | None:
    """A gateway named by the caller (empty: none), inside ``pool``."""
    if not text:
        return None
    return str(address_in(text, pool, "Gateway"))


def subnet_of(ip: str, subnets: Iterable[C]) -> C | None:
    """The first subnet holding ``ip``."""
    addr = ipaddress.ip_address(ip)
    for subnet in subnets:
        if addr in ipaddress.ip_network(subnet.cidr):
            return subnet
    return None


def requested_first(
    plan: Sequence[tuple[S, str | None]],
) -> tuple[list[tuple[int, S, str]], list[tuple[int, S]]]:
    """A port's planned addresses (subnet, address or None for any free one)
    split into the requested ones, in canonical form, and the free ones, each
    with its position in the plan. The caller takes every requested address
    before it picks any free one, so "any free address" never takes one
    named later in the list. An address requested twice is refused."""
    requested: list[tuple[int, S, str]] = []
    free: list[tuple[int, S]] = []
    seen: set[str] = set()
    for position, (subnet, address) in enumerate(plan):
        if address is None:
            free.append((position, subnet))
            continue
        canonical = str(ipaddress.ip_address(address))
        if canonical in seen:
            raise requested_twice(address)
        seen.add(canonical)
        requested.append((position, subnet, canonical))
    return requested, free


def check_requested(subnet: SubnetLike, address: str, *, may_be_gateway: bool) -> None:
    """A caller-chosen address (canonical, inside the subnet) may not be the
    IPv4 network or broadcast address; the gateway is only for router-like
    owners (``may_be_gateway``: device_owner ``network:*``). Whether it is
    free is the storage's question (``already_allocated``)."""
    net = network(subnet.cidr)
    value = to_int(address)
    if (
        net.version == 4
        and net.prefixlen < 31
        and value in (int(net.network_address), int(net.broadcast_address))
    ):
        raise InvalidInput(
            f"fixed_ips: {address} is the network or broadcast address of {net}",
            kind="port",
            field="fixed_ips",
        )
    gateway = subnet.gateway_ip
    if not may_be_gateway and gateway is not None and value == to_int(gateway):
        raise Conflict(
            f"fixed_ips: {address} is the gateway of subnet {subnet.id}",
            kind="port",
            field="fixed_ips",
        )


def may_hold_gateway(device_owner: str) -> bool:
    """Only router-like owners (network:router_interface, ...) hold the gateway."""
    return device_owner.startswith("network:")


def requested_twice(address: str) -> InvalidInput:
    return InvalidInput(f"fixed_ips: {address} is requested twice", kind="port", field="fixed_ips")


def already_allocated(address: str, subnet_id: str) -> Conflict:
    return Conflict(
        f"fixed_ips: ip_address {address} is already allocated on subnet {subnet_id}",
        kind="port",
        field="fixed_ips",
    )


# --- picking a free address ------------------------------------------------------------------


def pick_free(
    ranges: Sequence[Range],
    last: int | None,
    taken: Callable[[list[int]], set[int]],
    *,
    rng: random.Random = _rng,
) -> int | None:
    """A free address of the pools, or None when they are full.

    Small pools are walked from just after ``last`` (None: from the start),
    wrapping round; ``taken(candidates)`` answers which of the candidates
    are allocated (one storage query per batch).
    """
    total = size(ranges)
    if total == 0:
        return None
    if total > SEQUENTIAL_LIMIT:
        return _pick_random(ranges, total, taken, rng)
    batch_size = _FIRST_BATCH
    walk = _walk(ranges, last)
    while True:
        batch = [x for _, x in zip(range(batch_size), walk, strict=False)]
        if not batch:
            return None
        busy = taken(batch)
        for candidate in batch:
            if candidate not in busy:
                return candidate
        batch_size = min(batch_size * 4, _MAX_BATCH)


def no_free_address(subnet_id: str, cidr: str) -> Exhausted:
    return Exhausted(
        f"subnet {subnet_id} ({cidr}) has no free address left",
        kind="subnet",
        object_id=subnet_id,
        field="fixed_ips",
    )


def _walk(ranges: Sequence[Range], after: int | None) -> Iterator[int]:
    """Every pool address once, starting after ``after`` and wrapping round."""
    if after is None or not ranges:
        for a, b in ranges:
            yield from range(a, b + 1)
        return
    for a, b in ranges:
        if b > after:
            yield from range(max(a, after + 1), b + 1)
    for a, b in ranges:
        if a > after:
            break
        yield from range(a, min(b, after) + 1)


def _pick_random(
    ranges: Sequence[Range], total: int, taken: Callable[[list[int]], set[int]], rng: random.Random
) -> int | None:
    for count in _RANDOM_BATCHES:
        batch = list({_nth(ranges, rng.randrange(total)) for _ in range(count)})
        busy = taken(batch)
        for candidate in batch:
            if candidate not in busy:
                return candidate
    # 356 random draws all taken: the pools are (nearly) full in practice.
    return None


def _nth(ranges: Sequence[Range], index: int) -> int:
    for a, b in ranges:
        if index <= b - a:
            return a + index
        index -= b - a + 1
    raise IndexError(index)
