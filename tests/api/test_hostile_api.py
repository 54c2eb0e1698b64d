"""Hostile input on the Neutron API (issue 14, classes 9-12), raw HTTP
against a real `podwire server`: Neutron's default policy for admin-only
attributes (403 for a member; the service role of a host's agent may bind),
filter values checked by type and range, field and body size limits, and
the validation gaps. Every refused call leaves the database as it was.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.test_errors import expect_error, snapshot
from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo

_octets = itertools.count(150)


@pytest.fixture(scope="module")
def agent(podwire_server: ServerInfo) -> Iterator[httpx.Client]:
    """Alice's host agent: alice's project, roles member and service."""
    with podwire_server.http("alice_service") as client:
        yield client


@pytest.fixture
def net(alice: httpx.Client) -> Iterator[dict[str, Any]]:
    octet = next(_octets)
    network = alice.post("/networks", json={"network": {"name": unique("pw14-")}}).json()["network"]
    sub = alice.post(
        "/subnets",
        json={"subnet": {"network_id": network["id"], "cidr": f"198.18.{octet}.0/24"}},
    )
    assert sub.status_code == 201, sub.text
    v6 = alice.post(
        "/subnets",
        json={"subnet": {"network_id": network["id"], "cidr": f"2001:db8:14{octet:02x}::/64"}},
    )
    assert v6.status_code == 201, v6.text
    network["subnet"], network["subnet6"] = sub.json()["subnet"], v6.json()["subnet"]
    try:
        yield network
    finally:
        for port in alice.get("/ports", params={"network_id": network["id"]}).json()["ports"]:
            alice.delete(f"/ports/{port['id']}")
        alice.delete(f"/networks/{network['id']}")


# --- class 9: Neutron's default policy ---------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("shared", True),
        ("provider:network_type", "vlan"),
        ("provider:physical_network", "physnet1"),
        ("provider:segmentation_id", 5),
    ],
)
def test_member_may_not_create_networks_with_admin_fields(
    admin: httpx.Client, alice: httpx.Client, field: str, value: Any
) -> None:
    body: dict[str, Any] = {"name": unique("pw14-"), field: value}
    if field == "provider:segmentation_id":
        body["provider:network_type"] = "vlan"
    error = expect_error(admin, alice, "POST", "/networks", 403, None, json={"network": body})
    assert error["type"] == "PolicyNotAuthorized"


def test_member_may_not_update_admin_fields(
    admin: httpx.Client, alice: httpx.Client, agent: httpx.Client, net: dict[str, Any]
) -> None:
    for shared in (True, False):
        expect_error(
            admin, alice, "PUT", f"/networks/{net['id']}", 403, "shared",
            json={"network": {"shared": shared}},
        )  # fmt: skip
    port = alice.post("/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    for field, value in (
        ("binding:host_id", "node-9"),
        ("binding:profile", {"a": 1}),
        ("binding:vif_type", "ovs"),
        ("binding:vif_details", {"a": 1}),
        ("status", "ACTIVE"),
    ):
        error = expect_error(
            admin, alice, "PUT", f"/ports/{port['id']}", 403, field, json={"port": {field: value}}
        )
        assert error["type"] == "PolicyNotAuthorized"
        create = {"network_id": net["id"], field: value}
        if field != "status":  # status is no create attribute at all: 400
            expect_error(admin, alice, "POST", "/ports", 403, field, json={"port": create})
    # The agent binds through its role; an admin too.
    bound = agent.put(
        f"/ports/{port['id']}",
        json={
            "port": {"binding:host_id": "node-1", "binding:profile": {"a": 1}, "status": "ACTIVE"}
        },
    )
    assert bound.status_code == 200, bound.text
    assert (bound.json()["port"]["binding:host_id"], bound.json()["port"]["status"]) == (
        "node-1",
        "ACTIVE",
    )
    # ...but the service role is not admin: shared and provider stay refused.
    expect_error(
        admin, agent, "PUT", f"/networks/{net['id']}", 403, "shared",
        json={"network": {"shared": True}},
    )  # fmt: skip
    assert admin.put(f"/networks/{net['id']}", json={"network": {"shared": True}}).is_success
    assert admin.put(f"/networks/{net['id']}", json={"network": {"shared": False}}).is_success


def test_defaults_are_not_policy_matters(alice: httpx.Client) -> None:
    """Neutron checks only attributes explicitly set: a member may send a
    default (shared false, an empty host id)."""
    body = {"name": unique("pw14-"), "shared": False, "router:external": False}
    made = alice.post("/networks", json={"network": body})
    assert made.status_code == 201, made.text
    port = alice.post(
        "/ports", json={"port": {"network_id": made.json()["network"]["id"], "binding:host_id": ""}}
    )
    assert port.status_code == 201, port.text
    alice.delete(f"/ports/{port.json()['port']['id']}")
    alice.delete(f"/networks/{made.json()['network']['id']}")


# --- class 10: filter values --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/networks?mtu=99999999999999999999999",
        "/networks?mtu=-1",
        "/networks?mtu=abc",
        "/networks?mtu=1%C2%B2",
        "/networks?provider:segmentation_id=99999999999999999999",
        "/subnets?ip_version=99999999999999999999999",
        "/subnets?ip_version=5",
        "/ports?admin_state_up=yes",
        "/ports?name=" + "x" * 300,
    ],
)
def test_filter_values_are_checked_by_type_and_range(
    admin: httpx.Client, alice: httpx.Client, path: str
) -> None:
    expect_error(admin, alice, "GET", path, 400, None)


def test_good_integer_filters_still_match(alice: httpx.Client, net: dict[str, Any]) -> None:
    found = alice.get("/subnets", params={"ip_version": "6", "network_id": net["id"]})
    assert [s["id"] for s in found.json()["subnets"]] == [net["subnet6"]["id"]]
    mtu = alice.get(f"/networks/{net['id']}").json()["network"]["mtu"]
    assert net["id"] in {n["id"] for n in alice.get(f"/networks?mtu={mtu}").json()["networks"]}


# --- class 11: size limits ----------------------------------------------------------------


def test_field_limits(admin: httpx.Client, alice: httpx.Client, net: dict[str, Any]) -> None:
    big = "x" * 256
    for field in ("name", "description"):
        expect_error(admin, alice, "POST", "/networks", 400, field, json={"network": {field: big}})
    for field in ("description", "device_id", "device_owner", "name"):
        body = {"network_id": net["id"], field: big}
        expect_error(admin, alice, "POST", "/ports", 400, field, json={"port": body})
    expect_error(
        admin, admin, "POST", "/ports", 400, "binding:profile",
        json={"port": {"network_id": net["id"], "binding:profile": {"k": "x" * 5000}}},
    )  # fmt: skip
    expect_error(
        admin, alice, "PUT", f"/subnets/{net['subnet']['id']}", 400, "dns_nameservers",
        json={"subnet": {"dns_nameservers": [f"198.18.0.{i}" for i in range(1, 7)]}},
    )  # fmt: skip
    ok = alice.put(
        f"/subnets/{net['subnet']['id']}",
        json={"subnet": {"dns_nameservers": [f"198.18.0.{i}" for i in range(1, 6)]}},
    )
    assert ok.status_code == 200, ok.text


def test_request_body_limit(admin: httpx.Client, alice: httpx.Client) -> None:
    huge = {"network": {"name": "n", "description": "x" * (10 << 20)}}
    error = expect_error(admin, alice, "POST", "/networks", 413, "bytes", json=huge)
    assert error["type"] == "HTTPRequestEntityTooLarge"

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused as it streams in
        yield b'{"network": {"description": "'
        for _ in range(200):
            yield b"x" * 65536

    expect_error(admin, alice, "POST", "/networks", 413, "bytes", content=chunks())


# --- class 12: validation gaps ----------------------------------------------------------


def test_validation_gaps(admin: httpx.Client, alice: httpx.Client, net: dict[str, Any]) -> None:
    expect_error(
        admin, alice, "POST", "/subnets", 400, "cidr",
        json={"subnet": {"network_id": net["id"], "cidr": "198.18.53.0"}},
    )  # fmt: skip
    for mac in ("00:00:00:00:00:00", "0a:70:77:00:00:01 ", " 0a:70:77:00:00:01"):
        body = {"network_id": net["id"], "mac_address": mac}
        expect_error(admin, alice, "POST", "/ports", 400, "mac_address", json={"port": body})
    anycast = net["subnet6"]["cidr"].split("/")[0]
    expect_error(
        admin, alice, "POST", "/ports", 400, "anycast",
        json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": anycast}]}},
    )  # fmt: skip
    for field, value in (("shared", "yes"), ("admin_state_up", "on"), ("admin_state_up", 2)):
        body = {"name": "n", field: value}
        expect_error(admin, admin, "POST", "/networks", 400, field, json={"network": body})
    body = {"network_id": net["id"], "binding:host_id": "a", "binding.host_id": "b"}
    expect_error(admin, admin, "POST", "/ports", 400, "binding.host_id", json={"port": body})
    # Neutron's own spellings of booleans still work.
    made = alice.post("/networks", json={"network": {"name": "n", "admin_state_up": "True"}})
    assert made.status_code == 201 and made.json()["network"]["admin_state_up"] is True
    alice.delete(f"/networks/{made.json()['network']['id']}")


def test_fuzzed_bodies_are_4xx_never_500(admin: httpx.Client, alice: httpx.Client) -> None:
    rng = random.Random(1414)
    values: list[Any] = [
        None, True, "yes", "", "x" * 300, -1, 2**70, 1.5, [], {}, ["a"], {"a": [1]},
        "198.18.0.0", "00:00:00:00:00:00", "2001:db8::/64",
    ]  # fmt: skip
    fields = [
        "name", "description", "shared", "admin_state_up", "mtu", "provider:network_type",
        "provider:segmentation_id", "port_security_enabled", "router:external", "tenant_id",
    ]  # fmt: skip
    before = snapshot(admin)
    for _ in range(60):
        body = {f: rng.choice(values) for f in rng.sample(fields, 3)}
        for who in (alice, admin):
            got = who.post("/networks", json={"network": body})
            assert got.status_code < 500, (body, got.text)
            if got.status_code == 201:
                admin.delete(f"/networks/{got.json()['network']['id']}")
    assert snapshot(admin) == before
