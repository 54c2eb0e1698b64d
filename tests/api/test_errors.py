"""Bad input gets a Neutron error naming the field and changes nothing.

Raw HTTP (httpx) against a real `podwire server`: every case compares the
admin's full view of networks, subnets, ports and trunks before and after.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo

_octets = itertools.count(100)


def snapshot(admin: httpx.Client) -> dict[str, Any]:
    out = {}
    for coll in ("networks", "subnets", "ports", "trunks"):
        response = admin.get(f"/{coll}")
        assert response.status_code == 200, response.text
        out[coll] = sorted(response.json()[coll], key=lambda o: o["id"])
    return out


@pytest.fixture
def net(alice: httpx.Client) -> Iterator[dict[str, Any]]:
    """Alice's network with one small v4 subnet (pool of 3 addresses)."""
    octet = next(_octets)
    body = {"network": {"name": unique("err-")}}
    network = alice.post("/networks", json=body).json()["network"]
    cidr = f"198.18.{octet}.0/24"
    pool = [{"start": f"198.18.{octet}.10", "end": f"198.18.{octet}.12"}]
    sub = alice.post(
        "/subnets",
        json={"subnet": {"network_id": network["id"], "cidr": cidr, "allocation_pools": pool}},
    )
    assert sub.status_code == 201, sub.text
    network["subnet"] = sub.json()["subnet"]
    try:
        yield network
    finally:
        for port in alice.get("/ports", params={"network_id": network["id"]}).json()["ports"]:
            for trunk in alice.get("/trunks", params={"port_id": port["id"]}).json()["trunks"]:
                alice.delete(f"/trunks/{trunk['id']}")
        for port in alice.get("/ports", params={"network_id": network["id"]}).json()["ports"]:
            alice.delete(f"/ports/{port['id']}")
        alice.delete(f"/networks/{network['id']}")


def expect_error(
    admin: httpx.Client,
    client: httpx.Client,
    method: str,
    path: str,
    status: int,
    names: str | None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Send, check status and body shape, that the message names ``names``,
    and that the database did not change."""
    before = snapshot(admin)
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"NeutronError"}
    error = body["NeutronError"]
    assert set(error) == {"type", "message", "detail"}
    assert error["detail"] == ""
    if names is not None:
        assert names in error["message"], error["message"]
    assert snapshot(admin) == before
    return error


def test_malformed_json(admin, alice) -> None:
    error = expect_error(
        admin, alice, "POST", "/networks", 400, "JSON", content=b'{"network": {"name": '
    )
    assert error["type"] == "HTTPBadRequest"
    expect_error(admin, alice, "POST", "/networks", 400, "empty", content=b"")


def test_body_without_the_resource_key(admin, alice) -> None:
    expect_error(admin, alice, "POST", "/networks", 400, "network", json={"name": "x"})
    expect_error(admin, alice, "POST", "/networks", 400, "network", json={"network": "x"})
    expect_error(admin, alice, "POST", "/networks", 400, "network", json=[1, 2])


def test_unknown_field(admin, alice, net) -> None:
    expect_error(
        admin, alice, "POST", "/networks", 400, "colour", json={"network": {"colour": "red"}}
    )
    expect_error(
        admin,
        alice,
        "POST",
        "/ports",
        400,
        "binding:colour",
        json={"port": {"network_id": net["id"], "binding:colour": "red"}},
    )
    # provider attributes cannot change after creation
    expect_error(
        admin,
        alice,
        "PUT",
        f"/networks/{net['id']}",
        400,
        "provider:network_type",
        json={"network": {"provider:network_type": "vlan"}},
    )


def test_wrong_types(admin, alice, net) -> None:
    expect_error(admin, alice, "POST", "/networks", 400, "mtu", json={"network": {"mtu": "big"}})
    expect_error(
        admin,
        alice,
        "POST",
        "/ports",
        400,
        "fixed_ips",
        json={"port": {"network_id": net["id"], "fixed_ips": "198.18.0.1"}},
    )
    expect_error(
        admin,
        alice,
        "POST",
        "/ports",
        400,
        "binding:profile",
        json={"port": {"network_id": net["id"], "binding:profile": "x"}},
    )
    expect_error(
        admin,
        alice,
        "POST",
        "/networks",
        400,
        "router:external",
        json={"network": {"router:external": True}},
    )


def test_invalid_cidr_ip_mac(admin, alice, net) -> None:
    for cidr in ("198.18.0.0/33", "198.18.0.1/24", "not-a-cidr"):
        expect_error(
            admin,
            alice,
            "POST",
            "/subnets",
            400,
            "cidr",
            json={"subnet": {"network_id": net["id"], "cidr": cidr}},
        )
    expect_error(
        admin,
        alice,
        "POST",
        "/ports",
        400,
        "fixed_ips.0.ip_address",
        json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "198.18.0.999"}]}},
    )
    for mac in ("zz:00:00:00:00:00", "01:00:5e:00:00:01", "0a:70:77"):
        expect_error(
            admin,
            alice,
            "POST",
            "/ports",
            400,
            "mac_address",
            json={"port": {"network_id": net["id"], "mac_address": mac}},
        )
    expect_error(
        admin,
        alice,
        "POST",
        "/ports",
        400,
        "allowed_address_pairs.0.ip_address",
        json={"port": {"network_id": net["id"], "allowed_address_pairs": [{"ip_address": "x"}]}},
    )


def test_fixed_ip_outside_its_subnet(admin, alice, net) -> None:
    outside = "198.19.254.1"
    expect_error(
        admin,
        alice,
        "POST",
        "/ports",
        400,
        outside,
        json={
            "port": {
                "network_id": net["id"],
                "fixed_ips": [{"subnet_id": net["subnet"]["id"], "ip_address": outside}],
            }
        },
    )


def test_vlan_id_out_of_range(admin, alice, net) -> None:
    for vlan in (0, 4095):
        expect_error(
            admin,
            alice,
            "POST",
            "/networks",
            400,
            "provider:segmentation_id",
            json={"network": {"provider:network_type": "vlan", "provider:segmentation_id": vlan}},
        )
    parent = alice.post("/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    child = alice.post("/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    sub_port = {"port_id": child["id"], "segmentation_type": "vlan", "segmentation_id": 4095}
    expect_error(
        admin,
        alice,
        "POST",
        "/trunks",
        400,
        "segmentation_id",
        json={"trunk": {"port_id": parent["id"], "sub_ports": [sub_port]}},
    )


def test_vlan_reused_in_a_trunk(admin, alice, net) -> None:
    ports = [
        alice.post("/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
        for _ in range(3)
    ]
    parent, child1, child2 = ports
    trunk = alice.post(
        "/trunks",
        json={
            "trunk": {
                "port_id": parent["id"],
                "sub_ports": [{"port_id": child1["id"], "segmentation_id": 10}],
            }
        },
    )
    assert trunk.status_code == 201, trunk.text
    trunk_id = trunk.json()["trunk"]["id"]
    error = expect_error(
        admin,
        alice,
        "PUT",
        f"/trunks/{trunk_id}/add_subports",
        409,
        "10",
        json={"sub_ports": [{"port_id": child2["id"], "segmentation_id": 10}]},
    )
    assert error["type"] == "Conflict"
    # Twice in one request is a 400 before the backend is asked.
    expect_error(
        admin,
        alice,
        "PUT",
        f"/trunks/{trunk_id}/add_subports",
        400,
        "segmentation_id",
        json={
            "sub_ports": [
                {"port_id": child2["id"], "segmentation_id": 20},
                {"port_id": parent["id"], "segmentation_id": 20},
            ]
        },
    )


def test_overlapping_subnets_in_one_network(admin, alice, net) -> None:
    inner = str(ipaddress.ip_network(net["subnet"]["cidr"]).subnets(new_prefix=26).__next__())
    error = expect_error(
        admin,
        alice,
        "POST",
        "/subnets",
        409,
        None,
        json={"subnet": {"network_id": net["id"], "cidr": inner}},
    )
    assert "overlap" in error["message"].lower()


def test_deleting_a_network_with_ports(admin, alice, net) -> None:
    alice.post("/ports", json={"port": {"network_id": net["id"]}})
    error = expect_error(admin, alice, "DELETE", f"/networks/{net['id']}", 409, None)
    assert error["type"] in ("Conflict", "NetworkInUse")


def test_full_subnet(admin, alice, net) -> None:
    for _ in range(3):  # the pool holds 3 addresses
        assert alice.post("/ports", json={"port": {"network_id": net["id"]}}).status_code == 201
    error = expect_error(
        admin, alice, "POST", "/ports", 409, None, json={"port": {"network_id": net["id"]}}
    )
    assert error["type"] == "IpAddressGenerationFailure"


def test_requested_address_already_in_use(admin, alice, net) -> None:
    taken = net["subnet"]["allocation_pools"][0]["start"]
    body = {"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": taken}]}}
    assert alice.post("/ports", json=body).status_code == 201
    expect_error(admin, alice, "POST", "/ports", 409, taken, json=body)


def test_not_found_and_unknown_urls(admin, alice) -> None:
    error = expect_error(admin, alice, "GET", "/ports/no-such-port", 404, None)
    assert error["type"] == "PortNotFound"
    expect_error(admin, alice, "DELETE", "/networks/no-such-network", 404, None)
    expect_error(
        admin, alice, "PUT", "/trunks/nope/add_subports", 404, None, json={"sub_ports": []}
    )
    error = expect_error(admin, alice, "GET", "/routers", 404, "/v2.0/routers")
    assert error["type"] == "HTTPNotFound"


def test_unknown_filter_is_refused_not_ignored(admin, alice) -> None:
    error = expect_error(admin, alice, "GET", "/ports", 400, "colour", params={"colour": "red"})
    assert error["type"] == "HTTPBadRequest"
    expect_error(admin, alice, "GET", "/ports", 400, "fixed_ips", params={"fixed_ips": "mac=1"})


def test_member_cannot_create_in_another_project(admin, alice, podwire_server: ServerInfo) -> None:
    bob_project = podwire_server.projects["bob"]
    for key in ("tenant_id", "project_id"):
        error = expect_error(
            admin, alice, "POST", "/networks", 403, None, json={"network": {key: bob_project}}
        )
        assert error["type"] == "HTTPForbidden"
    # tenant_id and project_id that disagree are refused outright.
    expect_error(
        admin,
        admin,
        "POST",
        "/networks",
        400,
        "tenant_id",
        json={"network": {"tenant_id": "a", "project_id": "b"}},
    )
