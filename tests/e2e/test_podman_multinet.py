"""podman with ``--network a,b``: one CNI call per network (eth0, eth1).
Both interfaces stay, the container has one default route (the one network
allowed to own it), traffic passes over both, CNI CHECK passes on both, and
``podman rm`` gives everything back.

podman 4.3 has no command that runs CNI CHECK, so CHECK is run the way
libcni runs it: the shim, with the container's id, netns and interface name
and the network's plugin config.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_podman import create_network, ping, podwire_cli, ports_of
from tests.fixtures.agent import AgentProcess
from tests.fixtures.common import unique
from tests.fixtures.podman import Podman

pytestmark = [pytest.mark.podman, pytest.mark.root, pytest.mark.slow]


def _plugin_config(podman: Podman, cni_name: str) -> dict[str, Any]:
    """The plugin's config as libcni hands it over (name and version injected)."""
    conflist = json.loads((podman.net_dir / f"{cni_name}.conflist").read_text())
    return {"cniVersion": conflist["cniVersion"], "name": cni_name, **conflist["plugins"][0]}


def _links_by_mac(podman: Podman, container: str) -> dict[str, str]:
    """MAC -> interface name inside the container."""
    out: dict[str, str] = {}
    for line in podman.exec(container, "ip", "-o", "link").stdout.splitlines():
        if "link/ether" in line:
            name = line.split(":", 2)[1].strip().split("@")[0]
            out[line.split("link/ether", 1)[1].split()[0]] = name
    return out


def _default_routes(podman: Podman, container: str) -> list[str]:
    lines = podman.exec(container, "ip", "route", "show", "default").stdout
    lines += podman.exec(container, "ip", "-6", "route", "show", "default").stdout
    # busybox's ip ignores the "default" selector: filter here
    return [line for line in lines.splitlines() if line.startswith("default")]


def _wait_no_links(names: list[str], timeout: float = 10.0) -> None:
    """The agent deletes veth pairs in the background (docs/perf.md)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [
            n
            for n in names
            if subprocess.run(["ip", "link", "show", n], capture_output=True).returncode == 0
        ]
        if not left:
            return
        assert time.monotonic() < deadline, f"host links left: {left}"
        time.sleep(0.05)


def test_two_networks_one_default_route_check_on_both(
    agent_proc: AgentProcess, podman: Podman, busybox_rootfs: Path
) -> None:
    net_a, network_a = create_network(agent_proc)
    net_b, network_b = create_network(agent_proc)
    cni_a, cni_b = unique("pwcnia"), unique("pwcnib")
    podman.add_network(cni_a, net_a, agent_proc.socket)
    podman.add_network(cni_b, net_b, agent_proc.socket)
    # podman runs the networks' ADDs in no fixed order: b declines the
    # default route, so a owns it whichever ADD comes first.
    conf_b = podman.net_dir / f"{cni_b}.conflist"
    conflist_b = json.loads(conf_b.read_text())
    conflist_b["plugins"][0]["default-route"] = False
    conf_b.write_text(json.dumps(conflist_b))

    name = unique("pwmn-")
    container_id = podman.start(name, f"{cni_a},{cni_b}", busybox_rootfs)
    peer = unique("pwmp-")
    peer_id = podman.start(peer, cni_b, busybox_rootfs)

    # two interfaces, each with its network's port
    [port_a] = ports_of(agent_proc, net_a)
    mine_b = [p for p in ports_of(agent_proc, net_b) if p["device_id"] == container_id]
    [port_b] = mine_b
    assert port_a["device_id"] == container_id
    links = _links_by_mac(podman, name)
    if_a, if_b = links[port_a["mac_address"]], links[port_b["mac_address"]]
    assert {if_a, if_b} == {"eth0", "eth1"}, links

    # one default route per family, on a's interface, via a's gateways
    defaults = _default_routes(podman, name)
    gateways_a = {
        s["gateway_ip"] for s in podwire_cli(agent_proc, "subnet", "list", "--network", net_a)
    }
    assert len(defaults) == 2, defaults
    for line in defaults:
        assert f"dev {if_a}" in line and line.split("via ")[1].split()[0] in gateways_a, line
    records = {
        r["ifname"]: r for r in agent_proc.attachments() if r["container_id"] == container_id
    }
    assert (records[if_a]["default_route"], records[if_b]["default_route"]) == (True, False)

    # traffic over both: a's gateway via eth-a, the peer on b via eth-b
    gw4_a = next(g for g in gateways_a if "." in g)
    assert ping(podman, name, gw4_a).returncode == 0
    [peer_port] = [p for p in ports_of(agent_proc, net_b) if p["device_id"] == peer_id]
    for address in (ip["ip_address"] for ip in peer_port["fixed_ips"]):
        answer = ping(podman, name, address)
        assert answer.returncode == 0, f"{name} -> {address} over {if_b}: {answer.stdout}"

    # CNI CHECK of each network, as libcni runs it
    sandbox = podman("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name).stdout.strip()
    assert sandbox, "podman reports no netns for the container"
    for cni_name, ifname in ((cni_a, if_a), (cni_b, if_b)):
        checked = agent_proc.cni(
            "CHECK",
            _plugin_config(podman, cni_name),
            container_id=container_id,
            netns=sandbox,
            ifname=ifname,
        )
        assert checked.code == 0, (cni_name, ifname, checked.stdout)

    # the status document the agent keeps for the container
    shown = podwire_cli(agent_proc, "attachment", "show", container_id)
    # in the order the ADDs came (records are listed in that order)
    assert [(e["interface"], e["default"]) for e in shown] == [
        (ifname, ifname == if_a) for ifname in records
    ]
    assert {e["mac"] for e in shown} == {port_a["mac_address"], port_b["mac_address"]}

    host_ends = [
        f"pwv{p['id'].replace('-', '')}"[:15]
        for p in (*ports_of(agent_proc, net_a), *ports_of(agent_proc, net_b))
    ]
    podman.remove(name)
    podman.remove(peer)
    assert ports_of(agent_proc, net_a) == [] and ports_of(agent_proc, net_b) == []
    assert [
        a for a in agent_proc.attachments() if a["container_id"] in (container_id, peer_id)
    ] == []
    _wait_no_links(host_ends)
    assert network_a["id"] and network_b["id"]


def test_without_preference_whichever_add_comes_first_owns_the_default_route(
    agent_proc: AgentProcess, podman: Podman, busybox_rootfs: Path
) -> None:
    """The issue's case: the second ADD no longer takes the first one's
    default route, so CHECK of both passes (podman's order of the two ADDs
    is not fixed: the first that arrives owns it)."""
    net_a, _ = create_network(agent_proc)
    net_b, _ = create_network(agent_proc)
    cni_a, cni_b = unique("pwcnia"), unique("pwcnib")
    podman.add_network(cni_a, net_a, agent_proc.socket)
    podman.add_network(cni_b, net_b, agent_proc.socket)
    name = unique("pwmn-")
    container_id = podman.start(name, f"{cni_a},{cni_b}", busybox_rootfs)

    records = [r for r in agent_proc.attachments() if r["container_id"] == container_id]
    assert sorted(r["ifname"] for r in records) == ["eth0", "eth1"]
    owners = [r["ifname"] for r in records if r["default_route"]]
    assert owners == [records[0]["ifname"]], records  # the first ADD's
    defaults = _default_routes(podman, name)
    assert len(defaults) == 2 and all(f"dev {owners[0]}" in line for line in defaults), defaults

    sandbox = podman("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name).stdout.strip()
    by_network = {r["network_id"]: r["ifname"] for r in records}
    for cni_name, net in ((cni_a, net_a), (cni_b, net_b)):
        network_id = podwire_cli(agent_proc, "network", "show", net)["id"]
        checked = agent_proc.cni(
            "CHECK",
            _plugin_config(podman, cni_name),
            container_id=container_id,
            netns=sandbox,
            ifname=by_network[network_id],
        )
        assert checked.code == 0, (cni_name, checked.stdout)

    podman.remove(name)
    assert ports_of(agent_proc, net_a) == [] and ports_of(agent_proc, net_b) == []
    assert [a for a in agent_proc.attachments() if a["container_id"] == container_id] == []
