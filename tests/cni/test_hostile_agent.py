"""Hostile and malformed CNI requests against a real agent, through the real
shims, in real namespaces (issue 14): each refused call gets the right code
and leaves ports, records, interfaces and port-security rules as they were;
nothing wedges the agent.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from podwire.kinds.veth_bridge import bridge_name
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root


@pytest.fixture
def net(agent_proc: AgentProcess) -> Any:
    name = unique("pw14")
    third = int(name[-4:], 16)
    return agent_proc.create_network(
        name, f"198.18.{third % 250}.0/24", f"2001:db8:14{third % 256:02x}::/64"
    )


def _v6_prefix(net: Any, agent: AgentProcess) -> str:
    subnets = agent.backend.list_subnets(agent.ctx, {"network_id": [net.id]})
    v6 = next(s for s in subnets if s.ip_version == 6)
    return v6.cidr.split("::")[0] + ":"


def _elements() -> list[str]:
    """The port-security set elements ("ifname" . mac . address), however
    nft lays them out."""
    out = subprocess.run(
        ["nft", "list", "table", "bridge", "podwire"], capture_output=True, text=True
    ).stdout
    return re.findall(r'"[^"]+" \. [0-9a-f:]+ \. [0-9a-f:./]+', out)


def state(agent: AgentProcess, net: Any, ns: str) -> dict[str, Any]:
    """What a refused call must leave unchanged: the network's ports, the
    agent's records, the links in the container and on the network's
    bridge, and the port-security rules for the network's addresses."""
    prefix = _v6_prefix(net, agent)
    links = json.loads(
        subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True, text=True).stdout
    )
    bridged = subprocess.run(
        ["ip", "-j", "link", "show", "master", bridge_name(net.id)], capture_output=True, text=True
    ).stdout
    return {
        "ports": sorted(p.id for p in agent.ports(net.id)),
        "records": sorted((r["container_id"], r["ifname"]) for r in agent.attachments()),
        "links": sorted(link["ifname"] for link in links),
        "bridged": sorted(link["ifname"] for link in json.loads(bridged or "[]")),
        "rules": sorted(e for e in _elements() if prefix in e),
    }


def test_fifo_netns_never_wedges_the_agent(
    agent_proc: AgentProcess, net: Any, make_netns: Any, tmp_path: Path
) -> None:
    """Class 1: 40 ADDs (more than every worker slot) naming a FIFO are each
    refused with 4 at once; nothing stays in flight; a real ADD then works,
    and SIGTERM stops the agent."""
    ns = make_netns("pw14")
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    before = state(agent_proc, net, ns)
    conf = netconf(net.name)

    def add(i: int) -> Any:
        return agent_proc.cni("ADD", conf, container_id=f"w{i}", netns=str(fifo), timeout=60)

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(add, range(40)))
    assert {a.error_code for a in answers} == {4}, answers[0].stdout
    for verb in ("CHECK", "DEL"):
        answer = agent_proc.cni(verb, conf, container_id="w0", netns=str(fifo))
        assert answer.error_code == 4, answer.stdout
    assert agent_proc.get("/v1/status")["in_flight"] == 0
    assert state(agent_proc, net, ns) == before

    cid = unique("pw14", 12)
    ok = agent_proc.cni("ADD", conf, container_id=cid, netns=netns_path(ns))
    assert ok.code == 0, ok.stdout
    assert agent_proc.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
    assert agent_proc.stop() is not None  # SIGTERM ends it (the fixture would kill it)


def test_refused_calls_change_nothing(agent_proc: AgentProcess, net: Any, make_netns: Any) -> None:
    """Classes 2, 3 and 5 against a live container: a garbage prevResult, a
    wrong-typed network/keep list/agentSocket, CHECK on a non-netns: each is
    its code and leaves the live container and everything else as it was."""
    ns, other = make_netns("pw14"), make_netns("pw14")
    conf = netconf(net.name)
    live = unique("pw14", 12)
    assert agent_proc.cni("ADD", conf, container_id=live, netns=netns_path(ns)).code == 0
    before = state(agent_proc, net, ns)
    before_other = state(agent_proc, net, other)
    cid = unique("pw14", 12)

    def refused(code: int, verb: str, config: dict[str, Any], **kw: Any) -> None:
        answer = agent_proc.cni(verb, config, container_id=kw.pop("cid", cid), **kw)
        assert answer.error_code == code, (verb, config, answer.stdout)
        assert answer.json["msg"] and "Traceback" not in answer.json["msg"]
        assert state(agent_proc, net, ns) == before
        assert state(agent_proc, net, other) == before_other

    # a garbage prevResult on ADD (once: the port, record and link stayed) and CHECK
    for prev in ({"ips": "x"}, {"dns": {"nameservers": "abc"}}, {"interfaces": [{"name": 1}]}):
        refused(6, "ADD", {**conf, "prevResult": prev}, netns=netns_path(other))
        refused(6, "CHECK", {**conf, "prevResult": prev}, cid=live, netns=netns_path(ns))
    # DEL of the live container with a wrong-typed "network" (once read as "name")
    for value in ([], {}, 0, False, ""):
        refused(7, "DEL", {**conf, "network": value}, cid=live, netns=netns_path(ns))
    # GC with a wrong-typed keep list (once read as "keep nothing")
    for value in ({}, "", 0, False):
        gc = {**conf, "cni.dev/valid-attachments": value}
        refused(7, "GC", gc, cid=None, ifname=None)
    # wrong types that once created attachments
    for extra in ({"name": 5}, {"type": []}, {"runtimeConfig": "x"}, {"args": [1]}):
        refused(7, "ADD", {**conf, **extra}, netns=netns_path(other))
    refused(4, "ADD", conf, netns=netns_path(other), args="IP=")
    refused(4, "ADD", conf, netns=netns_path(other), env={"CNI_PATH": ""})
    # CHECK with a non-netns path is 4, as ADD's is
    refused(4, "CHECK", conf, cid=live, netns="/etc/hostname")
    # the transport keeps bytes: these name nothing that exists
    refused(4, "ADD", conf, netns=netns_path(other) + "   ")
    refused(4, "ADD ", conf, netns=netns_path(other))
    # the live container is still whole
    assert agent_proc.cni("CHECK", conf, container_id=live, netns=netns_path(ns)).code == 0


def test_gc_with_valid_keep_list_keeps_the_live_container(
    agent_proc: AgentProcess, net: Any, make_netns: Any
) -> None:
    ns = make_netns("pw14")
    conf = netconf(net.name)
    live = unique("pw14", 12)
    assert agent_proc.cni("ADD", conf, container_id=live, netns=netns_path(ns)).code == 0
    keep = {**conf, "cni.dev/valid-attachments": [{"containerID": live, "ifname": "eth0"}]}
    assert agent_proc.cni("GC", keep, ifname=None).code == 0
    assert [p.device_id for p in agent_proc.ports(net.id)] == [live]


@pytest.mark.parametrize("raw_name", [b"pw14-caf\xc3\xa9", b"pw14-caf\xe9"], ids=["utf8", "latin1"])
def test_a_non_ascii_netns_is_found_through_both_shims(
    agent_proc: AgentProcess, net: Any, shim: Path, raw_name: bytes
) -> None:
    """Class 4: the netns path reaches the agent as the runtime's bytes."""
    name = raw_name + os.urandom(3).hex().encode()
    subprocess.run([b"ip", b"netns", b"add", name], check=True)
    try:
        path = b"/var/run/netns/" + name
        cid = unique("pw14", 12)
        env = {
            b"PATH": os.environ.get("PATH", "/usr/bin:/bin").encode(),
            b"PODWIRE_AGENT_SOCKET": str(agent_proc.socket).encode(),
            b"CNI_CONTAINERID": cid.encode(),
            b"CNI_NETNS": path,
            b"CNI_IFNAME": b"eth0",
            b"CNI_PATH": b"/opt/cni/bin",
        }
        stdin = json.dumps(netconf(net.name)).encode()
        if b"\xe9" in raw_name:
            # Carried exactly and judged: JSON (the result's "sandbox") cannot
            # name a path that is not UTF-8, so it is 4, and nothing is made.
            proc = subprocess.run(
                [str(shim)], input=stdin, env={**env, b"CNI_COMMAND": b"ADD"}, capture_output=True
            )
            answer = json.loads(proc.stdout)
            assert answer["code"] == 4 and "UTF-8" in answer["msg"], answer
            assert agent_proc.ports(net.id) == [] and agent_proc.attachments() == []
            return
        for verb in (b"ADD", b"CHECK", b"DEL"):
            proc = subprocess.run(
                [str(shim)], input=stdin, env={**env, b"CNI_COMMAND": verb}, capture_output=True
            )
            assert proc.returncode == 0, (verb, proc.stdout)
            if verb == b"ADD":
                assert json.loads(proc.stdout)["interfaces"][-1]["sandbox"] == os.fsdecode(path)
        assert agent_proc.ports(net.id) == []
    finally:
        subprocess.run([b"ip", b"netns", b"del", name], capture_output=True)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_huge_stdin_is_refused_without_being_read(
    agent_proc: AgentProcess, net: Any, make_netns: Any, shim: Path
) -> None:
    """Class 6: 40 MiB on stdin is error 7 (the shim does not send it), and
    the agent refuses such a body from its Content-Length or as it streams
    in, without reading it whole: its memory does not grow by it."""
    assert agent_proc.proc is not None
    ns = make_netns("pw14")
    before = state(agent_proc, net, ns)
    rss = _rss_kib(agent_proc.proc.pid)
    body = json.dumps({**netconf(net.name), "pad": "x" * (40 << 20)}).encode()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PODWIRE_AGENT_SOCKET": str(agent_proc.socket),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": unique("pw14", 12),
        "CNI_NETNS": netns_path(ns),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    proc = subprocess.run([str(shim)], input=body, env=env, capture_output=True, timeout=60)
    answer = json.loads(proc.stdout)
    assert answer["code"] == 7 and "bytes" in answer["msg"], answer

    head = b"POST /v1/cni HTTP/1.1\r\nHost: podwire\r\nX-CNI-Command: ADD\r\n"
    declared = head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:65536]
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"
    for request, more in ((declared, b""), (chunked, b"100000\r\n" + b"x" * 0x100000 + b"\r\n")):
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(30)
            conn.connect(str(agent_proc.socket))
            conn.sendall(request)
            with contextlib.suppress(OSError):
                for _ in range(3):  # 3 MiB in chunks, never the 0-chunk that ends it
                    conn.sendall(more)
            reply = b""
            with contextlib.suppress(OSError):
                while not reply.endswith(b"}\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        assert b"x-cni-exit: 1" in reply.lower(), reply
        assert b'"code":7' in reply, reply
    assert _rss_kib(agent_proc.proc.pid) - rss < 20 * 1024, "the agent read the body"
    assert state(agent_proc, net, ns) == before


def test_ipv6_subnet_router_anycast_is_never_handed_out(
    agent_proc: AgentProcess, make_netns: Any
) -> None:
    """Class 5: on a /126 (gateway ::1) the two free v6 addresses go, the
    all-zeros host never, then the subnet is full; asking for it is 7."""
    name = unique("pw14")
    net = agent_proc.create_network(name, "2001:db8:14ff::/126")
    got = []
    for _ in range(2):
        ns, cid = make_netns("pw14"), unique("pw14", 12)
        answer = agent_proc.cni("ADD", netconf(name), container_id=cid, netns=netns_path(ns))
        assert answer.code == 0, answer.stdout
        got += [ip["address"] for ip in answer.json["ips"]]
    assert sorted(got) == ["2001:db8:14ff::2/126", "2001:db8:14ff::3/126"]
    for hint in (None, ["2001:db8:14ff::/126"]):
        ns = make_netns("pw14")
        conf = netconf(name, **({"runtimeConfig": {"ips": hint}} if hint else {}))
        answer = agent_proc.cni("ADD", conf, container_id=unique("pw14", 12), netns=netns_path(ns))
        assert answer.error_code == 7, answer.stdout
    assert len(agent_proc.ports(net.id)) == 2
