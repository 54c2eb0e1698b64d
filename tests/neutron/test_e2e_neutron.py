"""End to end on a real Neutron with ML2/OVN: a real agent process with
``backend = "neutron"``, driven through the real ``podwire-cni`` shim; two
containers (network namespaces) on one Neutron network ping each other
through OVN (veth into OVS, bound by iface-id = the Neutron port id, on a
chassis ML2/OVN knows by its hostname)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podwire.backends.neutron import NeutronBackend
from podwire.model import Context, NetworkCreate, SubnetCreate
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique
from tests.fixtures.netns import ns_ping
from tests.fixtures.neutron import NeutronApi, NeutronChassis

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


def test_two_containers_ping_through_ovn_on_neutron(
    neutron_api: NeutronApi,
    neutron_agent: AgentProcess,
    admin: NeutronBackend,
    ovn_netns: Any,
) -> None:
    name = unique("pw12e")
    # Without port security: with Neutron's default security group (stateful
    # OVN ACLs) the ping did not pass on this machine's userspace datapath;
    # not yet investigated (reported with the issue). The binding, the iface-id
    # plug and OVN's forwarding are what this test proves.
    net = admin.create_network(ADMIN, NetworkCreate(name=name, port_security_enabled=False))
    admin.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.122.0/24"))
    (ns1, _), (ns2, _) = ovn_netns(), ovn_netns()
    conf = netconf(name)
    ids = ("c-pw12-n1", "c-pw12-n2")
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
        (port,) = admin.list_ports(ADMIN, {"device_id": [ids[0]]})
        assert port.fixed_ips[0].ip_address == ip1
        assert port.binding.host_id == str(neutron_agent.config.host_id)
        assert port.binding.vif_type == "ovs"
        assert neutron_api.nbctl("get", "Logical_Switch_Port", port.id, "up").strip() == "true"

        assert ns_ping(ns1, ip2, tries=3)
        assert ns_ping(ns2, ip1, tries=3)
    finally:
        for cid, ns in zip(ids, (ns1, ns2), strict=True):
            gone = neutron_agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns))
            assert gone.code == 0, gone.stdout
        assert _ports_gone(admin, *ids)
        admin.delete_network(ADMIN, net.id)
