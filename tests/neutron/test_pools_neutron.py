"""Port pools against a real Neutron (ML2/OVN), through a real agent process
(docs/pools.md).

Without a chassis (nothing plugged): the pools' ports are made and marked,
kept across restarts, recovered after a kill -9 mid-refill, swept, drained,
and a network deleted through the agent is drained first, where Neutron
itself refuses the delete (NetworkInUse) while pooled ports hold it. With
a chassis (own_session): a full ADD takes the pre-created port."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podwire import errors
from podwire.backends.neutron import NeutronBackend
from podwire.model import Context, NetworkCreate, PortBinding, PortCreate, SubnetCreate
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique
from tests.fixtures.neutron import NeutronApi, NeutronChassis

pytestmark = [pytest.mark.neutron, pytest.mark.root]

ADMIN = Context.admin("pw12-admin")
POOL_TAG = "podwire:purpose=pool"
CLI = (sys.executable, "-m", "podwire.cli")


@pytest.fixture
def admin(neutron_api: NeutronApi) -> Iterator[NeutronBackend]:
    backend = NeutronBackend(neutron_api.sdk())
    try:
        yield backend
    finally:
        backend.close()


def _pooled(admin: NeutronBackend, net_id: str) -> set[str]:
    return {p.id for p in admin.list_ports(ADMIN, {"network_id": [net_id], "tags": [POOL_TAG]})}


def _pools(agent: AgentProcess) -> list[dict[str, Any]]:
    return list(agent.get("/v1/pools")["pools"])


def _ready(agent: AgentProcess) -> set[str]:
    return {p["port_id"] for pool in _pools(agent) for p in pool["ports"] if p["state"] == "ready"}


def _wait_ready(agent: AgentProcess, count: int, timeout: float = 60.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = _ready(agent)
        if len(ready) >= count:
            return ready
        time.sleep(0.1)
    raise AssertionError(f"pool did not reach {count} ready: {_pools(agent)}\n{agent.log()}")


def test_pools_on_neutron_survive_kill_9_restart_sweep_and_network_delete(
    neutron_api: NeutronApi, admin: NeutronBackend, start_agent: Any, tmp_path: Path
) -> None:
    name = unique("pwp")
    net = admin.create_network(ADMIN, NetworkCreate(name=name))
    try:
        admin.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.124.0/24"))
        host = unique("pwp-node-", 6)
        config = tmp_path / "agent.toml"
        config.write_text(
            f'backend = "neutron"\nhost_id = "{host}"\n'
            f'[neutron]\nendpoint = "{neutron_api.url}"\n'
            "[pools]\nenabled = true\nmin = 2\nmax = 4\nbatch = 2\nrefill_interval = 0.1\n"
            f'networks = ["{name}"]\n'
        )
        # Killed once Neutron made the second refill's port, before it was recorded.
        plan = [{"point": "step.pool.create:after", "action": "crash", "nth": 2}]
        try:
            agent: AgentProcess = start_agent(
                "--config", str(config), env={"PODWIRE_FAULTS": json.dumps(plan)}
            )
        except RuntimeError:
            pytest.fail("the agent died before serving")  # the refill starts after
        assert agent.proc is not None and agent.proc.wait(60) == -signal.SIGKILL
        agent.proc = None
        made = _pooled(admin, net.id)
        assert 1 <= len(made) <= 2
        for port in admin.list_ports(ADMIN, {"network_id": [net.id], "tags": [POOL_TAG]}):
            assert f"podwire:host={host}" in port.tags and port.device_owner == "podwire:pool"
            assert port.binding.host_id == host
        # A port marked as this host's pool that no store holds.
        leaked = admin.create_port(
            ADMIN,
            PortCreate(network_id=net.id, tags=[f"podwire:host={host}", POOL_TAG]),
        )
        # Killed between Neutron's create and its tags (a second call here):
        # marked by device_owner and binding only.
        untagged = admin.create_port(
            ADMIN,
            PortCreate(
                network_id=net.id, device_owner="podwire:pool", binding=PortBinding(host_id=host)
            ),
        )

        agent.env["PODWIRE_FAULTS"] = "[]"
        agent.start()
        ready = _wait_ready(agent, 2)
        assert made <= ready  # finished from the record and the mark
        assert _pooled(admin, net.id) == ready  # the leaked one swept
        assert leaked.id not in ready
        with pytest.raises(errors.NotFound):
            admin.get_port(ADMIN, untagged.id)
        agent.restart()
        assert _ready(agent) == ready  # kept, nothing recreated
        assert _pooled(admin, net.id) == ready

        # Neutron refuses to delete a network pooled ports hold ...
        with pytest.raises(errors.Conflict):
            admin.delete_network(ADMIN, net.id)
        # ... a delete through the agent drains this host's pools first
        # (the CLI's drain on Neutron: the test below).
        transport = httpx.HTTPTransport(uds=str(agent.socket))
        with httpx.Client(transport=transport, base_url="http://podwire", timeout=60) as client:
            assert client.delete(f"/v2.0/networks/{net.id}").status_code == 204
        with pytest.raises(errors.NotFound):
            admin.get_network(ADMIN, net.id)
        assert all(not pool["ports"] for pool in _pools(agent))
    finally:
        for port in admin.list_ports(ADMIN, {"network_id": [net.id]}):
            admin.delete_port(ADMIN, port.id)
        with contextlib.suppress(errors.NotFound):
            admin.delete_network(ADMIN, net.id)


@pytest.mark.ovn
@pytest.mark.own_session  # its chassis is a userspace-datapath OVS (scripts/run-tests.sh)
def test_pool_hit_on_neutron_attaches_the_precreated_port(
    neutron_api: NeutronApi,
    neutron_chassis: NeutronChassis,
    admin: NeutronBackend,
    start_agent: Any,
    make_netns: Any,
    tmp_path: Path,
) -> None:
    """A full ADD through the shim, plugged into OVS and bound by OVN: the
    port is the pool's, created before the ADD; Neutron holds no port the
    ADD made; DEL gives it back, reset."""
    name = unique("pwp")
    net = admin.create_network(ADMIN, NetworkCreate(name=name, port_security_enabled=False))
    try:
        admin.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.125.0/24"))
        config = tmp_path / "agent.toml"
        config.write_text(
            f'backend = "neutron"\nhost_id = "{neutron_chassis.hostname}"\n'
            f'[neutron]\nendpoint = "{neutron_api.url}"\n'
            f'[ovn]\novs_db = "{neutron_chassis.ovs_remote}"\n'
            f'integration_bridge = "{neutron_chassis.bridge}"\nbind_timeout = 30.0\n'
            "[pools]\nenabled = true\nmin = 1\nmax = 2\nbatch = 1\nrefill_interval = 0.1\n"
            f'networks = ["{name}"]\n'
        )
        agent: AgentProcess = start_agent("--config", str(config))
        ready = _wait_ready(agent, 1)
        before = {p.id for p in admin.list_ports(ADMIN, {"network_id": [net.id]})}
        ns, cid = make_netns("pwp"), unique("pwp", 12)
        added = agent.cni("ADD", netconf(name), container_id=cid, netns=netns_path(ns))
        assert added.code == 0, added.stdout.decode() + agent.log()
        (record,) = agent.attachments()
        assert record["port_id"] in ready
        # Every port made since is the refill's, marked and pooled (once
        # its create, and the tags Neutron takes in a second call, are done).
        _wait_ready(agent, 1)
        for port in admin.list_ports(ADMIN, {"network_id": [net.id]}):
            assert port.id in before or (POOL_TAG in port.tags and port.id in _ready(agent))
        port = admin.get_port(ADMIN, record["port_id"])
        assert port.binding.host_id == neutron_chassis.hostname
        assert port.binding.vif_type == "ovs"
        up = neutron_api.nbctl("get", "Logical_Switch_Port", port.id, "up").strip()
        assert up == "true"

        gone = agent.cni("DEL", netconf(name), container_id=cid, netns=netns_path(ns))
        assert gone.code == 0, gone.stdout
        assert record["port_id"] in _ready(agent)
        assert admin.get_port(ADMIN, record["port_id"]).device_id == ""
        drained = subprocess.run(
            [*CLI, "--agent-socket", str(agent.socket), "pool", "drain"],
            capture_output=True,
            timeout=120,
        )
        assert drained.returncode == 0, drained.stderr
        assert _pooled(admin, net.id) == set()
    finally:
        for port in admin.list_ports(ADMIN, {"network_id": [net.id]}):
            admin.delete_port(ADMIN, port.id)
        with contextlib.suppress(errors.NotFound):
            admin.delete_network(ADMIN, net.id)
