"""Containers inside a real VM (user-mode Linux, tests/fixtures/uml.py): the
agent and the CNI shim run in the guest, reach ``podwire server`` over the
VM's own NIC with alice's token, and put containers (netns in the guest) on
ipvlan, macvlan and VLAN sub-interfaces of that NIC.

One VM per session; each case here cleans up what it made (DEL), and checks
what a user sees: packets pass, the VM port's allowed_address_pairs hold
exactly the containers' addresses, nothing is left after DEL.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest

from podwire.model import AllowedAddressPair, NetworkCreate, PortUpdate, SubnetCreate
from tests.fixtures.uml import PW9_NET, NestedWorld
from tests.nested.helpers import assert_clean, containers, pairs, ping

pytestmark = pytest.mark.vm


def test_ipvlan_containers_reach_each_other_and_the_host(nested_world: NestedWorld) -> None:
    world, guest = nested_world, nested_world.guest
    with containers(world, 2) as (c1, c2):
        # ipvlan: the slave carries the VM's own MAC.
        assert c1["mac"] == guest.mac and c2["mac"] == guest.mac
        assert guest.run(f"ip netns exec {c1['netns']} ip -d link show eth0").stdout.count("ipvlan")
        for address in c2["ips"] + world.host_addresses:
            ping(guest, c1["netns"], address)
        # Exactly the containers' addresses, with the VM port's own MAC.
        assert pairs(world) == {(ip, guest.mac) for ip in c1["ips"] + c2["ips"]}
    assert_clean(world)


def test_mtu_above_the_nic_is_refused_and_changes_nothing(nested_world: NestedWorld) -> None:
    world, guest = nested_world, nested_world.guest
    with world.backend() as alice:
        before = alice.get_port(world.ctx(), world.vm_port_id)
        big = alice.create_network(world.ctx(), NetworkCreate(name="pw9-jumbo", mtu=9000))
        alice.create_subnet(world.ctx(), SubnetCreate(network_id=big.id, cidr="198.18.202.0/24"))
    try:
        guest.run("ip netns add pw9mtu").check()
        answer = guest.cni("ADD", "pw9-jumbo", container_id="pw9mtu", netns="/run/netns/pw9mtu")
        assert answer.code != 0
        assert "MTU 9000" in answer.json["msg"] + answer.json.get("details", ""), answer.json
        with world.backend() as alice:
            after = alice.get_port(world.ctx(), world.vm_port_id)
            assert after.allowed_address_pairs == before.allowed_address_pairs
            assert alice.list_ports(world.ctx(), {"network_id": [big.id]}) == []
    finally:
        guest.cni("DEL", "pw9-jumbo", container_id="pw9mtu", netns="/run/netns/pw9mtu")
        guest.run("ip netns del pw9mtu")
        with world.backend() as alice:
            alice.delete_network(world.ctx(), big.id)


def test_another_projects_token_cannot_touch_the_vm_port(nested_world: NestedWorld) -> None:
    world = nested_world
    before = pairs(world)
    with world.backend("bob") as bob:
        with pytest.raises(Exception) as err:
            bob.update_port(
                world.ctx("bob"),
                world.vm_port_id,
                PortUpdate(allowed_address_pairs=[AllowedAddressPair(ip_address="198.18.200.99")]),
            )
        assert type(err.value).__name__ in ("NotFound", "Forbidden")
    assert pairs(world) == before


def test_sixteen_concurrent_adds_lose_no_pair(nested_world: NestedWorld) -> None:
    world, guest = nested_world, nested_world.guest
    names = ["pw9p" + uuid.uuid4().hex[:6] for _ in range(16)]
    guest.run("; ".join(f"ip netns add {n}" for n in names)).check()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda n: guest.cni("ADD", PW9_NET, container_id=n, netns=f"/run/netns/{n}"),
                    names,
                )
            )
        assert all(a.code == 0 for a in answers), (
            [a.stdout for a in answers if a.code],
            guest.agent_log(),
        )
        ips = {ip["address"].split("/")[0] for a in answers for ip in a.json["ips"]}
        assert len(ips) == 32
        assert {ip for ip, _ in pairs(world)} == ips
    finally:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda n: guest.cni("DEL", PW9_NET, container_id=n, netns=f"/run/netns/{n}"),
                    names,
                )
            )
        guest.run("; ".join(f"ip netns del {n}" for n in names))
    assert_clean(world)


def test_macvlan_containers_with_their_own_macs(nested_world: NestedWorld) -> None:
    world, guest = nested_world, nested_world.guest
    guest.restart_agent(default_kind="macvlan_nested")
    try:
        with containers(world, 2) as (c1, c2):
            assert len({c1["mac"], c2["mac"], guest.mac}) == 3
            assert (
                "macvlan mode bridge"
                in guest.run(f"ip netns exec {c1['netns']} ip -d link show eth0").stdout
            )
            for address in c2["ips"] + world.host_addresses:
                ping(guest, c1["netns"], address)
            # Each address with its container's own MAC.
            assert pairs(world) == {(ip, c["mac"]) for c in (c1, c2) for ip in c["ips"]}
        assert_clean(world)
    finally:
        guest.restart_agent()


@pytest.fixture(scope="module")
def vlan_network(nested_world: NestedWorld) -> Iterator[str]:
    """A second network of alice's whose containers inside the VM join it
    through trunk sub-ports of the VM's port (datapath "vlan")."""
    world = nested_world
    with world.backend() as alice:
        net = alice.create_network(world.ctx(), NetworkCreate(name="pw9-vlannet", datapath="vlan"))
        alice.create_subnet(world.ctx(), SubnetCreate(network_id=net.id, cidr="198.18.203.0/24"))
    try:
        yield "pw9-vlannet"
    finally:
        with world.backend() as alice, contextlib.suppress(Exception):
            alice.delete_network(world.ctx(), net.id)


def test_vlan_sub_ports_with_the_lowest_free_ids(
    nested_world: NestedWorld, vlan_network: str
) -> None:
    world, guest = nested_world, nested_world.guest
    with containers(world, 2, vlan_network) as (c1, c2):
        with world.backend() as alice:
            (trunk,) = alice.list_trunks(world.ctx(), {"port_id": [world.vm_port_id]})
            subs = {sp.port_id: sp.segmentation_id for sp in trunk.sub_ports}
            ports = {p.id: p for p in alice.list_ports(world.ctx(), {"id": list(subs)})}
        assert sorted(subs.values()) == [1, 2]
        for c in (c1, c2):
            (port,) = [p for p in ports.values() if p.mac_address == c["mac"]]
            # Unbound: no host plugs a nested container's port.
            assert port.binding.host_id == "" and port.parent_port_id == world.vm_port_id
            details = guest.run(f"ip netns exec {c['netns']} ip -d link show eth0").stdout
            assert f"vlan protocol 802.1Q id {subs[port.id]}" in details, details
        # Nothing goes on the VM port's pairs for VLAN containers.
        assert pairs(world) == set()
    assert_clean(world)


def test_kill_at_add_steps_then_restart_and_del_leave_nothing(
    nested_world: NestedWorld, vlan_network: str
) -> None:
    """For each step: an agent whose fault plan kills it (SIGKILL) there, an
    ADD that dies with it; the next agent's start-up reconcile undoes the
    dead one's record; at the end a clean agent and a DEL of every container:
    no pair, no sub-port (so no VLAN id), no port, no interface left.

    The steps: on ipvlan, after the pair was added to the VM port and before
    the step was marked done (the crash the record must survive), and after
    the plug; on VLAN, after the sub-port was added (VLAN id taken)."""
    world, guest = nested_world, nested_world.guest
    walk = [
        (PW9_NET, "step.kind.backend:after"),
        (PW9_NET, "step.plug:after"),
        (vlan_network, "step.kind.allocate:after"),
    ]
    made: list[tuple[str, str]] = []
    try:
        for network, point in walk:
            plan = json.dumps([{"point": point, "action": "crash"}])
            guest.restart_agent(env={"PODWIRE_FAULTS": plan})
            name = "pw9k" + uuid.uuid4().hex[:6]
            made.append((network, name))
            guest.run(f"ip netns add {name}").check()
            answer = guest.cni("ADD", network, container_id=name, netns=f"/run/netns/{name}")
            assert answer.code != 0, f"the agent did not die at {point}"
            assert not guest.agent_alive(), point
        guest.restart_agent()
        for network, name in made:
            answer = guest.cni("DEL", network, container_id=name, netns=f"/run/netns/{name}")
            assert answer.code == 0, answer.stdout
            links = guest.run(f"ip netns exec {name} ip -o link show").stdout
            assert "eth0" not in links, links
    finally:
        if not guest.agent_alive():
            guest.restart_agent()
        guest.run("; ".join(f"ip netns del {n}" for _, n in made) or "true")
    assert_clean(world)
