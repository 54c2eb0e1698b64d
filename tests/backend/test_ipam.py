"""Unit tests of the pure IPAM arithmetic (podwire.backends.embedded.ipam)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from podwire.backends.embedded import ipam
from podwire.errors import Conflict, InvalidInput


def _ranges(net: str, gateway: str | None) -> list[tuple[str, str]]:
    n = ipam.network(net)
    return [
        (ipam.to_text(a, n.version), ipam.to_text(b, n.version))
        for a, b in ipam.default_pools(n, gateway)
    ]


@pytest.mark.parametrize(
    ("cidr", "gateway", "pools"),
    [
        ("198.18.0.0/24", "198.18.0.1", [("198.18.0.2", "198.18.0.254")]),
        ("198.18.0.0/30", "198.18.0.1", [("198.18.0.2", "198.18.0.2")]),
        ("198.18.0.0/31", "198.18.0.0", [("198.18.0.1", "198.18.0.1")]),
        ("198.18.0.7/32", None, [("198.18.0.7", "198.18.0.7")]),
        ("2001:db8::/64", "2001:db8::1", [("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")]),
        ("2001:db8::/127", "2001:db8::", [("2001:db8::1", "2001:db8::1")]),
    ],
)
def test_default_gateway_and_pools(
    cidr: str, gateway: str | None, pools: list[tuple[str, str]]
) -> None:
    assert ipam.default_gateway(ipam.network(cidr)) == gateway
    assert _ranges(cidr, gateway) == pools


def test_gateway_in_the_middle_splits_the_pool() -> None:
    assert _ranges("198.18.0.0/29", "198.18.0.3") == [
        ("198.18.0.1", "198.18.0.2"),
        ("198.18.0.4", "198.18.0.6"),
    ]


def test_check_pools() -> None:
    net = ipam.network("198.18.0.0/24")
    r = lambda a, b: (ipam.to_int(a), ipam.to_int(b))  # noqa: E731
    assert ipam.check_pools(
        net, [r("198.18.0.20", "198.18.0.30"), r("198.18.0.2", "198.18.0.9")], None
    ) == [
        r("198.18.0.2", "198.18.0.9"),
        r("198.18.0.20", "198.18.0.30"),
    ]
    with pytest.raises(InvalidInput, match="overlap"):
        ipam.check_pools(net, [r("198.18.0.2", "198.18.0.9"), r("198.18.0.9", "198.18.0.12")], None)
    with pytest.raises(InvalidInput, match="outside"):
        ipam.check_pools(net, [r("198.18.0.2", "198.18.0.255")], None)
    with pytest.raises(InvalidInput, match="ends before"):
        ipam.check_pools(net, [r("198.18.0.9", "198.18.0.2")], None)
    with pytest.raises(Conflict) as err:
        ipam.check_pools(net, [r("198.18.0.2", "198.18.0.9")], "198.18.0.5")
    assert err.value.field == "gateway_ip"


class _Taken:
    """A set of allocated addresses that counts the queries made of it."""

    def __init__(self, taken: set[int]) -> None:
        self.taken = taken
        self.queries = 0

    def __call__(self, candidates: list[int]) -> set[int]:
        self.queries += 1
        return self.taken & set(candidates)


def test_sequential_pick_walks_on_from_the_last_and_wraps() -> None:
    ranges = [(10, 14), (20, 22)]
    taken = _Taken(set())
    assert ipam.pick_free(ranges, None, taken) == 10
    assert ipam.pick_free(ranges, 12, taken) == 13
    assert ipam.pick_free(ranges, 14, taken) == 20
    assert ipam.pick_free(ranges, 22, taken) == 10  # wraps round
    taken.taken = {10, 11, 13, 14, 20, 21, 22}
    assert ipam.pick_free(ranges, 14, taken) == 12  # the one hole, after a wrap
    taken.taken |= {12}
    assert ipam.pick_free(ranges, 14, taken) is None


def test_sequential_pick_costs_one_query_when_growing() -> None:
    ranges = [(0, 65000)]
    taken = _Taken(set(range(0, 5000)))
    assert ipam.pick_free(ranges, 4999, taken) == 5000
    assert taken.queries == 1
    # a full pool is found full with few, growing batches, not one query per address
    full = _Taken(set(range(0, 65001)))
    assert ipam.pick_free(ranges, 100, full) is None
    assert full.queries < 30


def test_random_pick_in_a_huge_pool() -> None:
    net = ipaddress.ip_network("2001:db8::/64")
    ranges = ipam.default_pools(net, "2001:db8::1")
    taken = _Taken(set())
    rng = random.Random(7)
    picks = {ipam.pick_free(ranges, None, taken, rng=rng) for _ in range(200)}
    assert len(picks) == 200
    assert all(p is not None and ipam.in_ranges(ranges, p) for p in picks)
    assert taken.queries == 200


def test_random_pick_gives_up_on_a_crowded_huge_pool() -> None:
    ranges = [(0, 1 << 20)]

    def everything(candidates: list[int]) -> set[int]:
        return set(candidates)

    assert ipam.pick_free(ranges, None, everything) is None
