"""`podwire attachment list|show` and the agent API behind them, against a
real agent with a container attached to two networks (CNI ADD through the
real shim, in a real netns)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from tests.fixtures.agent import AgentProcess, netns_path
from tests.fixtures.common import unique
from tests.fixtures.server import podwire_command

pytestmark = pytest.mark.root


def _cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podwire_command(), "--agent-socket", str(agent.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _raw_get(agent: AgentProcess, path: str, **params: str) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as client:
        return client.get(path, params=params)


@pytest.fixture
def two_networks(agent_proc: AgentProcess, make_netns: Any) -> dict[str, Any]:
    """A container on two networks (eth0 owns the default route), and a
    second container on the first network only."""
    third = int(unique("pwc")[-4:], 16) % 250
    a = agent_proc.create_network(unique("pwc"), f"198.18.{third}.0/24", f"2001:db8:{third:x}::/64")
    b = agent_proc.create_network(unique("pwc"), f"198.19.{third}.0/24")
    ns, ns_other = make_netns(), make_netns()
    cid, other = unique("pwc", 12), unique("pwc", 12)
    conf = {
        "cniVersion": "1.1.0",
        "name": "multi",
        "type": "podwire",
        "networks": [{"name": a.name}, {"name": b.name, "interface": "net1"}],
    }
    added = agent_proc.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
    assert added.code == 0, added.stdout
    single = {**conf, "networks": [{"name": a.name}]}
    assert agent_proc.cni("ADD", single, container_id=other, netns=netns_path(ns_other)).code == 0
    return {"a": a, "b": b, "cid": cid, "other": other, "result": added.json}


def test_attachment_list(agent_proc: AgentProcess, two_networks: dict[str, Any]) -> None:
    cid, other = two_networks["cid"], two_networks["other"]
    everything = _cli(agent_proc, "attachment", "list", "--json")
    assert everything.returncode == 0, everything.stderr
    records = json.loads(everything.stdout)
    assert sorted((r["container_id"], r["ifname"]) for r in records) == sorted(
        [(cid, "eth0"), (cid, "net1"), (other, "eth0")]
    )
    mine = json.loads(_cli(agent_proc, "attachment", "list", "--container", cid, "--json").stdout)
    assert [(r["ifname"], r["default_route"]) for r in mine] == [("eth0", True), ("net1", False)]
    text = _cli(agent_proc, "attachment", "list", "--container", cid)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["CONTAINER", "INTERFACE", "NETWORK"]
    assert any(two_networks["b"].name in line and "net1" in line for line in lines)
    assert other not in text.stdout


def test_attachment_show_is_the_network_status(
    agent_proc: AgentProcess, two_networks: dict[str, Any]
) -> None:
    cid, a, b = two_networks["cid"], two_networks["a"], two_networks["b"]
    shown = _cli(agent_proc, "attachment", "show", cid, "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    port_a, port_b = agent_proc.ports(a.id), agent_proc.ports(b.id)
    [mine_a] = [p for p in port_a if p.device_id == cid]
    [mine_b] = port_b
    assert status == [
        {
            "name": a.name,
            "interface": "eth0",
            "ips": [f.ip_address for f in mine_a.fixed_ips],
            "mac": mine_a.mac_address,
            "default": True,
            "dns": {},
        },
        {
            "name": b.name,
            "interface": "net1",
            "ips": [f.ip_address for f in mine_b.fixed_ips],
            "mac": mine_b.mac_address,
            "default": False,
            "dns": {},
        },
    ]
    # the same document over the API
    api = _raw_get(agent_proc, f"/v1/containers/{cid}/network-status")
    assert api.status_code == 200 and api.json() == status
    text = _cli(agent_proc, "attachment", "show", cid)
    assert text.returncode == 0 and "net1" in text.stdout and mine_b.mac_address in text.stdout


def test_unknown_container_and_bad_filters(
    agent_proc: AgentProcess, two_networks: dict[str, Any]
) -> None:
    missing = unique("pwc", 12)
    shown = _cli(agent_proc, "attachment", "show", missing)
    assert shown.returncode == 1 and missing in shown.stderr and shown.stdout == ""
    assert _raw_get(agent_proc, f"/v1/attachments/{missing}").status_code == 404
    assert _raw_get(agent_proc, f"/v1/containers/{missing}/network-status").status_code == 404
    bad_state = _raw_get(agent_proc, "/v1/attachments", state="up")
    assert bad_state.status_code == 400 and "state" in bad_state.json()["NeutronError"]["message"]
    unknown = _raw_get(agent_proc, "/v1/attachments", colour="red")
    assert unknown.status_code == 400 and "colour" in unknown.json()["NeutronError"]["message"]
    elsewhere = subprocess.run(
        [*podwire_command(), "--url", "http://127.0.0.1:9", "attachment", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert elsewhere.returncode == 1 and "--agent-socket" in elsewhere.stderr


def test_api_filters(agent_proc: AgentProcess, two_networks: dict[str, Any]) -> None:
    cid, a, b = two_networks["cid"], two_networks["a"], two_networks["b"]
    by_container = _raw_get(agent_proc, f"/v1/attachments/{cid}").json()["attachments"]
    assert [r["ifname"] for r in by_container] == ["eth0", "net1"]
    on_b = _raw_get(agent_proc, "/v1/attachments", network=b.id).json()["attachments"]
    assert [(r["container_id"], r["ifname"]) for r in on_b] == [(cid, "net1")]
    on_a = _raw_get(agent_proc, "/v1/attachments", network=a.name).json()["attachments"]
    assert sorted(r["container_id"] for r in on_a) == sorted([cid, two_networks["other"]])
    eth0 = _raw_get(agent_proc, "/v1/attachments", ifname="eth0", state="ready", frontend="cni")
    assert len(eth0.json()["attachments"]) == 2
    none = _raw_get(agent_proc, "/v1/attachments", frontend="docker").json()["attachments"]
    assert none == []
