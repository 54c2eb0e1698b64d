"""The vhostuser kind's undo: every step of its ADD and DEL broken once with
a failure and once with a kill -9 of the real agent (podwire.faults, as in
tests/agent/test_fault_walk.py), in client mode, where the most is made
(OVS port, socket moved, config file). After the restart and the runtime's
next DEL: no record, no port, no OVS port, no socket (neither in the
container's directory nor in OVS's), no config file, no directory.

Also the clear refusals that leave nothing: too few free hugepages, a
socket path over 107 bytes, a socket directory on another filesystem than
OVS's (EXDEV)."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path, short_tempdir
from tests.fixtures.common import unique
from tests.fixtures.ovs_dpdk import OvsDpdk
from tests.vhostuser.test_vhostuser_agent import agent_config

pytestmark = [pytest.mark.dpdk, pytest.mark.root]

ADD_POINTS = [
    "step.kind.allocate:before",
    "step.kind.allocate:after",
    "step.plug:before",
    "kind.vhostuser.ovs_port",
    "kind.vhostuser.socket_moved",
    "kind.vhostuser.config_written",
    "step.plug:after",
]
DEL_POINTS = [
    "step.plug.undo:before",
    "step.plug.undo:after",
    "step.kind.allocate.undo:before",
]


def _vhu_ports(ovs: OvsDpdk) -> list[str]:
    return [p for p in ovs.ports() if p.startswith("vhu")]


def _assert_nothing_left(agent: AgentProcess, ovs: OvsDpdk, net: Any, root: Path) -> None:
    assert agent.attachments() == []
    assert agent.ports(net.id) == []
    assert _vhu_ports(ovs) == []
    assert list(root.iterdir()) == []
    assert list(ovs.sock_dir.iterdir()) == []
    documents = agent.state_dir / "network-status"
    deadline = time.monotonic() + 5
    while list(documents.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(documents.glob("*.json")) == []


def _agent(
    start_agent: Any, ovs: OvsDpdk, tmp_path: Path, root: Path, plan: list[Any] | None, **cfg: Any
) -> AgentProcess:
    config = agent_config(tmp_path / "agent.toml", ovs, root, default_mode="client", **cfg)
    env = {"PODWIRE_FAULTS": json.dumps(plan)} if plan else None
    agent: AgentProcess = start_agent("--config", str(config), env=env)
    return agent


# The kind's allocation makes nothing on the host: a kill -9 around it is
# the generic step machinery, walked in tests/agent/test_fault_walk.py.
CASES = [
    (point, action)
    for point in ADD_POINTS + DEL_POINTS
    for action in ("fail", "crash")
    if not (action == "crash" and "kind.allocate" in point)
]


@pytest.mark.parametrize(("point", "action"), CASES)
def test_every_step_broken_leaves_nothing(
    ovs_dpdk: OvsDpdk,
    start_agent: Any,
    make_netns: Any,
    tmp_path: Path,
    point: str,
    action: str,
) -> None:
    root = short_tempdir("pw11f")
    try:
        plan = [{"point": point, "action": action, "nth": 1}]
        agent = _agent(start_agent, ovs_dpdk, tmp_path, root, plan)
        net = agent.create_network(unique("pw11f"), "198.18.112.0/24", datapath="vhostuser")
        ns, cid = netns_path(make_netns("pw11")), unique("pw11f", 12)
        conf = netconf(net.name)

        added = agent.cni("ADD", conf, container_id=cid, netns=ns)
        if point in ADD_POINTS:
            assert added.code != 0, f"{point}: ADD succeeded"
        else:
            assert added.code == 0, added.stdout
            assert agent.cni("DEL", conf, container_id=cid, netns=ns).code != 0
        if action == "crash":
            assert agent.proc is not None and agent.proc.wait(15) == -signal.SIGKILL
            agent.env["PODWIRE_FAULTS"] = "[]"
            agent.start()
        else:
            assert "injected fault" in (added.json or {}).get("msg", "") or point in DEL_POINTS
        again = agent.cni("DEL", conf, container_id=cid, netns=ns)
        assert again.code == 0, again.stdout
        _assert_nothing_left(agent, ovs_dpdk, net, root)
    finally:
        for port in _vhu_ports(ovs_dpdk):
            ovs_dpdk.vsctl("--if-exists", "del-port", port)
        shutil.rmtree(root, ignore_errors=True)


def _refused(agent: AgentProcess, ovs: OvsDpdk, root: Path, make_netns: Any) -> str:
    net = agent.create_network(unique("pw11r"), "198.18.113.0/24", datapath="vhostuser")
    ns, cid = netns_path(make_netns("pw11")), unique("pw11r", 12)
    added = agent.cni("ADD", netconf(net.name), container_id=cid, netns=ns)
    assert added.code != 0, added.stdout
    _assert_nothing_left(agent, ovs, net, root)
    return str(added.json["msg"])


def test_too_few_hugepages_is_refused(
    ovs_dpdk: OvsDpdk, start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    root = short_tempdir("pw11h")
    try:
        agent = _agent(start_agent, ovs_dpdk, tmp_path, root, None, hugepages_mb=10**7)
        msg = _refused(agent, ovs_dpdk, root, make_netns)
        assert "hugepages" in msg and "MiB" in msg, msg
        described = [d for d in agent.get("/v1/status")["drivers"] if d["name"] == "vhostuser"]
        assert described[0]["resources"]["hugepages_free_mb"] > 0, described
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_socket_path_over_107_bytes_is_refused(
    ovs_dpdk: OvsDpdk, start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    base = short_tempdir("pw11l")
    root = base / ("d" * 70)
    root.mkdir()
    try:
        agent = _agent(start_agent, ovs_dpdk, tmp_path, root, None)
        msg = _refused(agent, ovs_dpdk, root, make_netns)
        assert "107" in msg, msg
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_socket_dir_on_another_filesystem_is_a_clear_exdev(
    ovs_dpdk: OvsDpdk, start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    # /dev/shm is a tmpfs; OVS's socket directory is not.
    root = Path(tempfile.mkdtemp(prefix="pw11x", dir="/dev/shm"))
    try:
        agent = _agent(start_agent, ovs_dpdk, tmp_path, root, None)
        msg = _refused(agent, ovs_dpdk, root, make_netns)
        assert "different filesystems" in msg, msg
    finally:
        shutil.rmtree(root, ignore_errors=True)
