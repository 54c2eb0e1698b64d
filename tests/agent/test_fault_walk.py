"""Every recorded step of ADD and DEL, broken once with a failure and once
with a kill -9 of a real agent process (podwire.faults, shipped code: no
patching). After the restart and a DEL, nothing is left: no port, no
trunk (the test kind's backend side effect), no allocation directory, no
address or interface in the container, no host veth end or port-security
rule, no record, no network-status document.

The agent runs with PODWIRE_FAULTS set, so the test-only kind
``faulty_bridge`` (podwire.kinds.faulty: veth_bridge plus a host allocation
and a backend side effect) serves the network and every step exists.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from podwire.datapath.portsec import PortSecurityTable
from podwire.kinds.veth_bridge import host_veth_name
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root

ADD_STEPS = ("port.create", "kind.allocate", "kind.backend", "plug")
ADD_POINTS = [f"step.{s}:{w}" for s in ADD_STEPS for w in ("before", "after")] + [
    "kind.faulty_bridge.allocate",
    "kind.faulty_bridge.build",
    "kind.faulty_bridge.apply_backend",
]
DEL_POINTS = [f"step.{s}.undo:{w}" for s in reversed(ADD_STEPS) for w in ("before", "after")] + [
    "kind.faulty_bridge.undo_backend",
    "kind.faulty_bridge.release",
]


def _links_in(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "-j", "link"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def _addresses_in(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "-j", "addr"], capture_output=True, text=True, check=True
    ).stdout
    return [
        a["local"] for link in json.loads(out) for a in link["addr_info"] if a["scope"] != "host"
    ]


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _died(agent: AgentProcess) -> bool:
    return agent.proc is not None and agent.proc.wait(15) == -signal.SIGKILL


def _restart_without_faults(agent: AgentProcess) -> None:
    """An empty plan: nothing fires, and the test kind its records name is
    still registered (a production agent would not have made them)."""
    agent.env["PODWIRE_FAULTS"] = "[]"
    agent.start()


def _assert_nothing_left(agent: AgentProcess, net: Any, ns: str, port_ids: set[str]) -> None:
    assert agent.attachments() == []
    assert agent.ports(net.id) == []
    assert agent.backend.list_trunks(agent.ctx) == []
    faulty_dir = agent.state_dir / "faulty"
    assert not faulty_dir.exists() or list(faulty_dir.iterdir()) == []
    rules = PortSecurityTable()
    # veth pairs are deleted and network-status files written in the background
    deadline = time.monotonic() + 5
    documents = agent.state_dir / "network-status"
    while list(documents.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(documents.glob("*.json")) == []
    for port_id in port_ids:
        host_end = host_veth_name(port_id)
        while _link_exists(host_end) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _link_exists(host_end), host_end
        assert not rules.has_port(host_end), host_end
    while _links_in(ns) != ["lo"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _links_in(ns) == ["lo"] and _addresses_in(ns) == []


def _ports_seen(agent: AgentProcess, net: Any, seen: set[str]) -> None:
    seen.update(p.id for p in agent.ports(net.id))


def _run(start_agent: Any, make_netns: Any, point: str, action: str) -> None:
    plan = [{"point": point, "action": action, "nth": 1}]
    agent: AgentProcess = start_agent(env={"PODWIRE_FAULTS": json.dumps(plan)})
    name = unique("pwk")
    net = agent.create_network(name, f"198.19.{int(name[-4:], 16) % 250}.0/24")
    ns = make_netns("pwk")
    cid = unique("pwk", 12)
    conf = netconf(net.name)
    seen: set[str] = set()

    added = agent.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
    if point in ADD_POINTS:
        assert added.code != 0, f"{point}: ADD succeeded"
        if action == "crash":
            assert _died(agent), f"{point}: the agent did not die"
            _ports_seen(agent, net, seen)
            _restart_without_faults(agent)
        else:
            assert "injected fault" in added.json["msg"], added.stdout
    else:
        assert added.code == 0, added.stdout
        _ports_seen(agent, net, seen)
        deleted = agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns))
        assert deleted.code != 0, f"{point}: DEL succeeded"
        if action == "crash":
            assert _died(agent), f"{point}: the agent did not die"
            _restart_without_faults(agent)
    # The runtime's next DEL (CNI repeats DEL until it succeeds).
    again = agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns))
    assert again.code == 0, again.stdout
    _assert_nothing_left(agent, net, ns, seen)
    # And the agent still works: a plain ADD and DEL of the same container.
    assert agent.cni("ADD", conf, container_id=cid, netns=netns_path(ns)).code == 0
    _ports_seen(agent, net, seen)
    assert agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
    _assert_nothing_left(agent, net, ns, seen)


@pytest.mark.parametrize("action", ["fail", "crash"])
@pytest.mark.parametrize("point", ADD_POINTS + DEL_POINTS)
def test_every_step_broken_leaves_nothing(
    start_agent: Any, make_netns: Any, point: str, action: str
) -> None:
    _run(start_agent, make_netns, point, action)


def test_the_walk_covers_every_recorded_step() -> None:
    """A new step without a fault case here fails this test."""
    from podwire.agent import steps

    walked = {p.split(".", 1)[1].rsplit(":", 1)[0] for p in ADD_POINTS if p.startswith("step.")}
    # Pool and reserved ports are sources the CNI door does not use; their
    # undo is the same delete/give-back as the steps walked here.
    assert walked | {steps.PORT_ADOPT, steps.PORT_POOL, steps.PORT_RESERVED} == set(steps.ALL_STEPS)


def test_faulty_kind_is_not_registered_without_faults(tmp_path: Path) -> None:
    import os
    import sys

    code = "from podwire.kinds import registry; print(registry.names())"
    env = {k: v for k, v in os.environ.items() if k != "PODWIRE_FAULTS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert "faulty_bridge" not in out.stdout and "veth_bridge" in out.stdout
