"""The Neutron API of `podwire server`, driven by the real openstacksdk client
(a plain token and an endpoint override, as a Neutron user would)."""

from __future__ import annotations

import ipaddress
import itertools
import os
import time

import httpx
import pytest
from openstack import exceptions as os_exc

from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo

_octets = itertools.count(1)


def v4_cidr() -> str:
    return f"198.18.{next(_octets)}.0/24"


def v6_cidr() -> str:
    return f"2001:db8:{next(_octets):x}::/64"


@pytest.fixture(scope="module")
def alice(podwire_server: ServerInfo):
    return podwire_server.sdk("alice")


@pytest.fixture(scope="module")
def bob(podwire_server: ServerInfo):
    return podwire_server.sdk("bob")


@pytest.fixture(scope="module")
def admin(podwire_server: ServerInfo):
    return podwire_server.sdk("admin")


def test_network_create_list_filter_update_delete(alice, podwire_server: ServerInfo) -> None:
    name = unique("net-")
    # provider:* are admin-only (Neutron's default policy): an admin of
    # alice's project makes the network, alice uses it.
    net = podwire_server.sdk("alice_admin").network.create_network(
        name=name,
        mtu=1400,
        provider_network_type="vlan",
        provider_segmentation_id=123,
        provider_physical_network="physnet1",
    )
    try:
        assert net.name == name
        assert net.mtu == 1400
        assert net.provider_network_type == "vlan"
        assert net.provider_segmentation_id == 123
        assert net.provider_physical_network == "physnet1"
        assert net.project_id == podwire_server.projects["alice"]
        assert net.is_router_external is False
        assert net.is_port_security_enabled is True

        assert [n.id for n in alice.network.networks(name=name)] == [net.id]
        assert net.id in {n.id for n in alice.network.networks()}
        assert list(alice.network.networks(name=unique("none-"))) == []
        assert [n.id for n in alice.network.networks(provider_segmentation_id=123)] == [net.id]
        assert alice.network.find_network(name).id == net.id

        updated = alice.network.update_network(net, name=name + "-x", mtu=1300)
        assert (updated.name, updated.mtu) == (name + "-x", 1300)
        assert alice.network.get_network(net.id).mtu == 1300
    finally:
        alice.network.delete_network(net.id)
    with pytest.raises(os_exc.NotFoundException):
        alice.network.get_network(net.id)
    assert alice.network.find_network(name + "-x") is None


def test_subnet_create_list_filter_update_delete(alice) -> None:
    net = alice.network.create_network(name=unique("net-"))
    try:
        cidr = v4_cidr()
        base = ipaddress.ip_network(cidr)
        sub = alice.network.create_subnet(
            network_id=net.id,
            name="s1",
            ip_version=4,
            cidr=cidr,
            allocation_pools=[{"start": str(base[10]), "end": str(base[20])}],
            dns_nameservers=["198.18.255.53"],
        )
        assert sub.cidr == cidr
        assert sub.ip_version == 4
        assert sub.gateway_ip == str(base[1])
        assert sub.allocation_pools == [{"start": str(base[10]), "end": str(base[20])}]
        assert sub.dns_nameservers == ["198.18.255.53"]
        assert alice.network.get_network(net.id).subnet_ids == [sub.id]

        assert [s.id for s in alice.network.subnets(network_id=net.id)] == [sub.id]
        assert [s.id for s in alice.network.subnets(cidr=cidr)] == [sub.id]
        assert [s.id for s in alice.network.subnets(network_id=net.id, ip_version=6)] == []

        updated = alice.network.update_subnet(sub, name="s2", dns_nameservers=[])
        assert (updated.name, updated.dns_nameservers) == ("s2", [])

        no_gw = alice.network.create_subnet(
            network_id=net.id, ip_version=6, cidr=v6_cidr(), gateway_ip=None
        )
        assert no_gw.gateway_ip is None

        alice.network.delete_subnet(sub.id)
        with pytest.raises(os_exc.NotFoundException):
            alice.network.get_subnet(sub.id)
        assert alice.network.get_network(net.id).subnet_ids == [no_gw.id]
    finally:
        alice.network.delete_network(net.id)


def test_dual_stack_network_gives_a_port_one_address_per_subnet(alice) -> None:
    net = alice.network.create_network(name=unique("ds-"))
    try:
        v4 = alice.network.create_subnet(network_id=net.id, ip_version=4, cidr=v4_cidr())
        v6 = alice.network.create_subnet(network_id=net.id, ip_version=6, cidr=v6_cidr())
        port = alice.network.create_port(network_id=net.id, name="dual")
        by_subnet = {f["subnet_id"]: f["ip_address"] for f in port.fixed_ips}
        assert set(by_subnet) == {v4.id, v6.id}
        assert ipaddress.ip_address(by_subnet[v4.id]) in ipaddress.ip_network(v4.cidr)
        assert ipaddress.ip_address(by_subnet[v6.id]) in ipaddress.ip_network(v6.cidr)

        # Neutron's fixed_ips filters, as openstacksdk sends them.
        v6_ip = by_subnet[v6.id]
        found = alice.network.ports(fixed_ips=f"ip_address={v6_ip}")
        assert [p.id for p in found] == [port.id]
        found = alice.network.ports(fixed_ips=f"subnet_id={v4.id}")
        assert [p.id for p in found] == [port.id]
        alice.network.delete_port(port.id)
    finally:
        alice.network.delete_network(net.id)


def test_port_create_list_filter_update_delete(alice, podwire_server: ServerInfo) -> None:
    net = alice.network.create_network(name=unique("net-"))
    try:
        cidr = v4_cidr()
        sub = alice.network.create_subnet(network_id=net.id, ip_version=4, cidr=cidr)
        wanted_ip = str(ipaddress.ip_network(cidr)[5])
        device = unique("ctr-")
        # binding:* are for admins and the service role (a host's agent).
        agent = podwire_server.sdk("alice_service")
        port = agent.network.create_port(
            network_id=net.id,
            name="p1",
            mac_address="0a:70:77:12:34:56",
            fixed_ips=[{"subnet_id": sub.id, "ip_address": wanted_ip}],
            device_id=device,
            device_owner="compute:container",
            binding_host_id="node-1",
            binding_vnic_type="normal",
            binding_profile={"physical_network": "physnet1"},
        )
        assert port.mac_address == "0a:70:77:12:34:56"
        assert port.fixed_ips == [{"subnet_id": sub.id, "ip_address": wanted_ip}]
        assert port.binding_host_id == "node-1"
        assert port.binding_profile == {"physical_network": "physnet1"}
        assert port.binding_vnic_type == "normal"
        assert port.is_port_security_enabled is True
        assert port.project_id == podwire_server.projects["alice"]

        other = alice.network.create_port(network_id=net.id, name="p2")
        assert [p.id for p in alice.network.ports(device_id=device)] == [port.id]
        assert {p.id for p in alice.network.ports(network_id=net.id)} == {port.id, other.id}
        assert [p.id for p in alice.network.ports(name="p2", network_id=net.id)] == [other.id]
        assert [p.id for p in alice.network.ports(binding_host_id="node-1")] == [port.id]
        # Repeated values of one filter are OR-ed.
        both = alice.network.ports(network_id=net.id, name=["p1", "p2"])
        assert {p.id for p in both} == {port.id, other.id}

        updated = agent.network.update_port(
            port, name="p1-renamed", device_id="", binding_host_id="node-2"
        )
        assert updated.name == "p1-renamed"
        assert updated.device_id == ""
        assert updated.binding_host_id == "node-2"
        # Updating one binding attribute keeps the others (Neutron semantics).
        assert updated.binding_profile == {"physical_network": "physnet1"}

        alice.network.delete_port(other.id)
        with pytest.raises(os_exc.NotFoundException):
            alice.network.get_port(other.id)
        # Deleting again: 404, the object is gone.
        with pytest.raises(os_exc.NotFoundException):
            alice.network.delete_port(other.id, ignore_missing=False)
        alice.network.delete_port(port.id)
    finally:
        alice.network.delete_network(net.id)


def test_port_allowed_address_pairs(alice) -> None:
    net = alice.network.create_network(name=unique("aap-"))
    try:
        alice.network.create_subnet(network_id=net.id, ip_version=4, cidr=v4_cidr())
        port = alice.network.create_port(
            network_id=net.id,
            allowed_address_pairs=[
                {"ip_address": "198.19.1.10"},
                {"ip_address": "198.19.2.0/24", "mac_address": "0a:70:77:aa:bb:cc"},
            ],
        )
        # Neutron fills a pair's missing MAC with the port's own.
        assert port.allowed_address_pairs == [
            {"ip_address": "198.19.1.10", "mac_address": port.mac_address},
            {"ip_address": "198.19.2.0/24", "mac_address": "0a:70:77:aa:bb:cc"},
        ]
        updated = alice.network.update_port(
            port, allowed_address_pairs=[{"ip_address": "2001:db8:ffff::5"}]
        )
        assert updated.allowed_address_pairs == [
            {"ip_address": "2001:db8:ffff::5", "mac_address": port.mac_address}
        ]
        assert alice.network.get_port(port.id).allowed_address_pairs == (
            updated.allowed_address_pairs
        )
        cleared = alice.network.update_port(port, allowed_address_pairs=[])
        assert cleared.allowed_address_pairs == []
        alice.network.delete_port(port.id)
    finally:
        alice.network.delete_network(net.id)


def test_trunk_with_subports(alice) -> None:
    net = alice.network.create_network(name=unique("trk-"))
    try:
        alice.network.create_subnet(network_id=net.id, ip_version=4, cidr=v4_cidr())
        parent = alice.network.create_port(network_id=net.id, name="parent")
        child1 = alice.network.create_port(network_id=net.id, name="child1")
        child2 = alice.network.create_port(network_id=net.id, name="child2")
        trunk = alice.network.create_trunk(
            name="t1",
            port_id=parent.id,
            sub_ports=[{"port_id": child1.id, "segmentation_type": "vlan", "segmentation_id": 101}],
        )
        assert trunk.port_id == parent.id
        assert trunk.sub_ports == [
            {"port_id": child1.id, "segmentation_type": "vlan", "segmentation_id": 101}
        ]
        assert [t.id for t in alice.network.trunks(port_id=parent.id)] == [trunk.id]
        assert [t.id for t in alice.network.trunks(name="t1")] == [trunk.id]

        trunk = alice.network.add_trunk_subports(
            trunk, [{"port_id": child2.id, "segmentation_type": "vlan", "segmentation_id": 102}]
        )
        assert {s["segmentation_id"] for s in trunk.sub_ports} == {101, 102}
        listed = alice.network.get_trunk_subports(trunk)
        assert sorted(s["segmentation_id"] for s in listed["sub_ports"]) == [101, 102]

        # trunk-details: the parent port names its trunk and sub-ports (with
        # MACs), in show and in list; other ports carry no trunk_details.
        details = alice.network.get_port(parent.id).trunk_details
        assert details["trunk_id"] == trunk.id
        assert sorted(
            (s["segmentation_id"], s["port_id"], s["mac_address"]) for s in details["sub_ports"]
        ) == [(101, child1.id, child1.mac_address), (102, child2.id, child2.mac_address)]
        by_id = {p.id: p for p in alice.network.ports(network_id=net.id)}
        assert by_id[parent.id].trunk_details == details
        assert by_id[child1.id].trunk_details is None

        trunk = alice.network.delete_trunk_subports(trunk, [{"port_id": child1.id}])
        assert trunk.sub_ports == [
            {"port_id": child2.id, "segmentation_type": "vlan", "segmentation_id": 102}
        ]
        assert alice.network.get_trunk(trunk.id).sub_ports == trunk.sub_ports

        renamed = alice.network.update_trunk(trunk, name="t2")
        assert renamed.name == "t2"

        alice.network.delete_trunk(trunk.id)
        with pytest.raises(os_exc.NotFoundException):
            alice.network.get_trunk(trunk.id)
        # The ports outlive their trunk.
        assert alice.network.get_port(child2.id).id == child2.id
        for p in (parent, child1, child2):
            alice.network.delete_port(p.id)
    finally:
        alice.network.delete_network(net.id)


def test_projects_cannot_see_or_touch_each_other(
    alice, bob, admin, podwire_server: ServerInfo
) -> None:
    a_net = alice.network.create_network(name=unique("a-"))
    b_net = bob.network.create_network(name=unique("b-"))
    try:
        a_sub = alice.network.create_subnet(network_id=a_net.id, ip_version=4, cidr=v4_cidr())
        a_port = alice.network.create_port(network_id=a_net.id)

        # Bob sees only his own objects; Alice's ids are 404 to him.
        assert a_net.id not in {n.id for n in bob.network.networks()}
        assert b_net.id in {n.id for n in bob.network.networks()}
        assert a_port.id not in {p.id for p in bob.network.ports()}
        assert a_sub.id not in {s.id for s in bob.network.subnets()}
        for call in (
            lambda: bob.network.get_network(a_net.id),
            lambda: bob.network.get_subnet(a_sub.id),
            lambda: bob.network.get_port(a_port.id),
            lambda: bob.network.update_network(a_net.id, name="stolen"),
            lambda: bob.network.update_port(a_port.id, name="stolen"),
            lambda: bob.network.delete_port(a_port.id, ignore_missing=False),
            lambda: bob.network.delete_network(a_net.id, ignore_missing=False),
            lambda: bob.network.create_port(network_id=a_net.id),
            lambda: bob.network.create_subnet(network_id=a_net.id, ip_version=4, cidr=v4_cidr()),
        ):
            with pytest.raises(os_exc.NotFoundException):
                call()
        # Nothing Bob tried changed Alice's objects.
        assert alice.network.get_network(a_net.id).name == a_net.name
        assert alice.network.get_port(a_port.id).name == a_port.name
        assert [p.id for p in alice.network.ports(network_id=a_net.id)] == [a_port.id]

        # A member may not create in another project.
        with pytest.raises(os_exc.HttpException) as info:
            bob.network.create_network(name="x", project_id=podwire_server.projects["alice"])
        assert info.value.status_code == 403

        # The admin sees both projects and may filter by project.
        all_ids = {n.id for n in admin.network.networks()}
        assert {a_net.id, b_net.id} <= all_ids
        only_alice = admin.network.networks(project_id=podwire_server.projects["alice"])
        assert a_net.id in {n.id for n in only_alice}
        assert b_net.id not in {n.id for n in only_alice}
        assert admin.network.get_port(a_port.id).id == a_port.id
        alice.network.delete_port(a_port.id)
    finally:
        alice.network.delete_network(a_net.id)
        bob.network.delete_network(b_net.id)


def test_shared_network_is_visible_to_other_projects(
    alice, bob, podwire_server: ServerInfo
) -> None:
    # shared is admin-only: an admin of alice's project shares alice's network.
    net = podwire_server.sdk("alice_admin").network.create_network(name=unique("sh-"), shared=True)
    try:
        alice.network.create_subnet(network_id=net.id, ip_version=4, cidr=v4_cidr())
        assert bob.network.get_network(net.id).is_shared is True
        assert net.id in {n.id for n in bob.network.networks()}
        # ...and other projects may plug ports into it, which stay theirs.
        port = bob.network.create_port(network_id=net.id)
        assert port.id not in {p.id for p in alice.network.ports(network_id=net.id)}
        bob.network.delete_port(port.id)
    finally:
        alice.network.delete_network(net.id)


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_missing_or_unknown_token_is_401(podwire_server: ServerInfo, token: str | None) -> None:
    headers = {} if token is None else {"X-Auth-Token": token}
    for method, path in (
        ("GET", "/v2.0/networks"),
        ("POST", "/v2.0/networks"),
        ("GET", "/v2.0/ports/whatever"),
        ("DELETE", "/v2.0/ports/whatever"),
        ("PUT", "/v2.0/trunks/whatever/add_subports"),
    ):
        response = httpx.request(
            method, podwire_server.url + path, headers=headers, json={"network": {"name": "x"}}
        )
        assert response.status_code == 401, (method, path, response.text)
        error = response.json()["NeutronError"]
        assert error["type"] == "HTTPUnauthorized"
        assert "X-Auth-Token" in error["message"]
        assert error["detail"] == ""


def test_openstacksdk_with_a_bad_token_gets_401(podwire_server: ServerInfo) -> None:
    podwire_server.tokens["mallory"] = "tok-nobody-issued-this"
    try:
        conn = podwire_server.sdk("mallory")
        with pytest.raises(os_exc.HttpException) as info:
            list(conn.network.networks())
        assert info.value.status_code == 401
    finally:
        del podwire_server.tokens["mallory"]


def test_server_with_two_workers_shares_one_database() -> None:
    from tests.fixtures.server import start_podwire_server

    with start_podwire_server(workers=2) as server:
        conns = [server.sdk("alice") for _ in range(4)]
        net = conns[0].network.create_network(name="w2")
        conns[1].network.create_subnet(network_id=net.id, ip_version=4, cidr="198.18.80.0/28")
        # New connections land on either worker; all see the same ports and
        # no address is handed out twice.
        ports = [conns[i % 4].network.create_port(network_id=net.id) for i in range(12)]
        ips = [p.fixed_ips[0]["ip_address"] for p in ports]
        assert len(set(ips)) == 12
        for conn in conns:
            assert len(list(conn.network.ports(network_id=net.id))) == 12
        group = server.process.pid  # the server leads its own process group
    # SIGTERM to the server stopped its workers too: the group is empty.
    deadline = time.monotonic() + 10
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "server workers outlived the server"
        time.sleep(0.1)


def test_port_fixed_ips_update_moves_the_address(alice) -> None:
    net = alice.network.create_network(name=unique("mv-"))
    try:
        cidr = v4_cidr()
        sub = alice.network.create_subnet(network_id=net.id, ip_version=4, cidr=cidr)
        hosts = ipaddress.ip_network(cidr)
        first, second = str(hosts[20]), str(hosts[21])
        port = alice.network.create_port(
            network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": first}]
        )
        moved = alice.network.update_port(
            port, fixed_ips=[{"subnet_id": sub.id, "ip_address": second}]
        )
        assert moved.fixed_ips == [{"subnet_id": sub.id, "ip_address": second}]
        # The old address is free again, the new one is taken.
        other = alice.network.create_port(
            network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": first}]
        )
        with pytest.raises(os_exc.ConflictException):
            alice.network.create_port(
                network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": second}]
            )
        for p in (port, other):
            alice.network.delete_port(p.id)
    finally:
        alice.network.delete_network(net.id)
