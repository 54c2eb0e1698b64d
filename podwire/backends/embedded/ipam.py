"""Address management without a database: pools, gateways and the search for
a free address. The backend supplies ``taken(candidates)`` (one query per
batch); everything else here is arithmetic on integers.

Choices (see docs/backend.md):
* default gateway: the first address after the network address;
* default pools: the whole subnet minus the network address (the IPv6
  subnet-router anycast address), minus the IPv4 broadcast, minus the gateway;
* small pools (up to ``SEQUENTIAL_LIMIT`` addresses) are searched in order,
  starting after the last address handed out and wrapping round, so a
  growing subnet costs one query per port and holes are reused after a wrap;
* big pools (an IPv6 /64 has 2^64 addresses) get random candidates, retried
  a few times: nothing ever walks the whole range.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from podwire.errors import Conflict, InvalidInput

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


def network(cidr: str) -> IpNetwork:
    return ipaddress.ip_network(cidr)


def to_int(address: str) -> int:
    return int(ipaddress.ip_address(address))


def to_text(value: int, version: int) -> str:
    if version == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


def _bounds(net: IpNetwork) -> Range:
    """The addresses a host may use: the IPv4 network and broadcast
    addresses and the IPv6 subnet-router anycast address are excluded, except
    on the tiny subnets where nothing would be left (/31, /32, /127, /128)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        if net.prefixlen >= 31:
            return first, last
        return first + 1, last - 1
    if net.prefixlen >= 127:
        return first, last
    return first + 1, last


def default_gateway(net: IpNetwork) -> str | None:
    first, last = _bounds(net)
    if first == last:
        return None  # a single-address subnet has no room for a gateway
    return to_text(first, net.version)


def default_pools(net: IpNetwork, gateway: str | None) -> list[Range]:
    first, last = _bounds(net)
    return _minus(first, last, to_int(gateway) if gateway is not None else None)


def _minus(first: int, last: int, hole: int | None) -> list[Range]:
    if hole is None or not first <= hole <= last:
        return [(first, last)]
    out = []
    if hole > first:
        out.append((first, hole - 1))
    if hole < last:
        out.append((hole + 1, last))
    return out


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


def check_pools(net: IpNetwork, ranges: list[Range], gateway: str | None) -> list[Range]:
    """Validate requested pools against the subnet and its gateway; return them sorted."""
    first, last = _bounds(net)
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


def in_ranges(ranges: Sequence[Range], value: int) -> bool:
    return any(a <= value <= b for a, b in ranges)


def size(ranges: Sequence[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)


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


def pick_free(
    ranges: Sequence[Range],
    last: int | None,
    taken: Callable[[list[int]], set[int]],
    *,
    rng: random.Random = _rng,
) -> int | None:
    """A free address of the pools, or None when they are full.

    ``taken(candidates)`` answers which of the candidates are allocated.
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
