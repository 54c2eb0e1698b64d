"""Port pools on the OVN backend: a real agent process on a private OVS +
OVN, the real shim (docs/pools.md). The pool's ports are logical switch
ports bound to this host, marked in their external_ids; an ADD takes one
(no create), OVN brings it up on the plug, DEL gives it back, drain
deletes them all."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podwire.backends.ovn import OvnBackend
from podwire.model import Context, NetworkCreate, SubnetCreate
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique
from tests.fixtures.ovn import OvnEnv

pytestmark = [pytest.mark.ovn, pytest.mark.root]

ADMIN = Context.admin("default")
POOL_TAG = "podwire:purpose=pool"
CLI = (sys.executable, "-m", "podwire.cli")


@pytest.fixture
def nb(ovn_env: OvnEnv) -> Iterator[OvnBackend]:
    backend = OvnBackend([ovn_env.nb_remote])
    try:
        yield backend
    finally:
        backend.close()


def _ready(agent: AgentProcess) -> set[str]:
    pools = agent.get("/v1/pools")["pools"]
    return {p["port_id"] for pool in pools for p in pool["ports"] if p["state"] == "ready"}


def _wait_ready(agent: AgentProcess, count: int, timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = _ready(agent)
        if len(ready) >= count:
            return ready
        time.sleep(0.05)
    raise AssertionError(f"pool did not reach {count} ready\n{agent.log()}")


def test_pool_hit_on_ovn_and_drain(
    ovn_env: OvnEnv, nb: OvnBackend, start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    name = unique("pwp")
    net = nb.create_network(ADMIN, NetworkCreate(name=name))
    try:
        nb.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.127.0/24"))
        config = tmp_path / "agent.toml"
        config.write_text(
            f'backend = "ovn"\n[ovn]\nnb_remotes = ["{ovn_env.nb_remote}"]\n'
            f'ovs_db = "{ovn_env.ovs_remote}"\nintegration_bridge = "{ovn_env.bridge}"\n'
            "bind_timeout = 20.0\n"
            "[pools]\nenabled = true\nmin = 2\nmax = 4\nbatch = 2\nrefill_interval = 0.1\n"
            f'networks = ["{name}"]\n'
        )
        agent: AgentProcess = start_agent("--config", str(config))
        ready = _wait_ready(agent, 2)
        host = agent.config.host_id
        for port in nb.list_ports(ADMIN, {"network_id": [net.id]}):
            assert {f"podwire:host={host}", POOL_TAG} <= set(port.tags)
            assert port.device_owner == "podwire:pool" and port.binding.host_id == host
        before = {p.id for p in nb.list_ports(ADMIN, {"network_id": [net.id]})}

        ns, cid = make_netns("pwp"), unique("pwp", 12)
        added = agent.cni("ADD", netconf(name), container_id=cid, netns=netns_path(ns))
        assert added.code == 0, added.stdout.decode() + agent.log()
        (record,) = agent.attachments()
        assert record["port_id"] in ready
        _wait_ready(agent, 2)  # the refill's, pooled; no port of the ADD's own
        for port in nb.list_ports(ADMIN, {"network_id": [net.id]}):
            assert port.id in before or port.id in _ready(agent)
        assert nb.get_port(ADMIN, record["port_id"]).status == "ACTIVE"  # OVN's, bound

        gone = agent.cni("DEL", netconf(name), container_id=cid, netns=netns_path(ns))
        assert gone.code == 0, gone.stdout
        port = nb.get_port(ADMIN, record["port_id"])
        assert port.device_id == "" and port.id in _ready(agent)

        drained = subprocess.run(
            [*CLI, "--agent-socket", str(agent.socket), "pool", "drain", "--network", name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert drained.returncode == 0, drained.stderr
        assert nb.list_ports(ADMIN, {"network_id": [net.id]}) == []
    finally:
        for port in nb.list_ports(ADMIN, {"network_id": [net.id]}):
            nb.delete_port(ADMIN, port.id)
        nb.delete_network(ADMIN, net.id)
