"""The storage-independent rules both backends call (podwire.backends.rules)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from podwire.backends import rules
from podwire.errors import Conflict, Exhausted, Forbidden, InvalidInput, NotFound
from podwire.model import (
    AllowedAddressPair,
    Context,
    FixedIpRequest,
    HostRoute,
    NetworkCreate,
    SubPort,
)

MEMBER = Context(project_id="p1")
ADMIN = Context.admin()


@dataclass(frozen=True)
class _Subnet:
    id: str
    cidr: str


V4 = _Subnet("s4", "198.18.0.0/24")
V4B = _Subnet("s4b", "198.18.0.0/16")  # overlapping: only to test "first one wins"
V6 = _Subnet("s6", "2001:db8::/64")


# --- projects -------------------------------------------------------------------


def test_project_for_defaults_to_the_callers_project() -> None:
    assert rules.project_for(MEMBER, None, "port") == "p1"
    assert rules.project_for(MEMBER, "p1", "port") == "p1"


def test_project_for_another_project_needs_admin() -> None:
    with pytest.raises(Forbidden) as err:
        rules.project_for(MEMBER, "p2", "trunk")
    assert err.value.message == "only an admin may create a trunk in another project (p2)"
    assert (err.value.kind, err.value.field) == ("trunk", "project_id")
    assert rules.project_for(ADMIN, "p2", "trunk") == "p2"


def test_owns() -> None:
    assert rules.owns(MEMBER, "p1")
    assert not rules.owns(MEMBER, "p2")
    assert not rules.owns(MEMBER, None)
    assert rules.owns(ADMIN, "p2")


# --- subnets --------------------------------------------------------------------


def test_host_routes_must_match_the_subnet_family() -> None:
    good = HostRoute(destination="198.19.0.0/24", nexthop="198.18.0.1")
    rules.check_host_routes([good], 4)
    with pytest.raises(InvalidInput) as err:
        rules.check_host_routes([good], 6)
    assert err.value.message == "host route 198.19.0.0/24 via 198.18.0.1 is not IPv6"
    assert err.value.field == "host_routes"
    mixed = HostRoute(destination="198.19.0.0/24", nexthop="2001:db8::1")
    with pytest.raises(InvalidInput):
        rules.check_host_routes([mixed], 4)


# --- fixed_ips planning ---------------------------------------------------------


def test_plan_without_requests_takes_one_address_per_subnet() -> None:
    assert rules.plan_fixed_ips("n", [V4, V6], None) == [(V4, None), (V6, None)]
    assert rules.plan_fixed_ips("n", [V4, V6], []) == []


def test_plan_finds_the_subnet_of_an_address_first_one_wins() -> None:
    requests = [
        FixedIpRequest(ip_address="2001:db8::5"),
        FixedIpRequest(ip_address="198.18.0.7"),
        FixedIpRequest(subnet_id="s4b"),
    ]
    assert rules.plan_fixed_ips("n", [V4, V4B, V6], requests) == [
        (V6, "2001:db8::5"),
        (V4, "198.18.0.7"),
        (V4B, None),
    ]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            FixedIpRequest(subnet_id="nope"),
            "fixed_ips[0]: subnet nope is not a subnet of network n",
        ),
        (
            FixedIpRequest(subnet_id="s4", ip_address="198.18.1.1"),
            "fixed_ips[0]: ip_address 198.18.1.1 is outside subnet s4 (198.18.0.0/24)",
        ),
        (
            FixedIpRequest(ip_address="198.19.0.1"),
            "fixed_ips[0]: ip_address 198.19.0.1 is on no subnet of network n",
        ),
    ],
)
def test_plan_refuses_bad_requests(request_: FixedIpRequest, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        rules.plan_fixed_ips("n", [V4, V6], [request_])
    assert err.value.message == message
    assert (err.value.kind, err.value.field) == ("port", "fixed_ips")


# --- ports ----------------------------------------------------------------------


def test_pairs_listed_twice() -> None:
    a = AllowedAddressPair(ip_address="198.18.0.9")
    b = AllowedAddressPair(ip_address="198.18.0.9", mac_address="fa:16:3e:00:00:01")
    rules.check_pairs([a, b])
    with pytest.raises(InvalidInput) as err:
        rules.check_pairs([a, b, b])
    assert err.value.message == (
        "allowed_address_pairs: 198.18.0.9 fa:16:3e:00:00:01 is listed twice"
    )
    with pytest.raises(InvalidInput) as err:
        rules.check_pairs([a, a])
    assert err.value.message == "allowed_address_pairs: 198.18.0.9 is listed twice"


def test_port_deletable_only_outside_trunks() -> None:
    rules.check_port_deletable("p", None, None)
    with pytest.raises(Conflict) as err:
        rules.check_port_deletable("p", "t1", None)
    assert err.value.message == "port p is the parent of trunk t1; delete the trunk first"
    with pytest.raises(Conflict) as err:
        rules.check_port_deletable("p", None, "pp")
    assert err.value.message == (
        "port p is a sub-port of the trunk of port pp; remove it from the trunk first"
    )
    assert err.value.object_id == "p"


# --- trunks ---------------------------------------------------------------------


def test_trunk_parent() -> None:
    rules.check_trunk_parent("p", None, None)
    with pytest.raises(Conflict) as err:
        rules.check_trunk_parent("p", "pp", None)
    assert err.value.message == "port p is a sub-port of another trunk; it cannot be a parent"
    with pytest.raises(Conflict) as err:
        rules.check_trunk_parent("p", None, "t1")
    assert err.value.message == "port p is already the parent of trunk t1"
    assert (err.value.object_id, err.value.field) == ("t1", "port_id")


def test_new_subports_unique_in_the_request() -> None:
    rules.check_new_subports([SubPort(port_id="a", segmentation_id=10)])
    with pytest.raises(InvalidInput) as err:
        rules.check_new_subports(
            [SubPort(port_id="a", segmentation_id=10), SubPort(port_id="b", segmentation_id=10)]
        )
    assert err.value.message.startswith("sub_ports: ")
    assert (err.value.kind, err.value.field) == ("trunk", "sub_ports")


def _subport(**facts: object) -> None:
    args: dict = {"parent_port": None, "trunk_of": None, "vlans": {}, **facts}
    rules.check_subport("t", "parent", SubPort(port_id="sp", segmentation_id=10), **args)


def test_subport_accepted() -> None:
    _subport(vlans={11: "other"})


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        (
            {"parent_port": "pp"},
            "sub_ports: port sp is already a sub-port (of the trunk of port pp)",
        ),
        ({"trunk_of": "t2"}, "sub_ports: port sp is the parent of trunk t2"),
        (
            {"vlans": {10: "other"}},
            "sub_ports: segmentation_id 10 is already used on trunk t by port other",
        ),
    ],
)
def test_subport_refused(facts: dict, message: str) -> None:
    with pytest.raises(Conflict) as err:
        _subport(**facts)
    assert err.value.message == message
    assert (err.value.kind, err.value.object_id, err.value.field) == ("trunk", "t", "sub_ports")


def test_subport_may_not_be_the_trunks_parent() -> None:
    with pytest.raises(Conflict) as err:
        rules.check_subport(
            "t",
            "sp",
            SubPort(port_id="sp", segmentation_id=10),
            parent_port=None,
            trunk_of=None,
            vlans={},
        )
    assert err.value.message == "sub_ports: port sp is the trunk's parent port"


# --- who sees what ----------------------------------------------------------------


def test_network_access() -> None:
    rules.check_network_access(MEMBER, "n", "p1", False, owner=True)
    rules.check_network_access(MEMBER, "n", "p2", True)
    with pytest.raises(NotFound) as err:
        rules.check_network_access(MEMBER, "n", "p2", False, field="network_id")
    assert (err.value.message, err.value.field) == ("network n not found", "network_id")
    with pytest.raises(NotFound):
        rules.check_network_access(MEMBER, "n", None, False, found=False)
    with pytest.raises(Forbidden) as forbidden:
        rules.check_network_access(MEMBER, "n", "p2", True, owner=True)
    assert forbidden.value.message == (
        "network n is shared by another project; only its owner may change it"
    )


def test_subnet_access_asks_for_sharing_only_when_it_matters() -> None:
    def never() -> bool:
        raise AssertionError("asked")

    rules.check_subnet_access(MEMBER, "s", "p1", never, owner=True)
    rules.check_subnet_access(ADMIN, "s", "p2", never, owner=True)
    rules.check_subnet_access(MEMBER, "s", "p2", lambda: True)
    with pytest.raises(Forbidden):
        rules.check_subnet_access(MEMBER, "s", "p2", lambda: True, owner=True)
    with pytest.raises(NotFound) as err:
        rules.check_subnet_access(MEMBER, "s", "p2", lambda: False)
    assert err.value.message == "subnet s not found"
    with pytest.raises(NotFound):
        rules.check_subnet_access(MEMBER, "s", None, never, found=False)


def test_visible() -> None:
    rules.check_visible(MEMBER, "port", "x", "p1")
    with pytest.raises(NotFound) as err:
        rules.check_visible(MEMBER, "trunk", "x", "p2")
    assert (err.value.message, err.value.kind) == ("trunk x not found", "trunk")
    with pytest.raises(NotFound):
        rules.check_visible(ADMIN, "port", "x", None, found=False)


# --- in use -----------------------------------------------------------------------


def test_in_use_refusals() -> None:
    rules.check_unshare("n", 0)
    rules.check_network_deletable("n", 0)
    rules.check_subnet_deletable("s", 0)
    with pytest.raises(Conflict) as err:
        rules.check_unshare("n", 2)
    assert err.value.message == (
        "network n has 2 port(s) of other projects; it cannot stop being shared"
    )
    with pytest.raises(Conflict) as err:
        rules.check_network_deletable("n", 3)
    assert err.value.message == "network n still has 3 port(s); delete them first"
    with pytest.raises(Conflict) as err:
        rules.check_subnet_deletable("s", 1)
    assert err.value.message == (
        "subnet s still has 1 allocated address(es); delete the ports first"
    )


def test_dns_nameservers_match_the_subnet_family() -> None:
    rules.check_dns_nameservers("s", 4, ["198.18.0.53"])
    with pytest.raises(InvalidInput) as err:
        rules.check_dns_nameservers("s", 4, ["198.18.0.53", "2001:db8::53"])
    assert err.value.message == "dns_nameservers entry 2001:db8::53 is not IPv4"


def test_macs_and_addresses() -> None:
    assert rules.requested_mac("n", "fa:16:3e:00:00:01", False) == "fa:16:3e:00:00:01"
    with pytest.raises(Conflict) as err:
        rules.requested_mac("n", "fa:16:3e:00:00:01", True)
    assert err.value.message == "mac_address fa:16:3e:00:00:01 is already used on network n"
    assert isinstance(rules.no_free_mac("n", "fa:16:3e"), Exhausted)


def test_members() -> None:
    rules.check_members("t", {"a", "b"}, ["a", "a"])
    with pytest.raises(NotFound) as err:
        rules.check_members("t", {"a"}, ["a", "c"])
    assert err.value.message == "sub_ports: port c is not a sub-port of trunk t"


def test_network_fields_fill_in_defaults() -> None:
    fields = rules.network_fields(NetworkCreate(name="n"), "p1")
    assert fields["project_id"] == "p1"
    assert (fields["mtu"], fields["network_type"]) == (1500, "local")
    fields = rules.network_fields(NetworkCreate(name="n", mtu=1400, network_type="vlan"), "p1")
    assert (fields["mtu"], fields["network_type"]) == (1400, "vlan")


def test_no_overlap_on_one_network() -> None:
    rules.check_no_overlap("198.18.1.0/24", "n", [V4, V6])
    with pytest.raises(Conflict) as err:
        rules.check_no_overlap("198.18.0.128/25", "n", [V6, V4])
    assert err.value.message == (
        "cidr 198.18.0.128/25 overlaps cidr 198.18.0.0/24 of subnet s4 on network n"
    )
    assert (err.value.object_id, err.value.field) == ("s4", "cidr")


def test_a_pooled_port_is_pool_marked_and_attached_to_nothing() -> None:
    from podwire.agent.pools import marks

    # The backends repeat the pools' mark (they import no agent code).
    assert rules.POOL_DEVICE_OWNER == marks.DEVICE_OWNER
    assert rules.POOL_PURPOSE_TAG in marks.host_pool_tags("h")
    tags = marks.port_tags("h", "p", 1, "e")
    assert rules.is_pooled_port("podwire:pool", "", tags)
    assert not rules.is_pooled_port("podwire:pool", "container-1", tags)  # taken by an ADD
    assert not rules.is_pooled_port("podwire:cni", "", tags)
    assert not rules.is_pooled_port("podwire:pool", "", ["podwire:purpose=attachment"])
