"""A real agent process told by PODWIRE_FAULTS to fail a backend call: the
CNI answer is a clean error naming the fault, and nothing is left behind."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root


def _links_in(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "-j", "link"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def test_failed_create_port_gives_a_clean_error_and_leaves_nothing(
    start_agent: Any, make_netns: Any
) -> None:
    plan = [{"point": "backend.create_port", "action": "fail", "nth": 1}]
    agent: AgentProcess = start_agent(env={"PODWIRE_FAULTS": json.dumps(plan)})
    name = unique("pwf")
    net = agent.create_network(name, f"198.18.{int(name[-4:], 16) % 250}.0/24")
    ns = make_netns()
    cid = unique("pwf", 12)

    failed = agent.cni("ADD", netconf(net.name), container_id=cid, netns=netns_path(ns))
    assert failed.code != 0
    assert isinstance(failed.error_code, int) and failed.error_code != 0, failed.stdout
    assert "injected fault at backend.create_port" in failed.json["msg"], failed.stdout
    # Nothing half-made: no port, no record, nothing in the container's netns.
    assert agent.ports(net.id) == []
    assert agent.attachments() == []
    assert _links_in(ns) == ["lo"]

    # The fault fired on the first hit only: the agent is healthy, the same
    # container attaches now, and DEL cleans up as usual.
    added = agent.cni("ADD", netconf(net.name), container_id=cid, netns=netns_path(ns))
    assert added.code == 0, added.stdout
    assert [p.device_id for p in agent.ports(net.id)] == [cid]
    assert _links_in(ns) == ["eth0", "lo"]
    deleted = agent.cni("DEL", netconf(net.name), container_id=cid, netns=netns_path(ns))
    assert deleted.code == 0, deleted.stdout
    assert agent.ports(net.id) == []
    assert agent.attachments() == []


def test_kill_9_right_after_create_port_is_cleaned_up_on_restart(
    start_agent: Any, make_netns: Any
) -> None:
    plan = [{"point": "backend.create_port:after", "action": "crash"}]
    agent: AgentProcess = start_agent(env={"PODWIRE_FAULTS": json.dumps(plan)})
    name = unique("pwf")
    net = agent.create_network(name, f"198.18.{int(name[-4:], 16) % 250}.0/24")
    ns = make_netns()
    cid = unique("pwf", 12)

    cut = agent.cni("ADD", netconf(net.name), container_id=cid, netns=netns_path(ns))
    # The agent died with the call: the runtime is told to try again later.
    assert cut.error_code == 11, cut.stdout
    assert agent.proc is not None and agent.proc.wait(10) == -9
    assert "injected crash at backend.create_port:after" in agent.log()
    # The backend made the port; nobody heard of it.
    assert [p.device_id for p in agent.ports(net.id)] == [cid]

    agent.env.pop("PODWIRE_FAULTS")
    agent.stop()
    agent.start()
    assert agent.ports(net.id) == []
    assert agent.attachments() == []
    assert _links_in(ns) == ["lo"]
