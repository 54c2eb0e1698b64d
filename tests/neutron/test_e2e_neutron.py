"""End to end on a real Neutron with ML2/OVN: a real agent process with
``backend = "neutron"``, driven through the real ``podwire-cni`` shim and by
the real podman; containers on one Neutron network ping each other through
OVN (veth into OVS, bound by iface-id = the Neutron port id, on a chassis
ML2/OVN knows by its hostname), with port security on: Neutron's security
groups, which ML2/OVN turns into OVN port groups and ACLs, decide what
passes, and removing a rule blocks what it allowed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podwire.backends.neutron import NeutronBackend
from podwire.model import Context, NetworkCreate, PortUpdate, SubnetCreate
from tests.e2e.test_podman import interface, ping
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique
from tests.fixtures.netns import ns_ping
from tests.fixtures.neutron import NeutronApi, NeutronChassis
from tests.fixtures.podman import Podman

# own_session: its chassis is a second userspace-datapath OVS (scripts/run-tests.sh).
pytestmark = [pytest.mark.neutron, pytest.mark.ovn, pytest.mark.root, pytest.mark.own_session]

ADMIN = Context.admin("pw12-admin")


@pytest.fixture
def admin(neutron_api: NeutronApi) -> Iterator[NeutronBackend]:
    backend = NeutronBackend(neutron_api.sdk())
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def neutron_agent(
    neutron_api: NeutronApi, neutron_chassis: NeutronChassis, start_agent: Any, tmp_path: Path
) -> AgentProcess:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'backend = "neutron"\n'
        f'host_id = "{neutron_chassis.hostname}"\n'
        f"[neutron]\n"
        f'endpoint = "{neutron_api.url}"\n'
        f"[ovn]\n"
        f'ovs_db = "{neutron_chassis.ovs_remote}"\n'
        f'integration_bridge = "{neutron_chassis.bridge}"\n'
        f"bind_timeout = 30.0\n"
    )
    agent: AgentProcess = start_agent("--config", str(config))
    return agent


def _ports_gone(backend: NeutronBackend, *device_ids: str) -> bool:
    deadline = time.monotonic() + 10
    while backend.list_ports(ADMIN, {"device_id": list(device_ids)}):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _wait_active(backend: NeutronBackend, port_id: str, timeout: float = 30.0) -> str:
    """Neutron's status of a port once ACTIVE or after ``timeout``: ML2/OVN
    sets it from OVN's "up" through its own northbound monitor, after the
    agent's ADD has returned (the agent waits for ovn-controller's flows,
    not for Neutron's bookkeeping)."""
    deadline = time.monotonic() + timeout
    while (status := backend.get_port(ADMIN, port_id).status) != "ACTIVE":
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return status


class SecurityGroups:
    """Neutron's security-group API, raw (podwire's model has no security
    groups; a port names them by id), as the test's admin."""

    def __init__(self, api: NeutronApi) -> None:
        self._api = api
        self.made: list[str] = []

    def _call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        answer = httpx.request(
            method,
            self._api.endpoint + path,
            json=body,
            headers=self._api.headers(),
            timeout=30.0,
        )
        assert answer.status_code == expect, f"{method} {path}: {answer.text}"
        return answer.json() if answer.content else None

    def create(self, name: str) -> str:
        group = self._call("POST", "/security-groups", {"security_group": {"name": name}}, 201)
        self.made.append(group["security_group"]["id"])
        return str(group["security_group"]["id"])

    def allow_icmp_from_members(self, group: str) -> str:
        rule = {
            "security_group_id": group,
            "direction": "ingress",
            "ethertype": "IPv4",
            "protocol": "icmp",
            "remote_group_id": group,
        }
        made = self._call("POST", "/security-group-rules", {"security_group_rule": rule}, 201)
        return str(made["security_group_rule"]["id"])

    def delete_rule(self, rule: str) -> None:
        self._call("DELETE", f"/security-group-rules/{rule}", expect=204)

    def cleanup(self) -> None:
        for group in self.made:
            httpx.delete(
                f"{self._api.endpoint}/security-groups/{group}",
                headers=self._api.headers(),
                timeout=30.0,
            )


def _acls_of(api: NeutronApi, group: str) -> list[str]:
    """The match of every ACL on the security group's OVN port group."""
    port_group = "pg_" + group.replace("-", "_")
    acls = api.nbctl("--bare", "--columns=acls", "find", "Port_Group", f"name={port_group}").split()
    return [api.nbctl("get", "ACL", acl, "match").strip() for acl in acls]


def _hypervisors_caught_up(api: NeutronApi) -> None:
    """Returns once every chassis' ovn-controller has installed the flows of
    the northbound database as it is now (OVN's own barrier)."""
    api.nbctl("--wait=hv", "sync")


def test_two_containers_ping_through_ovn_on_neutron_with_port_security(
    neutron_api: NeutronApi,
    neutron_agent: AgentProcess,
    admin: NeutronBackend,
    ovn_netns: Any,
) -> None:
    name = unique("pwne")
    # The network's default: port security on, the project's default group.
    net = admin.create_network(ADMIN, NetworkCreate(name=name))
    admin.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.122.0/24"))
    (ns1, _), (ns2, _) = ovn_netns(), ovn_netns()
    conf = netconf(name)
    ids = ("c-pwn-n1", "c-pwn-n2")
    groups = SecurityGroups(neutron_api)
    try:
        answers = [
            neutron_agent.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
            for cid, ns in zip(ids, (ns1, ns2), strict=True)
        ]
        for answer in answers:
            assert answer.code == 0, answer.stdout.decode() + neutron_agent.log()
        ip1, ip2 = (str(a.json["ips"][0]["address"].split("/")[0]) for a in answers)

        # The port is Neutron's: bound by ML2/OVN to this chassis, and the
        # status ACTIVE is Neutron's own (from ovn-controller), never the agent's.
        ports = [admin.list_ports(ADMIN, {"device_id": [cid]})[0] for cid in ids]
        port = ports[0]
        assert port.fixed_ips[0].ip_address == ip1
        assert port.port_security_enabled is True
        assert port.binding.host_id == str(neutron_agent.config.host_id)
        assert port.binding.vif_type == "ovs"
        assert neutron_api.nbctl("get", "Logical_Switch_Port", port.id, "up").strip() == "true"
        # OVN enforces it: the port's MAC + address pinned, and the port in
        # the port group that drops whatever no security group allows.
        security = neutron_api.nbctl("get", "Logical_Switch_Port", port.id, "port_security")
        assert port.mac_address in security and ip1 in security
        drop_members = neutron_api.nbctl("get", "Port_Group", "neutron_pg_drop", "ports")
        lsp_uuid = neutron_api.nbctl(
            "--bare", "--columns=_uuid", "find", "Logical_Switch_Port", f"name={port.id}"
        ).strip()
        assert lsp_uuid in drop_members

        # The default group's rules (ingress from its members) let them talk.
        assert ns_ping(ns1, ip2, tries=3)
        assert ns_ping(ns2, ip1, tries=3)

        # A group of the test's own: only ICMP from its members comes in.
        group = groups.create(unique("pwn-sg-"))
        rule = groups.allow_icmp_from_members(group)
        for each in ports:
            admin.update_port(ADMIN, each.id, PortUpdate(security_groups=[group]))
        assert any("icmp4" in match for match in _acls_of(neutron_api, group))
        _hypervisors_caught_up(neutron_api)
        assert ns_ping(ns1, ip2, tries=3)

        # Removing the rule blocks the traffic it allowed...
        groups.delete_rule(rule)
        assert not any("icmp4" in match for match in _acls_of(neutron_api, group))
        _hypervisors_caught_up(neutron_api)
        assert not ns_ping(ns1, ip2, tries=2)
        assert not ns_ping(ns2, ip1, tries=2)

        # ... and the same rule again lets it through: the rule decided.
        groups.allow_icmp_from_members(group)
        _hypervisors_caught_up(neutron_api)
        assert ns_ping(ns1, ip2, tries=3)
    finally:
        for cid, ns in zip(ids, (ns1, ns2), strict=True):
            gone = neutron_agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns))
            assert gone.code == 0, gone.stdout
        assert _ports_gone(admin, *ids)
        admin.delete_network(ADMIN, net.id)
        groups.cleanup()


def test_two_podman_containers_ping_through_ovn_on_neutron(
    neutron_api: NeutronApi,
    neutron_agent: AgentProcess,
    admin: NeutronBackend,
    podman: Podman,
    busybox_rootfs: Path,
) -> None:
    name = unique("pwnp")
    net = admin.create_network(ADMIN, NetworkCreate(name=name))
    admin.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.123.0/24"))
    cni_name = unique("pwncni")
    podman.add_network(cni_name, name, neutron_agent.socket)
    try:
        first = podman.start(unique("pwn1-"), cni_name, busybox_rootfs)
        second = podman.start(unique("pwn2-"), cni_name, busybox_rootfs)
        names = podman.containers[:]

        # Each container's port is a Neutron port on that network, named by
        # the container id, bound to this chassis, ACTIVE by Neutron's word.
        ports = {p.device_id: p for p in admin.list_ports(ADMIN, {"network_id": [net.id]})}
        assert set(ports) == {first, second}
        seen = {}
        for container, container_id in zip(names, (first, second), strict=True):
            port = ports[container_id]
            assert _wait_active(admin, port.id) == "ACTIVE"
            assert port.binding.host_id == str(neutron_agent.config.host_id)
            mac, addresses = interface(podman, container)
            assert mac == port.mac_address
            assert addresses == {ip.ip_address for ip in port.fixed_ips}
            seen[container] = port.fixed_ips[0].ip_address

        # ACTIVE and the agent's wait cover each port's own flows; the ACL
        # that lets the peer in matches an address set Neutron changed too.
        _hypervisors_caught_up(neutron_api)
        for source, target in ((names[0], names[1]), (names[1], names[0])):
            answer = ping(podman, source, seen[target])
            assert answer.returncode == 0, f"{source} -> {seen[target]}: {answer.stdout}"

        for container in names:
            podman.remove(container)
        assert _ports_gone(admin, first, second)
    finally:
        for port in admin.list_ports(ADMIN, {"network_id": [net.id]}):
            admin.delete_port(ADMIN, port.id)
        admin.delete_network(ADMIN, net.id)
