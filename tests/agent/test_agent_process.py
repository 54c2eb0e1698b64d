"""The agent as a process: its socket, restarts, crashes, concurrency and
back-pressure, all through the real shim in real network namespaces."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root


def _net(agent: AgentProcess) -> Any:
    name = unique("pwa")
    return agent.create_network(name, f"198.19.{int(name[-4:], 16) % 250}.0/24")


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _add(agent: AgentProcess, net: Any, ns: str, cid: str) -> Any:
    return agent.cni("ADD", netconf(net.name), container_id=cid, netns=netns_path(ns))


class _BackendWriteLock:
    """Holds the embedded backend's SQLite write lock: the agent's next port
    create then waits (its busy timeout), a real slow request."""

    def __init__(self, agent: AgentProcess) -> None:
        self.conn = sqlite3.connect(agent.state_dir / "podwire.db", isolation_level=None)

    def __enter__(self) -> _BackendWriteLock:
        self.conn.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_socket_mode_stale_replaced_and_removed_on_sigterm(start_agent: Any) -> None:
    agent: AgentProcess = start_agent()
    mode = agent.socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert agent.stop() == 0
    assert not agent.socket.exists()

    # A stale socket file (its agent died without cleaning up) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(agent.socket))
    stale.close()
    agent.start()
    assert agent.get("/v1/status")["backend_ok"] is True
    # A live one is not: a second agent on the same socket refuses to start,
    # and so does one on the same state dir.
    for state_dir in (agent.state_dir.with_name("other"), agent.state_dir):
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "podwire.daemon",
                *("--state-dir", str(state_dir), "--socket", str(agent.socket)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "already" in second.stderr
    assert agent.get("/v1/status")["ready"] is True
    # SIGINT stops it as cleanly as SIGTERM.
    assert agent.stop(signal.SIGINT) == 0
    assert not agent.socket.exists()


def test_restart_keeps_records_and_del_still_works(
    agent_proc: AgentProcess, make_netns: Any
) -> None:
    net = _net(agent_proc)
    ns = make_netns()
    cid = unique("pwa", 12)
    added = _add(agent_proc, net, ns, cid)
    assert added.code == 0, added.stdout
    host_end = added.json["interfaces"][0]["name"]
    before = agent_proc.attachments()

    agent_proc.restart()
    assert agent_proc.attachments() == before
    # Plugged: ACTIVE, bound to this host with its data path's VIF type.
    assert [(p.device_id, p.status, p.binding.vif_type) for p in agent_proc.ports(net.id)] == [
        (cid, "ACTIVE", "veth_bridge")
    ]  # and not reconciled away
    check = agent_proc.cni(
        "CHECK", netconf(net.name, prevResult=added.json), container_id=cid, netns=netns_path(ns)
    )
    assert check.code == 0, check.stdout
    assert (
        agent_proc.cni("DEL", netconf(net.name), container_id=cid, netns=netns_path(ns)).code == 0
    )
    assert agent_proc.ports(net.id) == []
    # The agent deletes veth pairs in the background (async_delete, see
    # docs/perf.md): down at once, gone moments later.
    _wait_for(lambda: not _link_exists(host_end), timeout=5)


def test_kill_9_mid_add_is_rolled_back_on_restart(start_agent: Any, make_netns: Any) -> None:
    """Killed after the port was made and before the record said so (the
    step's intent only): the restart finds the port by its tags and deletes it."""
    import json

    plan = [{"point": "step.port.create:after", "action": "crash"}]
    agent_proc: AgentProcess = start_agent(env={"PODWIRE_FAULTS": json.dumps(plan)})
    net = _net(agent_proc)
    ns = make_netns()
    cid = unique("pwa", 12)
    assert _add(agent_proc, net, ns, cid).code != 0
    assert agent_proc.proc is not None and agent_proc.proc.wait(10) == -signal.SIGKILL
    assert [p.device_id for p in agent_proc.ports(net.id)] == [cid]  # made, unrecorded
    agent_proc.env["PODWIRE_FAULTS"] = "[]"  # nothing fires now
    agent_proc.start()
    assert agent_proc.attachments() == []
    assert agent_proc.ports(net.id) == []
    assert (
        "eth0"
        not in subprocess.run(
            ["ip", "netns", "exec", ns, "ip", "link"], capture_output=True, text=True
        ).stdout
    )


@pytest.mark.parametrize("state", ["pending", "detaching"])
def test_crash_after_plug_is_rolled_back(
    agent_proc: AgentProcess, make_netns: Any, state: str
) -> None:
    """A record left "pending" after the plug (the crash window between plug
    and "ready") or "detaching" (a DEL cut short): the restart unplugs,
    deletes the port and the record."""
    net = _net(agent_proc)
    ns = make_netns()
    cid = unique("pwa", 12)
    added = _add(agent_proc, net, ns, cid)
    assert added.code == 0
    host_end = added.json["interfaces"][0]["name"]
    agent_proc.kill()
    db = sqlite3.connect(agent_proc.state_dir / "agent.db")
    with db:
        db.execute("UPDATE attachments SET state = ? WHERE container_id = ?", (state, cid))
    db.close()
    agent_proc.start()
    assert agent_proc.attachments() == []
    assert agent_proc.ports(net.id) == []
    assert not _link_exists(host_end)


def test_orphan_ports_of_this_host_only_are_deleted_on_start(agent_proc: AgentProcess) -> None:
    from podwire.model import PortBinding, PortCreate

    net = _net(agent_proc)
    host = agent_proc.config.host_id

    def port(owner: str, host_id: str) -> Any:
        return agent_proc.backend.create_port(
            agent_proc.ctx,
            PortCreate(
                network_id=net.id,
                device_id=unique("pwa", 12),
                device_owner=owner,
                binding=PortBinding(host_id=host_id),
            ),
        )

    orphan = port("podwire:cni", host)
    other_host = port("podwire:cni", "pwa-elsewhere")
    not_ours = port("compute:nova", host)
    agent_proc.restart()
    left = {p.id for p in agent_proc.ports(net.id)}
    assert orphan.id not in left
    assert {other_host.id, not_ours.id} <= left


def test_concurrent_adds_for_different_containers(
    agent_proc: AgentProcess, make_netns: Any
) -> None:
    net = _net(agent_proc)
    jobs = [(make_netns(), unique("pwa", 12)) for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: _add(agent_proc, net, *j), jobs))
    assert [a.code for a in answers] == [0] * 8, [a.stdout for a in answers]
    ports = agent_proc.ports(net.id)
    assert sorted(p.device_id for p in ports) == sorted(cid for _, cid in jobs)
    addresses = [f.ip_address for p in ports for f in p.fixed_ips]
    assert len(set(addresses)) == 8

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        dels = list(
            pool.map(
                lambda j: agent_proc.cni(
                    "DEL", netconf(net.name), container_id=j[1], netns=netns_path(j[0])
                ),
                jobs,
            )
        )
    assert [d.code for d in dels] == [0] * 8
    assert agent_proc.ports(net.id) == []


def test_busy_agent_answers_try_again_later(start_agent: Any, make_netns: Any) -> None:
    agent: AgentProcess = start_agent("--max-in-flight", "1", "--max-queued", "0")
    net = _net(agent)
    ns1, ns2 = make_netns(), make_netns()
    c1, c2 = unique("pwa", 12), unique("pwa", 12)
    results: dict[str, Any] = {}
    with _BackendWriteLock(agent):
        slow = threading.Thread(target=lambda: results.update(first=_add(agent, net, ns1, c1)))
        slow.start()
        # The first ADD is admitted and waits for the backend.
        _wait_for(lambda: agent.get("/v1/status")["in_flight"] >= 1)
        busy = _add(agent, net, ns2, c2)
    slow.join(60)
    assert busy.error_code == 11, busy.stdout
    assert "busy" in busy.json["msg"]
    assert results["first"].code == 0, results["first"].stdout
    assert [p.device_id for p in agent.ports(net.id)] == [c1]
    # Idle again, a GC (admitted once, not twice) runs within the same limit.
    gc = agent.cni("GC", netconf(net.name, **{"cni.dev/valid-attachments": []}), container_id=None)
    assert gc.code == 0, gc.stdout
    assert agent.ports(net.id) == []


def test_agent_status_and_attachments_api(agent_proc: AgentProcess) -> None:
    status = agent_proc.get("/v1/status")
    assert status["ready"] is True and status["backend"] == "embedded"
    assert any(d["name"] and d["available"] for d in status["drivers"]) or status["drivers"] == []
    assert agent_proc.get("/v1/attachments") == {"attachments": []}
    assert os.stat(agent_proc.socket).st_uid == os.geteuid()


def test_neutron_api_on_the_agent_socket(agent_proc: AgentProcess) -> None:
    """The /v2.0 API is served on the agent's socket with admin rights."""
    net = _net(agent_proc)
    listed = agent_proc.get("/v2.0/networks")["networks"]
    assert net.id in {n["id"] for n in listed}
    assert agent_proc.get(f"/v2.0/networks/{net.id}")["network"]["name"] == net.name


def test_add_never_uses_a_deleted_network_of_the_same_name(
    agent_proc: AgentProcess, make_netns: Any
) -> None:
    """The agent caches network lookups for ADD: a network deleted and created
    again under the same name is the new one at once, and a new subnet's
    address gets its gateway route."""
    name = unique("pwa")
    old = agent_proc.create_network(name, "198.19.250.0/24")
    ns = make_netns()
    cid = unique("pwa", 12)
    assert agent_proc.cni("ADD", netconf(name), container_id=cid, netns=netns_path(ns)).code == 0
    assert agent_proc.cni("DEL", netconf(name), container_id=cid, netns=netns_path(ns)).code == 0
    agent_proc.delete_network(old.id)
    new = agent_proc.create_network(name, "198.19.251.0/24")
    try:
        added = agent_proc.cni("ADD", netconf(name), container_id=cid, netns=netns_path(ns))
        assert added.code == 0, added.stdout
        assert [ip["address"] for ip in added.json["ips"]] == ["198.19.251.2/24"]
        assert [p.device_id for p in agent_proc.ports(new.id)] == [cid]
        assert (
            agent_proc.cni("DEL", netconf(name), container_id=cid, netns=netns_path(ns)).code == 0
        )
        # A subnet added after the lookup was cached: the port has an address
        # on it, and the VIF its prefix and gateway.
        from podwire.model import SubnetCreate

        agent_proc.backend.create_subnet(
            agent_proc.ctx, SubnetCreate(network_id=new.id, cidr="2001:db8:77::/64")
        )
        added = agent_proc.cni("ADD", netconf(name), container_id=cid, netns=netns_path(ns))
        assert added.code == 0, added.stdout
        v6 = [ip["address"] for ip in added.json["ips"] if ":" in ip["address"]]
        assert len(v6) == 1 and v6[0].startswith("2001:db8:77:") and v6[0].endswith("/64"), v6
        assert any(r.get("gw") == "2001:db8:77::1" for r in added.json.get("routes", []))
        assert (
            agent_proc.cni("DEL", netconf(name), container_id=cid, netns=netns_path(ns)).code == 0
        )
    finally:
        agent_proc.delete_network(new.id)


def test_bridge_removed_when_idle_and_when_its_network_is_deleted(
    start_agent: Any, make_netns: Any, tmp_path: Any
) -> None:
    import httpx

    from podwire.kinds.veth_bridge import bridge_name

    config = tmp_path / "agent.toml"
    config.write_text("[agent]\nbridge_idle_seconds = 0.2\n")
    agent: AgentProcess = start_agent("--config", str(config))
    net = _net(agent)
    bridge = bridge_name(net.id)
    ns1, ns2 = make_netns(), make_netns()
    c1, c2 = unique("pwa", 12), unique("pwa", 12)
    assert _add(agent, net, ns1, c1).code == 0
    assert _add(agent, net, ns2, c2).code == 0
    assert _link_exists(bridge)
    # Not while another attachment of this host is on the network.
    assert agent.cni("DEL", netconf(net.name), container_id=c1, netns=netns_path(ns1)).code == 0
    time.sleep(0.6)
    assert _link_exists(bridge)
    # Its last DEL: gone once idle; the next ADD makes it again, and works.
    assert agent.cni("DEL", netconf(net.name), container_id=c2, netns=netns_path(ns2)).code == 0
    _wait_for(lambda: not _link_exists(bridge), timeout=10)
    added = _add(agent, net, ns1, c1)
    assert added.code == 0, added.stdout
    assert _link_exists(bridge)
    assert agent.cni("DEL", netconf(net.name), container_id=c1, netns=netns_path(ns1)).code == 0

    # A network deleted through the agent's /v2.0 API loses its bridge at
    # once (this agent's idle timer is the default 30 s, so it is not that).
    agent = start_agent()
    other = _net(agent)
    assert _add(agent, other, ns2, c2).code == 0
    assert agent.cni("DEL", netconf(other.name), container_id=c2, netns=netns_path(ns2)).code == 0
    time.sleep(0.3)
    assert _link_exists(bridge_name(other.id))
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as client:
        for subnet in agent.backend.list_subnets(agent.ctx, {"network_id": [other.id]}):
            assert client.delete(f"/v2.0/subnets/{subnet.id}").status_code == 204
        assert client.delete(f"/v2.0/networks/{other.id}").status_code == 204
    assert not _link_exists(bridge_name(other.id))


def test_pairs_left_down_by_a_crash_are_swept_on_start(agent_proc: AgentProcess) -> None:
    """DEL takes a pair down and lets a worker delete it; an agent killed
    before the worker ran leaves the pair down. The next start deletes every
    such pair, and leaves up ones (another agent's plug in progress) alone."""
    from podwire.kinds.veth_bridge import HOST_VETH_PREFIX

    retired = HOST_VETH_PREFIX + uuid.uuid4().hex[:12]
    in_progress = HOST_VETH_PREFIX + uuid.uuid4().hex[:12]
    try:
        for name in (retired, in_progress):
            subprocess.run(
                # The peer stands for the container end: not a host end's name.
                ["ip", "link", "add", name, "type", "veth", "peer", "name", "pwt" + name[3:]],
                check=True,
            )
        subprocess.run(["ip", "link", "set", in_progress, "up"], check=True)
        agent_proc.kill()
        agent_proc.start()
        assert not _link_exists(retired)
        assert _link_exists(in_progress)
    finally:
        for name in (retired, in_progress):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0
