"""The CNI plugin driven exactly as a runtime drives it (environment + stdin,
the real podwire-cni script) against a real agent process on the embedded
backend, in real network namespaces."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import require_command, unique

pytestmark = pytest.mark.root


def _ip(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "ip", *args], capture_output=True, text=True, check=True
    ).stdout


def _wait_gone(present: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while present():
        assert time.monotonic() < deadline, "still there"
        time.sleep(0.02)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


@pytest.fixture
def net(agent_proc: AgentProcess) -> Any:
    name = unique("pwa")
    third = int(name[-4:], 16) % 250
    return agent_proc.create_network(name, f"198.18.{third}.0/24", f"2001:db8:{third:x}::/64")


def _add(agent: AgentProcess, net: Any, ns: str, cid: str, version: str = "1.1.0", **kw: Any):
    return agent.cni(
        "ADD", netconf(net.name, version), container_id=cid, netns=netns_path(ns), **kw
    )


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_add_result_matches_backend_port(
    agent_proc: AgentProcess, net: Any, make_netns: Any, version: str
) -> None:
    ns = make_netns()
    cid = unique("pwa", 12)
    answer = _add(agent_proc, net, ns, cid, version)
    assert answer.code == 0, answer.stdout
    result = answer.json
    assert result["cniVersion"] == version

    [port] = agent_proc.ports(net.id)
    assert port.device_id == cid
    assert port.device_owner == "podwire:cni"
    container = [i for i in result["interfaces"] if i.get("sandbox")]
    assert container == [
        {"name": "eth0", "mac": port.mac_address, "sandbox": netns_path(ns)}
        | ({"mtu": net.mtu} if version == "1.1.0" else {})
    ]
    index = result["interfaces"].index(container[0])
    got = {ipaddress.ip_interface(ip["address"]).ip.compressed for ip in result["ips"]}
    assert got == {f.ip_address for f in port.fixed_ips}
    assert {ip["interface"] for ip in result["ips"]} == {index}
    assert all(("version" in ip) == (version == "0.4.0") for ip in result["ips"])
    assert {r["dst"] for r in result["routes"]} >= {"0.0.0.0/0", "::/0"}

    # What the container really has: the port's MAC and addresses.
    link = json.loads(_ip(ns, "-j", "addr", "show", "eth0"))[0]
    assert link["address"] == port.mac_address
    live = {a["local"] for a in link["addr_info"] if a["scope"] == "global"}
    assert live == {f.ip_address for f in port.fixed_ips}

    assert (
        agent_proc.cni(
            "DEL", netconf(net.name, version), container_id=cid, netns=netns_path(ns)
        ).code
        == 0
    )
    assert agent_proc.ports(net.id) == []


def test_two_containers_ping(agent_proc: AgentProcess, net: Any, make_netns: Any) -> None:
    busybox = require_command("busybox")
    a, b = make_netns(), make_netns()
    ra = _add(agent_proc, net, a, unique("pwa", 12))
    rb = _add(agent_proc, net, b, unique("pwa", 12))
    assert ra.code == 0 and rb.code == 0, (ra.stdout, rb.stdout)
    for ip in rb.json["ips"]:
        addr = ip["address"].split("/")[0]
        ping = subprocess.run(
            ["ip", "netns", "exec", a, busybox, "ping", "-c", "1", "-W", "3", addr],
            capture_output=True,
        )
        assert ping.returncode == 0, ping.stdout


def test_del_is_idempotent_in_every_case(
    agent_proc: AgentProcess, net: Any, make_netns: Any
) -> None:
    conf = netconf(net.name)
    # twice
    ns = make_netns()
    cid = unique("pwa", 12)
    assert _add(agent_proc, net, ns, cid).code == 0
    for _ in range(2):
        answer = agent_proc.cni("DEL", conf, container_id=cid, netns=netns_path(ns))
        assert answer.code == 0 and answer.stdout == b""
        assert agent_proc.ports(net.id) == []
    # without ADD
    assert (
        agent_proc.cni("DEL", conf, container_id=unique("pwa", 12), netns=netns_path(ns)).code == 0
    )
    # with the netns already deleted
    ns2 = make_netns()
    cid2 = unique("pwa", 12)
    assert _add(agent_proc, net, ns2, cid2).code == 0
    subprocess.run(["ip", "netns", "del", ns2], check=True)
    assert agent_proc.cni("DEL", conf, container_id=cid2, netns=netns_path(ns2)).code == 0
    assert agent_proc.ports(net.id) == []
    # without CNI_NETNS: the interface in the recorded netns goes too
    ns3 = make_netns()
    cid3 = unique("pwa", 12)
    added = _add(agent_proc, net, ns3, cid3)
    assert added.code == 0
    host_end = added.json["interfaces"][0]["name"]
    assert agent_proc.cni("DEL", conf, container_id=cid3, netns=None).code == 0
    assert agent_proc.ports(net.id) == []
    assert agent_proc.attachments() == []
    # The agent deletes veth pairs in the background (async_delete, see
    # docs/perf.md): the pair is down at once and gone moments later.
    _wait_gone(lambda: _link_exists(host_end) or "eth0" in _ip(ns3, "link"))


def test_check_ok_then_drift_named(agent_proc: AgentProcess, net: Any, make_netns: Any) -> None:
    ns = make_netns()
    cid = unique("pwa", 12)
    added = _add(agent_proc, net, ns, cid)
    assert added.code == 0
    conf = netconf(net.name, prevResult=added.json)
    assert agent_proc.cni("CHECK", conf, container_id=cid, netns=netns_path(ns)).code == 0
    v4 = next(ip["address"] for ip in added.json["ips"] if "." in ip["address"])
    _ip(ns, "addr", "del", v4, "dev", "eth0")
    drift = agent_proc.cni("CHECK", conf, container_id=cid, netns=netns_path(ns))
    assert drift.code != 0
    assert v4.split("/")[0] in drift.json["msg"] or "address" in drift.json["msg"].lower()
    # a prevResult claiming another MAC for our interface fails too, naming it
    _ip(ns, "addr", "add", v4, "dev", "eth0")
    gw4 = next(ip["gateway"] for ip in added.json["ips"] if "." in ip["address"])
    _ip(ns, "route", "add", "default", "via", gw4)
    repaired = agent_proc.cni("CHECK", conf, container_id=cid, netns=netns_path(ns))
    assert repaired.code == 0, repaired.stdout
    forged = json.loads(json.dumps(added.json))
    forged["interfaces"][1]["mac"] = "0a:70:77:00:00:99"
    forged_conf = netconf(net.name, prevResult=forged)
    lied = agent_proc.cni("CHECK", forged_conf, container_id=cid, netns=netns_path(ns))
    assert lied.code != 0 and "MAC" in lied.json["msg"], lied.stdout
    # CHECK of a container never added: code 3
    unknown = agent_proc.cni("CHECK", conf, container_id=unique("pwa", 12), netns=netns_path(ns))
    assert unknown.error_code == 3


def test_status(agent_proc: AgentProcess, net: Any) -> None:
    ok = agent_proc.cni("STATUS", netconf(net.name), container_id=None, ifname=None)
    assert ok.code == 0 and ok.stdout == b""
    name = unique("pwa")
    missing = agent_proc.cni("STATUS", netconf(name), container_id=None, ifname=None)
    assert missing.error_code == 50 and name in missing.json["details"]


def test_gc_keeps_only_valid_attachments(
    agent_proc: AgentProcess, net: Any, make_netns: Any
) -> None:
    ns1, ns2 = make_netns(), make_netns()
    c1, c2 = unique("pwa", 12), unique("pwa", 12)
    assert _add(agent_proc, net, ns1, c1).code == 0
    assert _add(agent_proc, net, ns2, c2).code == 0
    conf = netconf(
        net.name, **{"cni.dev/valid-attachments": [{"containerID": c1, "ifname": "eth0"}]}
    )
    answer = agent_proc.cni("GC", conf, container_id=None, ifname=None)
    assert answer.code == 0, answer.stdout
    assert [p.device_id for p in agent_proc.ports(net.id)] == [c1]
    assert [a["container_id"] for a in agent_proc.attachments()] == [c1]
    assert "eth0" not in _ip(ns2, "link")
    # the legacy key works too
    legacy = netconf(net.name, **{"cni.dev/attachments": []})
    assert agent_proc.cni("GC", legacy, container_id=None, ifname=None).code == 0
    assert agent_proc.ports(net.id) == []


def test_error_codes(agent_proc: AgentProcess, net: Any, make_netns: Any) -> None:
    ns = netns_path(make_netns())
    cid = unique("pwa", 12)
    assert (
        agent_proc.cni("ADD", netconf(net.name, "0.2.0"), container_id=cid, netns=ns).error_code
        == 1
    )
    assert agent_proc.cni("FROB", netconf(net.name), container_id=cid, netns=ns).error_code == 4
    assert agent_proc.cni("ADD", netconf(net.name), container_id=None, netns=ns).error_code == 4
    assert agent_proc.cni("ADD", b"{nope", container_id=cid, netns=ns).error_code == 6
    unknown = unique("pwa")
    bad_net = agent_proc.cni("ADD", netconf(unknown), container_id=cid, netns=ns)
    assert bad_net.error_code == 7 and unknown in bad_net.json["msg"]
    twin = agent_proc.create_network(net.name)  # a second network of the same name
    ambiguous = agent_proc.cni("ADD", netconf(net.name), container_id=cid, netns=ns)
    assert ambiguous.error_code == 7 and "ambiguous" in ambiguous.json["msg"]
    agent_proc.delete_network(twin.id)
    bad_mac = agent_proc.cni(
        "ADD", netconf(net.name), container_id=cid, netns=ns, args="MAC=01:00:5e:00:00:01"
    )
    assert bad_mac.error_code == 7 and "multicast" in bad_mac.json["msg"], bad_mac.stdout
    gone = agent_proc.cni(
        "ADD",
        netconf(net.name),
        container_id=cid,
        netns=ns,
        socket_path=agent_proc.socket.with_name("x.sock"),
    )
    assert gone.error_code == 11 and gone.code != 0
    header = agent_proc.cni("ADD", netconf(net.name), container_id=cid, netns=ns, args="A=1\nB=2")
    assert header.error_code == 4
    assert agent_proc.ports(net.id) == []


def test_requested_mac_and_ip(agent_proc: AgentProcess, net: Any, make_netns: Any) -> None:
    ns = make_netns()
    subnet = agent_proc.backend.list_subnets(agent_proc.ctx, {"network_id": [net.id]})
    v4 = next(s for s in subnet if s.ip_version == 4)
    want_ip = str(ipaddress.ip_network(v4.cidr)[77])
    want_mac = "0a:70:77:aa:bb:cc"
    answer = _add(
        agent_proc,
        net,
        ns,
        unique("pwa", 12),
        args=f"IgnoreUnknown=1;MAC={want_mac};IP={want_ip};X=y",
    )
    assert answer.code == 0, answer.stdout
    [port] = agent_proc.ports(net.id)
    assert port.mac_address == want_mac
    assert [f.ip_address for f in port.fixed_ips] == [want_ip]


def test_add_failure_leaves_nothing(agent_proc: AgentProcess, net: Any) -> None:
    cid = unique("pwa", 12)
    answer = agent_proc.cni(
        "ADD", netconf(net.name), container_id=cid, netns="/var/run/netns/pwa-does-not-exist"
    )
    assert answer.error_code == 4 and "CNI_NETNS" in answer.json["msg"], answer.stdout
    assert agent_proc.ports(net.id) == []
    assert agent_proc.attachments() == []


def test_backend_unavailable_status_50_add_11(start_agent: Any, make_netns: Any) -> None:
    """An agent whose backend (a remote podwire API) cannot be reached: STATUS
    says 50 (cannot serve ADD), ADD says 11 (try again later)."""
    agent: AgentProcess = start_agent(
        "--backend", "remote", "--remote-url", "unix:///tmp/pwa-no-such-server.sock"
    )
    status = agent.cni("STATUS", netconf("pwa-any"), container_id=None, ifname=None)
    assert status.error_code == 50, status.stdout
    assert "backend" in status.json["details"]
    ns = make_netns()
    added = agent.cni(
        "ADD", netconf("pwa-any"), container_id=unique("pwa", 12), netns=netns_path(ns)
    )
    assert added.error_code == 11, added.stdout
    assert agent.attachments() == []
    # DEL cannot reach the backend either: it says so rather than lying
    deleted = agent.cni("DEL", netconf("pwa-any"), container_id=unique("pwa", 12))
    assert deleted.error_code == 11


def test_cni_versions_list_negotiates(agent_proc: AgentProcess, net: Any, make_netns: Any) -> None:
    """A config with only cniVersions is answered in the highest common one."""
    ns = make_netns()
    cid = unique("pwa", 12)
    conf = netconf(net.name)
    del conf["cniVersion"]
    conf["cniVersions"] = ["0.4.0", "1.0.0", "9.0.0"]
    added = agent_proc.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
    assert added.code == 0, added.stdout
    assert added.json["cniVersion"] == "1.0.0"
    assert all("version" not in ip for ip in added.json["ips"])
    assert agent_proc.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
    assert agent_proc.ports(net.id) == []
