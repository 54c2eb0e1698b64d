"""Unit tests of the one IPAM's rules (podwire.ipam): pure logic, no storage."""

from __future__ import annotations

import ipaddress
import random

import pytest

from podwire import ipam
from podwire.errors import Conflict, InvalidInput
from podwire.model import AllocationPool


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


# --- the usable range, the gateway, the pools of a new subnet ---------------------------------


@pytest.mark.parametrize(
    ("cidr", "first", "last"),
    [
        ("198.18.0.0/24", "198.18.0.1", "198.18.0.254"),
        ("198.18.0.0/31", "198.18.0.0", "198.18.0.1"),
        ("198.18.0.7/32", "198.18.0.7", "198.18.0.7"),
        # IPv6: no broadcast; the subnet-router anycast address (::) is out
        ("2001:db8::/120", "2001:db8::1", "2001:db8::ff"),
        ("2001:db8::/127", "2001:db8::", "2001:db8::1"),
    ],
)
def test_usable_range(cidr: str, first: str, last: str) -> None:
    assert ipam.usable_range(ipam.network(cidr)) == (ipam.to_int(first), ipam.to_int(last))


@pytest.mark.parametrize(
    ("cidr", "gateway"),
    [
        ("198.18.0.0/24", "198.18.0.0"),
        ("198.18.0.0/24", "198.18.0.255"),
        ("2001:db8::/64", "2001:db8::"),
    ],
)
def test_a_chosen_gateway_may_not_be_an_address_no_host_may_use(cidr: str, gateway: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ipam.check_gateway(ipam.network(cidr), gateway)
    assert err.value.field == "gateway_ip"


@pytest.mark.parametrize(
    ("cidr", "gateway"),
    [
        ("198.18.0.0/24", "198.18.0.254"),
        ("198.18.0.0/31", "198.18.0.1"),  # a /31 has no network or broadcast address
        ("2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff"),  # IPv6 has no broadcast
        ("2001:db8::/127", "2001:db8::"),
    ],
)
def test_a_chosen_gateway_anywhere_else_is_fine(cidr: str, gateway: str) -> None:
    ipam.check_gateway(ipam.network(cidr), gateway)


def test_subnet_addressing_defaults() -> None:
    net, gateway, ranges = ipam.subnet_addressing("198.18.4.0/24", "auto", None)
    assert (str(net), gateway) == ("198.18.4.0/24", "198.18.4.1")
    assert ipam.pools_as_dicts(ranges, 4) == [{"start": "198.18.4.2", "end": "198.18.4.254"}]
    # no gateway: the whole usable range is one pool
    _, gateway, ranges = ipam.subnet_addressing("2001:db8:4::/64", None, None)
    assert gateway is None
    assert ipam.as_allocation_pools(ranges, 6) == [
        AllocationPool(start="2001:db8:4::1", end="2001:db8:4::ffff:ffff:ffff:ffff")
    ]


def test_subnet_addressing_checks_what_the_caller_chose() -> None:
    pools = [AllocationPool(start="198.18.4.100", end="198.18.4.110")]
    _, gateway, ranges = ipam.subnet_addressing("198.18.4.0/24", "198.18.4.254", pools)
    assert gateway == "198.18.4.254"
    assert ipam.as_allocation_pools(ranges, 4) == pools
    with pytest.raises(InvalidInput):
        ipam.subnet_addressing("198.18.4.0/24", "198.18.4.255", None)
    with pytest.raises(Conflict):
        ipam.subnet_addressing("198.18.4.0/24", "198.18.4.105", pools)
    with pytest.raises(InvalidInput, match="outside the usable"):
        ipam.subnet_addressing(
            "2001:db8::/64", "auto", [AllocationPool(start="2001:db8::", end="2001:db8::9")]
        )


def test_an_ip_range_becomes_pools_around_the_gateway() -> None:
    net = ipaddress.ip_network("198.18.8.0/24")
    # the range's first address is the network's own address: not a host's
    assert ipam.ip_range_pools(net, ipaddress.ip_network("198.18.8.0/28"), "198.18.8.1") == [
        AllocationPool(start="198.18.8.2", end="198.18.8.15")
    ]
    assert ipam.ip_range_pools(net, ipaddress.ip_network("198.18.8.240/28"), "198.18.8.250") == [
        AllocationPool(start="198.18.8.240", end="198.18.8.249"),
        AllocationPool(start="198.18.8.251", end="198.18.8.254"),  # not the broadcast
    ]
    assert ipam.ip_range_pools(net, ipaddress.ip_network("198.18.8.64/26"), None) == [
        AllocationPool(start="198.18.8.64", end="198.18.8.127")
    ]
    v6 = ipaddress.ip_network("2001:db8:8::/64")
    assert ipam.ip_range_pools(v6, ipaddress.ip_network("2001:db8:8::/120"), None) == [
        AllocationPool(start="2001:db8:8::1", end="2001:db8:8::ff")
    ]


# --- addresses a caller names ----------------------------------------------------------------


def test_address_in_a_pool() -> None:
    pool = ipaddress.ip_network("198.18.9.0/24")
    assert str(ipam.address_in("198.18.9.7/24", pool, "Address")) == "198.18.9.7"
    assert str(ipam.address_in("198.18.9.8", pool, "Address")) == "198.18.9.8"
    with pytest.raises(InvalidInput, match="outside pool") as err:
        ipam.address_in("198.18.10.1", pool, "Address")
    assert err.value.field == "Address"
    with pytest.raises(InvalidInput, match="not an IP address"):
        ipam.address_in("nine", pool, "Address")
    assert ipam.gateway_in("", pool) is None
    assert ipam.gateway_in("198.18.9.1/24", pool) == "198.18.9.1"


class _Subnet:
    def __init__(self, id: str, cidr: str, gateway_ip: str | None) -> None:
        self.id, self.cidr, self.gateway_ip = id, cidr, gateway_ip


V4 = _Subnet("s4", "198.18.12.0/24", "198.18.12.1")
V6 = _Subnet("s6", "2001:db8:12::/64", "2001:db8:12::1")


def test_subnet_of() -> None:
    assert ipam.subnet_of("2001:db8:12::5", [V4, V6]) is V6
    assert ipam.subnet_of("198.18.13.1", [V4, V6]) is None


def test_requested_addresses_come_first_in_canonical_form() -> None:
    plan = [(V4, None), (V6, "2001:DB8:12:0::7"), (V4, "198.18.12.9"), (V6, None)]
    requested, free = ipam.requested_first(plan)
    assert requested == [(1, V6, "2001:db8:12::7"), (2, V4, "198.18.12.9")]
    assert free == [(0, V4), (3, V6)]


def test_an_address_requested_twice_is_refused_whatever_its_spelling() -> None:
    with pytest.raises(InvalidInput, match="requested twice") as err:
        ipam.requested_first([(V6, "2001:db8:12::7"), (V6, "2001:db8:12:0:0::7")])
    assert err.value.field == "fixed_ips"
    assert ipam.requested_twice("198.18.0.1").message == "fixed_ips: 198.18.0.1 is requested twice"


@pytest.mark.parametrize("address", ["198.18.12.0", "198.18.12.255"])
def test_a_v4_network_or_broadcast_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="network or broadcast") as err:
        ipam.check_requested(V4, address, may_be_gateway=True)
    assert err.value.field == "fixed_ips"


def test_a_v4_point_to_point_subnet_has_no_network_or_broadcast_address() -> None:
    ipam.check_requested(_Subnet("p", "198.18.12.0/31", None), "198.18.12.0", may_be_gateway=False)


def test_the_gateway_is_only_for_router_like_owners() -> None:
    assert ipam.may_hold_gateway("network:router_interface")
    assert not ipam.may_hold_gateway("compute:nova")
    with pytest.raises(Conflict, match="gateway of subnet s6"):
        ipam.check_requested(V6, "2001:db8:12::1", may_be_gateway=False)
    ipam.check_requested(V6, "2001:db8:12::1", may_be_gateway=True)


def test_errors_the_storage_raises_with_the_shared_wording() -> None:
    taken = ipam.already_allocated("198.18.12.5", "s4")
    assert isinstance(taken, Conflict)
    assert taken.message == "fixed_ips: ip_address 198.18.12.5 is already allocated on subnet s4"
    full = ipam.no_free_address("s4", "198.18.12.0/24")
    assert full.field == "fixed_ips"
    assert full.message == "subnet s4 (198.18.12.0/24) has no free address left"


def test_a_pick_from_the_start_takes_the_lowest_free_address() -> None:
    # The OVN backend's search: no remembered position, lowest free first.
    used = {ipam.to_int(a) for a in ("198.18.12.2", "198.18.12.3", "198.18.12.5")}
    ranges = ipam.default_pools(ipam.network(V4.cidr), V4.gateway_ip)
    assert ipam.to_text(ipam.pick_free(ranges, None, used.intersection) or 0, 4) == "198.18.12.4"
