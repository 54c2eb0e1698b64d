"""Several networks per container, at the agent's API (the doors' side is
tested with them): one request, one lock, one undo stack; the default-route
rule; interface naming; the network-status document. A real agent (in this
process) on the embedded backend, plugging into real network namespaces."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podwire.agent.core import Agent
from podwire.agent.types import AttachRequest, DetachRequest, NetworkSelection
from podwire.config import load_config
from podwire.errors import Conflict, Exhausted, InvalidInput
from podwire.model import NetworkCreate, SubnetCreate
from tests.fixtures.agent import netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    config = load_config(
        None,
        state_dir=str(tmp_path / "state"),
        host_id=unique("pwm"),
        # More hugepages than any host has: the vhostuser kind refuses.
        **{"agent.bridge_idle_seconds": 0, "vhostuser.hugepages_mb": 10**9},
    )
    agent = Agent.from_config(config)
    made: list[str] = []
    agent.made_networks = made  # type: ignore[attr-defined]
    try:
        yield agent
    finally:
        for record in agent.list_attachments():
            agent.detach(DetachRequest(container_id=record.container_id, ifname=record.ifname))
        for network_id in made:
            network = agent.backend.get_network(agent.ctx, network_id)
            agent.network_deleted(network)
            agent.backend.delete_network(agent.ctx, network_id)
        agent.close()


def _network(agent: Agent, third_octet: int, **fields: Any) -> Any:
    net = agent.backend.create_network(
        agent.ctx, NetworkCreate(name=unique("pwm"), mtu=1400, **fields)
    )
    agent.backend.create_subnet(
        agent.ctx,
        SubnetCreate(
            network_id=net.id,
            cidr=f"198.19.{third_octet}.0/24",
            dns_nameservers=[f"198.19.{third_octet}.53"],
        ),
    )
    agent.made_networks.append(net.id)  # type: ignore[attr-defined]
    return agent.backend.get_network(agent.ctx, net.id)


def _ip(ns: str, *args: str) -> Any:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "-j", *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out) if out.strip() else []


def _links(ns: str) -> list[str]:
    return sorted(link["ifname"] for link in _ip(ns, "link"))


def _no_interfaces_left(ns: str, timeout: float = 5.0) -> bool:
    """veth pairs are deleted in the background (async_delete, docs/perf.md):
    down at once, gone moments later."""
    deadline = time.monotonic() + timeout
    while _links(ns) != ["lo"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return _links(ns) == ["lo"]


def _default_routes(ns: str) -> list[str]:
    return [r["dev"] for r in _ip(ns, "route") if r["dst"] == "default"]


def test_three_networks_one_request_one_default_route(agent: Agent, make_netns: Any) -> None:
    a, b, c = (_network(agent, 201 + i) for i in range(3))
    ns = make_netns("pwm")
    cid = unique("pwm", 12)
    result = agent.attach(
        AttachRequest(
            container_id=cid,
            netns=netns_path(ns),
            networks=[
                NetworkSelection(network=a.name),
                NetworkSelection(network=b.id, default_route=True),
                NetworkSelection(network=c.name, ifname="net9"),
            ],
        )
    )
    names = [i.attachment.ifname for i in result.interfaces]
    assert names == ["eth0", "eth1", "net9"]
    assert [i.attachment.default_route for i in result.interfaces] == [False, True, False]
    assert _links(ns) == ["eth0", "eth1", "lo", "net9"]
    assert _default_routes(ns) == ["eth1"]
    # Only the owner gets DNS.
    assert [list(i.attachment.vif.dns_nameservers) for i in result.interfaces] == [  # type: ignore[union-attr]
        [],
        ["198.19.202.53"],
        [],
    ]
    status = agent.network_status(cid)
    assert [(e["interface"], e["default"]) for e in status] == [
        ("eth0", False),
        ("eth1", True),
        ("net9", False),
    ]
    assert status[1]["dns"] == {"nameservers": ["198.19.202.53"]}
    assert status[0]["ips"] == [result.interfaces[0].port.fixed_ips[0].ip_address]
    doc = agent.config.state_dir / "network-status" / f"{cid}.json"
    assert agent.flush_network_status()
    assert json.loads(doc.read_text()) == status

    # A second request: the owner exists, so a new network gets none, and
    # one asking for it is a Conflict; ifnames continue.
    d = _network(agent, 204)
    more = agent.attach(
        AttachRequest(
            container_id=cid, netns=netns_path(ns), networks=[NetworkSelection(network=d.id)]
        )
    )
    assert more.interfaces[0].attachment.ifname == "eth2"
    assert more.interfaces[0].attachment.default_route is False
    assert _default_routes(ns) == ["eth1"]
    with pytest.raises(Conflict, match="default route"):
        agent.attach(
            AttachRequest(
                container_id=cid,
                netns=netns_path(ns),
                networks=[NetworkSelection(network=d.id, default_route=True)],
            )
        )

    for ifname in ("eth0", "eth1", "net9", "eth2"):
        agent.detach(DetachRequest(container_id=cid, ifname=ifname))
    assert _no_interfaces_left(ns)
    assert agent.list_attachments(container_id=cid) == []
    assert agent.flush_network_status()
    assert not doc.exists()
    assert all(
        agent.backend.list_ports(agent.ctx, {"network_id": [n.id]}) == [] for n in (a, b, c, d)
    )


def test_failure_of_the_third_rolls_back_the_first_two(agent: Agent, make_netns: Any) -> None:
    a, b = _network(agent, 211), _network(agent, 212)
    # A network whose data path this host cannot give: its port is made,
    # then the kind refuses (vhostuser, more hugepages than the host has).
    bad = _network(agent, 213, datapath="vhostuser")
    ns = make_netns("pwm")
    cid = unique("pwm", 12)
    with pytest.raises(Exhausted, match="hugepages"):
        agent.attach(
            AttachRequest(
                container_id=cid,
                netns=netns_path(ns),
                networks=[
                    NetworkSelection(network=a.id),
                    NetworkSelection(network=b.id),
                    NetworkSelection(network=bad.id),
                ],
            )
        )
    assert _no_interfaces_left(ns)
    assert agent.list_attachments() == []
    for net in (a, b, bad):
        assert agent.backend.list_ports(agent.ctx, {"network_id": [net.id]}) == []
    assert agent.flush_network_status()
    assert not (agent.config.state_dir / "network-status" / f"{cid}.json").exists()


def test_bad_requests_change_nothing(agent: Agent, make_netns: Any) -> None:
    a = _network(agent, 221)
    ns = make_netns("pwm")
    cid = unique("pwm", 12)
    with pytest.raises(InvalidInput, match="default route"):
        agent.attach(
            AttachRequest(
                container_id=cid,
                netns=netns_path(ns),
                networks=[
                    NetworkSelection(network=a.id, default_route=True),
                    NetworkSelection(network=a.id, default_route=True),
                ],
            )
        )
    with pytest.raises(InvalidInput, match="twice"):
        agent.attach(
            AttachRequest(
                container_id=cid,
                netns=netns_path(ns),
                networks=[
                    NetworkSelection(network=a.id, ifname="x"),
                    NetworkSelection(network=a.id, ifname="x"),
                ],
            )
        )
    assert agent.list_attachments() == [] and _links(ns) == ["lo"]
    assert agent.backend.list_ports(agent.ctx, {"network_id": [a.id]}) == []


def test_ports_carry_the_ownership_mark(agent: Agent, make_netns: Any) -> None:
    a = _network(agent, 231)
    ns = make_netns("pwm")
    cid = unique("pwm", 12)
    result = agent.attach(
        AttachRequest(
            container_id=cid, netns=netns_path(ns), networks=[NetworkSelection(network=a.id)]
        )
    )
    record = result.interfaces[0].attachment
    port = agent.backend.get_port(agent.ctx, record.port_id or "")
    host = agent.config.host_id
    assert set(port.tags) == {
        f"podwire:host={host}",
        "podwire:purpose=attachment",
        f"podwire:attachment={record.id}",
        "podwire:ifname=eth0",
    }
    assert [s.name for s in record.steps] == ["port.create", "plug"]
    assert all(s.state == "done" for s in record.steps)
    assert record.steps[0].data["port_id"] == port.id
    # Found by the mark alone: the orphan sweep's query.
    found = agent.backend.list_ports(
        agent.ctx, {"tags": [f"podwire:host={host}", "podwire:purpose=attachment"]}
    )
    assert [p.id for p in found] == [port.id]


def test_network_status_files_follow_the_records(agent: Agent, make_netns: Any) -> None:
    """The files are written off the request path, end as the records are,
    and the start-up reconcile removes those of containers with no record
    (a crash between a DEL's record delete and the file's removal)."""
    a = _network(agent, 231)
    ns = make_netns("pwm")
    cid = unique("pwm", 12)
    folder = agent.config.state_dir / "network-status"
    folder.mkdir(parents=True, exist_ok=True)
    ghost = folder / "ghost-container.json"
    ghost.write_text("[]")
    (folder / "ghost-container.4242.tmp").write_text("[")
    for _ in range(3):  # a burst of changes to one container
        agent.attach(
            AttachRequest(
                container_id=cid, netns=netns_path(ns), networks=[NetworkSelection(network=a.id)]
            )
        )
        agent.detach(DetachRequest(container_id=cid, ifname="eth0"))
    agent.attach(
        AttachRequest(
            container_id=cid, netns=netns_path(ns), networks=[NetworkSelection(network=a.id)]
        )
    )
    agent.reconcile()
    assert agent.flush_network_status()
    assert sorted(p.name for p in folder.iterdir()) == [f"{cid}.json"]
    assert json.loads((folder / f"{cid}.json").read_text()) == agent.network_status(cid)
