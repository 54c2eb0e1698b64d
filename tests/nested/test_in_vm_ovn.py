"""The nested kinds in a real VM on OVN: ``podwire server --backend ovn``
fronts the northbound database; the VM's tap is on the integration bridge
with iface-id = the VM's port, and its agent reaches the API only through
that port (the API is served from a container on the same logical switch).

ipvlan: the containers' addresses on the VM port's pairs become OVN
port_security, so they pass while a source outside the pairs is dropped.
VLAN: each container's port is a Logical_Switch_Port with parent_name = the
VM's port and tag = its VLAN id; ovn-controller strips and adds the tags.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest

from podwire.model import NetworkCreate, PortCreate, SubnetCreate
from tests.fixtures.agent import SHIM, CniAnswer, netconf
from tests.fixtures.uml import PW9_NET, Guest, NestedWorld, second_vm_ovn
from tests.nested.helpers import assert_clean, containers, pairs, ping

pytestmark = [pytest.mark.vm, pytest.mark.ovn]


def _port_security(world: NestedWorld) -> str:
    return str(
        world.ovn.nbctl(
            "--bare", "--columns=port_security", "list", "Logical_Switch_Port", world.vm_port_id
        )
    )


def _lsp_type(world: NestedWorld, port_id: str) -> list[str]:
    return str(
        world.ovn.nbctl("--bare", "--columns=type,options", "list", "Logical_Switch_Port", port_id)
    ).split()


def _container_ports(world: NestedWorld) -> dict[str, str]:
    """The VM's containers' ports: {IPv4 address: port id}."""
    with world.backend() as alice:
        ports = alice.list_ports(world.ctx(), {"network_id": [world.network_id]})
    return {
        f.ip_address: p.id
        for p in ports
        if any(t.startswith("podwire:host=pw9-vm") for t in p.tags)
        for f in p.fixed_ips
        if ":" not in f.ip_address
    }


def _host_ping(world: NestedWorld, address: str) -> None:
    """From the host's container (outside the VM) to ``address``."""
    import subprocess

    answer = subprocess.run(
        ["ip", "netns", "exec", world.host_netns, "busybox", "ping", "-c1", "-W2", address],
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 0, f"host container cannot reach {address}: {answer.stdout}"


# The default kind the VM's agent runs with now (None: ipvlan_nested): an
# agent restart costs seconds in UML, so a test switches only when needed.
_KIND: dict[str, str | None] = {"now": None}


def _use_kind(guest: Guest, kind: str | None) -> None:
    if _KIND["now"] != kind:
        guest.restart_agent(default_kind=kind)
        _KIND["now"] = kind


def test_ipvlan_containers_pass_traffic_on_ovn(nested_world_ovn: NestedWorld) -> None:
    _pair_kind_traffic(nested_world_ovn, None)


def test_a_source_outside_the_pairs_is_dropped(nested_world_ovn: NestedWorld) -> None:
    """An ipvlan the agent did not make (its address on no pair) cannot send."""
    world, guest = nested_world_ovn, nested_world_ovn.guest
    host_v4 = next(a for a in world.host_addresses if ":" not in a)
    try:
        guest.run(
            "ip netns add pw9spoof && ip link add pw9s link eth0 type ipvlan mode l2"
            " && ip link set pw9s netns pw9spoof"
            " && ip netns exec pw9spoof ip addr add 198.18.210.250/24 dev pw9s"
            " && ip netns exec pw9spoof ip link set pw9s up"
        ).check()
        answer = guest.run(f"ip netns exec pw9spoof busybox ping -c2 -W2 {host_v4}", timeout=30)
        assert answer.rc != 0, answer.stdout
    finally:
        guest.run("ip netns del pw9spoof")


@pytest.fixture(scope="module")
def ovn_vlan_network(nested_world_ovn: NestedWorld) -> Iterator[tuple[str, str]]:
    """alice's second logical switch (datapath "vlan") and a host container on
    it; yields (network name, the host container's IPv4 address)."""
    world = nested_world_ovn
    with world.backend() as alice:
        net = alice.create_network(world.ctx(), NetworkCreate(name="pw9-ovnvlan", datapath="vlan"))
        alice.create_subnet(world.ctx(), SubnetCreate(network_id=net.id, cidr="198.18.211.0/24"))
    netns = world.host_netns + "v"
    import subprocess

    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        added = world.host_agent.cni(
            "ADD",
            netconf("pw9-ovnvlan", "1.0.0"),
            container_id=netns,
            netns=f"/var/run/netns/{netns}",
        )
        assert added.code == 0, added.stderr
        yield "pw9-ovnvlan", added.json["ips"][0]["address"].split("/")[0]
    finally:
        world.host_agent.cni(
            "DEL",
            netconf("pw9-ovnvlan", "1.0.0"),
            container_id=netns,
            netns=f"/var/run/netns/{netns}",
        )
        subprocess.run(["ip", "netns", "del", netns], check=False)
        with world.backend() as alice, contextlib.suppress(Exception):
            alice.delete_network(world.ctx(), net.id)


def test_vlan_sub_ports_are_parent_name_and_tag(
    nested_world_ovn: NestedWorld, ovn_vlan_network: tuple[str, str]
) -> None:
    world, guest = nested_world_ovn, nested_world_ovn.guest
    network, host_v4 = ovn_vlan_network
    with containers(world, 2, network) as (c1, c2):
        with world.backend() as alice:
            (trunk,) = alice.list_trunks(world.ctx(), {"port_id": [world.vm_port_id]})
        assert sorted(sp.segmentation_id for sp in trunk.sub_ports) == [1, 2]
        for sp in trunk.sub_ports:
            row = world.ovn.nbctl(
                "--bare", "--columns=parent_name,tag", "list", "Logical_Switch_Port", sp.port_id
            ).split()
            assert row == [world.vm_port_id, str(sp.segmentation_id)], row
        for address in [c2["ips"][0], host_v4]:
            ping(guest, c1["netns"], address)
    assert_clean(world)


def test_ovn_server_fronts_the_same_api(nested_world_ovn: NestedWorld) -> None:
    """The VM port as the API reports it is the OVN row (revision, pairs)."""
    world = nested_world_ovn
    with world.backend() as alice:
        vm = alice.get_port(world.ctx(), world.vm_port_id)
    assert vm.network_id == world.network_id and vm.revision_number >= 0
    assert PW9_NET in world.ovn.nbctl("--bare", "--columns=external_ids", "list", "Logical_Switch")


def _cni_add(guest: Guest, config: dict[str, object], name: str) -> CniAnswer:
    """An ADD with a config of the test's own (Guest.cni sends a plain one)."""
    env = {
        "PODWIRE_AGENT_SOCKET": guest.agent_socket,
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": name,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_NETNS": f"/run/netns/{name}",
    }
    answer = guest.run(str(SHIM), stdin=json.dumps(config), env=env, timeout=120)
    return CniAnswer(answer.rc, answer.stdout.encode(), answer.stderr.encode())


def test_another_projects_network_or_port_is_forbidden(nested_world_ovn: NestedWorld) -> None:
    """The agent in the VM acts for alice's project: a network or port of
    bob's named in a request is refused as forbidden before anything is
    made, and nothing changes (pairs, ports, the guest's interfaces)."""
    world, guest = nested_world_ovn, nested_world_ovn.guest
    with world.backend("bob") as bob:
        net = bob.create_network(world.ctx("bob"), NetworkCreate(name="pwo-bobnet"))
        bob.create_subnet(world.ctx("bob"), SubnetCreate(network_id=net.id, cidr="198.18.212.0/24"))
        bobs_port = bob.create_port(world.ctx("bob"), PortCreate(network_id=net.id))
    with world.backend() as alice:
        before = {p.id: p.revision_number for p in alice.list_ports(world.ctx())}
    name = "pwof" + uuid.uuid4().hex[:6]
    guest.run(f"ip netns add {name}").check()
    try:
        cases = {
            "network": netconf(net.id, "1.0.0"),
            "port": {
                "cniVersion": "1.0.0",
                "name": PW9_NET,
                "type": "podwire",
                "networks": [{"name": PW9_NET, "port": bobs_port.id}],
            },
        }
        for what, config in cases.items():
            answer = _cni_add(guest, config, name)
            assert answer.code != 0, answer.stdout
            assert answer.json["msg"].startswith(f"forbidden: {what}"), answer.json
            guest.cni("DEL", PW9_NET, container_id=name, netns=f"/run/netns/{name}")
        with world.backend() as alice:
            after = {p.id: p.revision_number for p in alice.list_ports(world.ctx())}
        assert after == before
        with world.backend("bob") as bob:
            again = bob.get_port(world.ctx("bob"), bobs_port.id)
            assert again.device_id == "" and again.revision_number == bobs_port.revision_number
            assert [p.id for p in bob.list_ports(world.ctx("bob"))] == [bobs_port.id]
    finally:
        guest.run(f"ip netns del {name}")
        with world.backend("bob") as bob:
            bob.delete_port(world.ctx("bob"), bobs_port.id)
            bob.delete_network(world.ctx("bob"), net.id)
    assert_clean(world)


@pytest.fixture(scope="module")
def second_vm(nested_world_ovn: NestedWorld) -> Iterator[NestedWorld]:
    with second_vm_ovn(nested_world_ovn) as world:
        yield world


def test_two_vms_containers_on_one_logical_switch(
    nested_world_ovn: NestedWorld,
    second_vm: NestedWorld,
    ovn_vlan_network: tuple[str, str],
) -> None:
    """Issue 9, item 5: containers of two VMs on the same logical switch
    reach each other, over IPv4 and IPv6 through the VM ports' pairs
    (ipvlan), and through each VM's sub-ports on a second switch (VLAN)."""
    first, second = nested_world_ovn, second_vm
    vlan_network, _ = ovn_vlan_network
    _use_kind(first.guest, None)
    with containers(first, 1) as (a,), containers(second, 1) as (b,):
        for address in b["ips"]:
            ping(first.guest, a["netns"], address)
        for address in a["ips"]:
            ping(second.guest, b["netns"], address)
    with containers(first, 1, vlan_network) as (a,), containers(second, 1, vlan_network) as (b,):
        ping(first.guest, a["netns"], b["ips"][0])
    assert_clean(first)
    assert_clean(second)


def _pair_kind_traffic(world: NestedWorld, kind: str | None) -> None:
    """Two containers in the VM reach each other and the host's container
    over IPv4 and IPv6, both ways; their own ports are OVN virtual ports
    whose parent is the VM's port (podwire/backends/ovn/virtual.py), and the
    VM port's port_security holds exactly their pairs while they live."""
    guest = world.guest
    _use_kind(guest, kind)
    with containers(world, 2) as (c1, c2):
        macs = {c["netns"]: c["mac"] if kind else guest.mac for c in (c1, c2)}
        if kind is None:
            assert c1["mac"] == c2["mac"] == guest.mac  # ipvlan: the VM's MAC
        assert pairs(world) == {(ip, macs[c["netns"]]) for c in (c1, c2) for ip in c["ips"]}
        security = _port_security(world)
        assert all(ip in security for ip in c1["ips"] + c2["ips"]), security
        for v4, port_id in _container_ports(world).items():
            row = _lsp_type(world, port_id)
            assert row[:1] == ["virtual"], row
            assert f"virtual-ip={v4}" in row and f"virtual-parents={world.vm_port_id}" in row
        for address in c2["ips"] + world.host_addresses:
            ping(guest, c1["netns"], address)
        for address in c1["ips"]:
            _host_ping(world, address)
    assert_clean(world)
    security = _port_security(world)
    assert not any(ip in security for ip in c1["ips"] + c2["ips"]), security


def test_macvlan_containers_pass_traffic_on_ovn(nested_world_ovn: NestedWorld) -> None:
    """Last in the module: the agent stays on macvlan_nested afterwards
    (_use_kind switches back for a test that needs ipvlan)."""
    _pair_kind_traffic(nested_world_ovn, "macvlan_nested")
