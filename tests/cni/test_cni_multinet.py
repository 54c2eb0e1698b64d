"""Several networks per container through the CNI door: a config naming
them all (``"networks"``), and one config per network (podman's
``--network a,b``), against a real agent in real network namespaces."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import require_command, unique

pytestmark = pytest.mark.root


def _ip(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "ip", *args], capture_output=True, text=True, check=True
    ).stdout


def _network(agent: AgentProcess, second_octet: int) -> Any:
    """A dual-stack network; its v4 subnet in 198.<second_octet>.x.0/24."""
    name = unique("pwm")
    third = int(name[-4:], 16) % 250
    return agent.create_network(
        name, f"198.{second_octet}.{third}.0/24", f"2001:db8:{second_octet:x}{third:02x}::/64"
    )


@pytest.fixture
def nets(agent_proc: AgentProcess) -> tuple[Any, Any]:
    return _network(agent_proc, 18), _network(agent_proc, 19)


def _multi(name: str, *elements: dict[str, Any], version: str = "1.1.0") -> dict[str, Any]:
    return {"cniVersion": version, "name": name, "type": "podwire", "networks": list(elements)}


def _defaults(ns: str) -> list[str]:
    """The default routes in the netns, v4 and v6 ("default via GW dev IF")."""
    lines = _ip(ns, "-4", "route", "show", "default") + _ip(ns, "-6", "route", "show", "default")
    return [line for line in lines.splitlines() if line.strip()]


def _gateway(agent: AgentProcess, net: Any, version: int) -> str:
    subnets = agent.backend.list_subnets(agent.ctx, {"network_id": [net.id]})
    return next(s.gateway_ip for s in subnets if s.ip_version == version)


def _ping(ns: str, address: str) -> None:
    busybox = require_command("busybox")
    done = subprocess.run(
        ["ip", "netns", "exec", ns, busybox, "ping", "-c", "1", "-W", "3", address],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0", "1.1.0"])
def test_networks_config_one_result_one_default_route(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any, version: str
) -> None:
    a, b = nets
    ns = make_netns()
    cid = unique("pwm", 12)
    conf = _multi("multi", {"name": a.name}, {"name": b.name}, version=version)
    added = agent_proc.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
    assert added.code == 0, added.stdout
    result = added.json
    assert result["cniVersion"] == version
    # host side, container side, for each network in order
    names = [i["name"] for i in result["interfaces"]]
    assert names[1] == "eth0" and names[3] == "eth1", names
    assert all(
        i.get("sandbox") == netns_path(ns)
        for i in (result["interfaces"][1], result["interfaces"][3])
    )
    port_a = agent_proc.ports(a.id)[0]
    port_b = agent_proc.ports(b.id)[0]
    by_index = {
        index: sorted(
            ip["address"].split("/")[0] for ip in result["ips"] if ip["interface"] == index
        )
        for index in (1, 3)
    }
    assert by_index[1] == sorted(f.ip_address for f in port_a.fixed_ips)
    assert by_index[3] == sorted(f.ip_address for f in port_b.fixed_ips)
    assert result["interfaces"][1]["mac"] == port_a.mac_address
    assert result["interfaces"][3]["mac"] == port_b.mac_address
    # one default route per family, both via the first network
    gw4, gw6 = _gateway(agent_proc, a, 4), _gateway(agent_proc, a, 6)
    assert sorted((r["dst"], r.get("gw")) for r in result["routes"]) == [
        ("0.0.0.0/0", gw4),
        ("::/0", gw6),
    ]
    defaults = _defaults(ns)
    assert len(defaults) == 2 and all("dev eth0" in line for line in defaults), defaults
    # both interfaces carry traffic: each network's gateway answers
    _ping(ns, gw4)
    _ping(ns, _gateway(agent_proc, b, 4))
    # the agent's records: one owner
    records = {r["ifname"]: r for r in agent_proc.attachments()}
    assert records["eth0"]["default_route"] is True
    assert records["eth1"]["default_route"] is False
    assert agent_proc.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
    assert agent_proc.ports() == [] and agent_proc.attachments() == []


def test_element_fields_interface_ips_mac_default_route(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns = make_netns()
    cid = unique("pwm", 12)
    gw_b = _gateway(agent_proc, b, 4)
    want_ip = gw_b.rsplit(".", 1)[0] + ".77"
    conf = _multi(
        "multi",
        {"name": a.name},
        {
            "network": b.id,
            "interface": "net1",
            "ips": [want_ip],
            "mac": "0a:70:77:00:12:34",
            "default-route": [gw_b],
        },
    )
    added = agent_proc.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
    assert added.code == 0, added.stdout
    [port_b] = agent_proc.ports(b.id)
    assert port_b.mac_address == "0a:70:77:00:12:34"
    assert want_ip in [f.ip_address for f in port_b.fixed_ips]
    defaults = _defaults(ns)
    assert defaults and all("dev net1" in line for line in defaults), defaults
    assert f"via {gw_b}" in defaults[0]
    # CHECK passes on both, with our result as prevResult
    checked = agent_proc.cni(
        "CHECK", {**conf, "prevResult": added.json}, container_id=cid, netns=netns_path(ns)
    )
    assert checked.code == 0, checked.stdout
    # drift on the second interface is named
    v4 = next(ip["address"] for ip in added.json["ips"] if ip["address"].startswith(want_ip + "/"))
    _ip(ns, "addr", "del", v4, "dev", "net1")
    drift = agent_proc.cni("CHECK", conf, container_id=cid, netns=netns_path(ns))
    assert drift.code != 0 and (
        "address" in drift.json["msg"].lower() or want_ip in drift.json["msg"]
    )
    assert agent_proc.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
    assert agent_proc.ports() == []


def test_a_gateway_not_the_networks_fails_and_leaves_nothing(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns = make_netns()
    conf = _multi("multi", {"name": a.name}, {"name": b.name, "default-route": ["198.18.255.254"]})
    answer = agent_proc.cni("ADD", conf, container_id=unique("pwm", 12), netns=netns_path(ns))
    assert answer.error_code == 7, answer.stdout
    assert answer.json["details"] == "networks[1].default-route"
    assert agent_proc.ports() == [] and agent_proc.attachments() == []
    assert "eth0" not in _ip(ns, "link") and "eth1" not in _ip(ns, "link")


def test_third_network_failing_rolls_back_the_first_two(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns = make_netns()
    missing = unique("pwm")
    conf = _multi("multi", {"name": a.name}, {"name": b.name}, {"name": missing})
    answer = agent_proc.cni("ADD", conf, container_id=unique("pwm", 12), netns=netns_path(ns))
    assert answer.error_code == 7 and missing in answer.json["msg"], answer.stdout
    assert agent_proc.ports(a.id) == [] and agent_proc.ports(b.id) == []
    assert agent_proc.attachments() == []
    links = _ip(ns, "link")
    assert "eth0" not in links and "eth1" not in links, links


def test_bad_element_is_code_7_and_nothing_is_made(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns = make_netns()
    conf = _multi("multi", {"name": a.name}, {"name": b.name, "namespace": "kube-system"})
    answer = agent_proc.cni("ADD", conf, container_id=unique("pwm", 12), netns=netns_path(ns))
    assert answer.error_code == 7 and answer.json["details"] == "networks[1].namespace"
    both = {**_multi("multi", {"name": a.name}), "network": a.name}
    assert (
        agent_proc.cni("ADD", both, container_id=unique("pwm", 12), netns=netns_path(ns)).error_code
        == 7
    )
    assert agent_proc.ports() == [] and agent_proc.attachments() == []


def test_del_is_idempotent_and_scoped(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns = make_netns()
    cid = unique("pwm", 12)
    # another config's interface in the same container stays through our DELs
    other = _network(agent_proc, 18)
    assert (
        agent_proc.cni(
            "ADD", netconf(other.name), container_id=cid, netns=netns_path(ns), ifname="net9"
        ).code
        == 0
    )
    conf = _multi("multi", {"name": a.name}, {"name": b.name})
    assert agent_proc.cni("ADD", conf, container_id=cid, netns=netns_path(ns)).code == 0
    assert len(agent_proc.ports(a.id)) == len(agent_proc.ports(b.id)) == 1
    for _ in range(2):
        answer = agent_proc.cni("DEL", conf, container_id=cid, netns=netns_path(ns))
        assert answer.code == 0 and answer.stdout == b"", answer.stdout
        assert agent_proc.ports(a.id) == [] and agent_proc.ports(b.id) == []
    assert [r["ifname"] for r in agent_proc.attachments()] == ["net9"]
    assert len(agent_proc.ports(other.id)) == 1
    # without ADD, and without CNI_NETNS
    assert agent_proc.cni("DEL", conf, container_id=unique("pwm", 12)).code == 0
    assert agent_proc.cni("DEL", netconf(other.name), container_id=cid, ifname="net9").code == 0
    assert agent_proc.ports() == [] and agent_proc.attachments() == []


def test_gc_keeps_every_interface_of_a_valid_attachment(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns1, ns2 = make_netns(), make_netns()
    c1, c2 = unique("pwm", 12), unique("pwm", 12)
    conf = _multi("multi", {"name": a.name}, {"name": b.name})
    assert agent_proc.cni("ADD", conf, container_id=c1, netns=netns_path(ns1)).code == 0
    assert agent_proc.cni("ADD", conf, container_id=c2, netns=netns_path(ns2)).code == 0
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": c1, "ifname": "eth0"}]}
    answer = agent_proc.cni("GC", gc, container_id=None, ifname=None)
    assert answer.code == 0, answer.stdout
    assert sorted((r["container_id"], r["ifname"]) for r in agent_proc.attachments()) == [
        (c1, "eth0"),
        (c1, "eth1"),
    ]
    assert [p.device_id for p in agent_proc.ports()] == [c1, c1]
    assert "eth1" not in _ip(ns2, "link")


def test_one_config_per_network_like_podman(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    """podman --network a,b: one CNI call per network (eth0, eth1). Both
    interfaces stay, the first keeps the default routes, CHECK passes on both."""
    a, b = nets
    ns = make_netns()
    cid = unique("pwm", 12)
    first = agent_proc.cni(
        "ADD", netconf(a.name), container_id=cid, netns=netns_path(ns), ifname="eth0"
    )
    second = agent_proc.cni(
        "ADD", netconf(b.name), container_id=cid, netns=netns_path(ns), ifname="eth1"
    )
    assert first.code == 0 and second.code == 0, second.stdout
    assert [r["dst"] for r in second.json["routes"]] == []
    assert "dns" not in second.json or not second.json["dns"].get("nameservers")
    defaults = _defaults(ns)
    assert len(defaults) == 2 and all("dev eth0" in line for line in defaults), defaults
    for net, ifname, added in ((a, "eth0", first), (b, "eth1", second)):
        conf = netconf(net.name, prevResult=added.json)
        checked = agent_proc.cni(
            "CHECK", conf, container_id=cid, netns=netns_path(ns), ifname=ifname
        )
        assert checked.code == 0, (ifname, checked.stdout)
    _ping(ns, _gateway(agent_proc, a, 4))
    _ping(ns, _gateway(agent_proc, b, 4))
    # asking the second for the default route while the first owns it: refused
    c = _network(agent_proc, 19)
    third = agent_proc.cni(
        "ADD",
        {**_multi(c.name, {"name": c.name, "default-route": True})},
        container_id=cid,
        netns=netns_path(ns),
        ifname="eth2",
    )
    assert third.error_code == 999 and "default route" in third.json["msg"], third.stdout
    assert agent_proc.ports(c.id) == []
    for net, ifname in ((a, "eth0"), (b, "eth1")):
        assert (
            agent_proc.cni(
                "DEL", netconf(net.name), container_id=cid, netns=netns_path(ns), ifname=ifname
            ).code
            == 0
        )
    assert agent_proc.ports() == [] and agent_proc.attachments() == []


def test_malformed_prev_result_undoes_the_add(
    agent_proc: AgentProcess, nets: tuple[Any, Any], make_netns: Any
) -> None:
    a, b = nets
    ns = make_netns()
    conf = {**_multi("multi", {"name": a.name}, {"name": b.name}), "prevResult": {"ips": "x"}}
    answer = agent_proc.cni("ADD", conf, container_id=unique("pwm", 12), netns=netns_path(ns))
    assert answer.error_code == 6, answer.stdout
    assert agent_proc.ports() == [] and agent_proc.attachments() == []
    assert "eth1" not in _ip(ns, "link")
