"""Port pools on the embedded backend, through a real agent process, the
real shim and real network namespaces (docs/pools.md): a hit creates no
port, DEL resets and returns it, restarts and kill -9 (refill, ADD) leave
no port that is neither pooled nor attached, drain and network delete
empty the pools."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root

POOL_TAG = "podwire:purpose=pool"


def _config(path: Path, networks: list[str], **extra: Any) -> Path:
    fields = {
        "enabled": "true",
        "min": 2,
        "max": 4,
        "batch": 2,
        "refill_interval": 0.1,
        "networks": json.dumps(networks),
        **extra,
    }
    path.write_text("[pools]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()))
    return path


def _pooled_agent(
    start_agent: Any,
    tmp_path: Path,
    networks: int = 1,
    env: dict[str, str] | None = None,
    **extra: Any,
) -> tuple[AgentProcess, list[Any]]:
    """An agent whose pools fill new networks (created once it runs: the
    pools look configured networks up again at every refill round)."""
    names = [unique("pwp") for _ in range(networks)]
    config = _config(tmp_path / "agent.toml", names, **extra)
    agent: AgentProcess = start_agent("--config", str(config), env=env)
    nets = [_network(agent, name) for name in names]
    return agent, nets


def _network(agent: AgentProcess, name: str) -> Any:
    return agent.create_network(name, f"198.19.{int(name[-4:], 16) % 250}.0/24")


def _pools(agent: AgentProcess) -> list[dict[str, Any]]:
    return list(agent.get("/v1/pools")["pools"])


def _ready(agent: AgentProcess) -> set[str]:
    return {p["port_id"] for pool in _pools(agent) for p in pool["ports"] if p["state"] == "ready"}


def _wait_ready(agent: AgentProcess, count: int, timeout: float = 20.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = _ready(agent)
        if len(ready) >= count:
            return ready
        time.sleep(0.05)
    raise AssertionError(f"pool did not reach {count} ready: {_pools(agent)}\n{agent.log()}")


def _add(agent: AgentProcess, net: Any, ns: str, cid: str) -> Any:
    return agent.cni("ADD", netconf(net.name), container_id=cid, netns=netns_path(ns))


def _del(agent: AgentProcess, net: Any, ns: str, cid: str) -> Any:
    return agent.cni("DEL", netconf(net.name), container_id=cid, netns=netns_path(ns))


def _attached_port(agent: AgentProcess, cid: str) -> str:
    (record,) = [r for r in agent.attachments() if r["container_id"] == cid]
    return str(record["port_id"])


def _no_stray_ports(agent: AgentProcess, net: Any) -> None:
    """Every port of the network is pooled (in the store) or attached."""
    pooled = {p["port_id"] for pool in _pools(agent) for p in pool["ports"]}
    attached = {r["port_id"] for r in agent.attachments()}
    stray = [p.id for p in agent.ports(net.id) if p.id not in pooled | attached]
    assert stray == [], f"neither pooled nor attached: {stray}"


def _wait_dead(agent: AgentProcess, timeout: float = 20.0) -> None:
    assert agent.proc is not None
    assert agent.proc.wait(timeout) == -signal.SIGKILL
    agent.proc = None


def test_hit_creates_no_port_del_resets_it_drain_and_network_delete(
    start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    agent, (net, other) = _pooled_agent(start_agent, tmp_path, networks=2)
    _wait_ready(agent, 4)
    assert agent.get("/v1/status")["pools"]["ready"] >= 4
    before = {p.id for p in agent.ports(net.id)}
    assert len(before) == 2 and before <= _ready(agent)  # the pool's ports only
    for port in agent.ports(net.id):
        assert POOL_TAG in port.tags and port.device_owner == "podwire:pool"
        assert port.binding.host_id == agent.config.host_id

    # A hit: the ADD's port is a pre-created one; what was made since is the
    # refill's (pool-marked, ready), not the ADD's.
    ns, cid = make_netns("pwp"), unique("pwp", 12)
    added = _add(agent, net, ns, cid)
    assert added.code == 0, added.stdout
    taken = _attached_port(agent, cid)
    assert taken in before
    for port in agent.ports(net.id):
        assert port.id in before or (POOL_TAG in port.tags and port.id in _ready(agent))
    ip = added.json["ips"][0]["address"].split("/")[0]
    assert ip in {f.ip_address for f in agent.backend.get_port(agent.ctx, taken).fixed_ips}
    _no_stray_ports(agent, net)
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as client:
        assert "podwire_port_pool_ports{" in client.get("/metrics").text

    # Changed while in use: DEL puts the pool's name, device and pairs back.
    from podwire.model import AllowedAddressPair, PortUpdate

    agent.backend.update_port(
        agent.ctx,
        taken,
        PortUpdate(
            name="pwp-renamed",
            device_id="pwp-someone",
            allowed_address_pairs=[AllowedAddressPair(ip_address="198.19.251.9")],
        ),
    )
    assert _del(agent, net, ns, cid).code == 0
    port = agent.backend.get_port(agent.ctx, taken)
    assert port.name.startswith("podwire-pool-") and port.device_owner == "podwire:pool"
    assert (port.device_id, port.allowed_address_pairs, port.status) == ("", [], "DOWN")
    assert taken in _ready(agent)
    _no_stray_ports(agent, net)

    # Drain (the CLI, through the agent): every ready port goes, the one in
    # use stays until its DEL, which then deletes it.
    assert _add(agent, net, ns, cid).code == 0
    in_use = _attached_port(agent, cid)
    drained = _cli(agent, "--json", "pool", "drain", "--network", net.name)
    assert len(json.loads(drained)["deleted"]) >= 2
    assert {p.id for p in agent.ports(net.id)} == {in_use}
    assert "draining" in _cli(agent, "pool", "list").lower()
    assert _del(agent, net, ns, cid).code == 0
    assert agent.ports(net.id) == []

    # A network deleted through the agent's API: its pool first.
    assert len(agent.ports(other.id)) >= 2
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as client:
        assert client.delete(f"/v2.0/networks/{other.id}").status_code == 204
    assert agent.ports(other.id) == []
    assert all(not pool["ports"] for pool in _pools(agent))


def _cli(agent: AgentProcess, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "podwire.cli", "--agent-socket", str(agent.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_restart_keeps_the_pool_failed_and_killed_adds_give_ports_back(
    start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    agent, (net,) = _pooled_agent(start_agent, tmp_path)
    ready = _wait_ready(agent, 2)
    agent.restart()
    assert _ready(agent) == ready  # the same ports, nothing recreated
    assert {p.id for p in agent.ports(net.id)} == ready

    # ADD 1 fails after the take (the step's undo gives the port back);
    # ADD 2 is killed there (recorded: the start-up roll-back gives it back).
    plug = "step.plug:before"
    plan = [{"point": plug, "action": "fail"}, {"point": plug, "action": "crash", "nth": 2}]
    agent.env["PODWIRE_FAULTS"] = json.dumps(plan)
    agent.restart()
    ns, cid = make_netns("pwp"), unique("pwp", 12)
    assert _add(agent, net, ns, cid).code != 0
    assert agent.attachments() == []
    assert ready <= _ready(agent)  # back (the take also started a refill)
    _no_stray_ports(agent, net)
    assert _add(agent, net, ns, cid).code != 0
    _wait_dead(agent)

    # Killed between the take and the ADD recording it: the start-up sweep
    # finds the taken port no attachment names.
    agent.env["PODWIRE_FAULTS"] = json.dumps([{"point": "step.pool.take:after", "action": "crash"}])
    agent.start()
    assert agent.attachments() == []
    assert ready <= _ready(agent)
    _no_stray_ports(agent, net)
    assert _add(agent, net, ns, cid).code != 0
    _wait_dead(agent)

    agent.env["PODWIRE_FAULTS"] = "[]"
    agent.start()
    assert agent.attachments() == []
    assert ready <= _ready(agent)
    _no_stray_ports(agent, net)
    for port in agent.ports(net.id):
        assert port.device_id == ""
    pooled = _ready(agent)
    assert _add(agent, net, ns, cid).code == 0  # and usable: a hit
    assert _attached_port(agent, cid) in pooled


def test_kill_9_during_refill_leaves_no_stray_port(
    start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    # The second create dies once the backend made the port, the first one
    # possibly still answering: both are found by their marks.
    plan = [{"point": "step.pool.create:after", "action": "crash", "nth": 2}]
    agent, (net,) = _pooled_agent(start_agent, tmp_path, env={"PODWIRE_FAULTS": json.dumps(plan)})
    _wait_dead(agent)
    made = {p.id for p in agent.ports(net.id)}
    assert 1 <= len(made) <= 2
    agent.env["PODWIRE_FAULTS"] = "[]"
    agent.start()
    ready = _wait_ready(agent, 2)
    assert made <= ready  # finished from the record and the mark, not leaked
    _no_stray_ports(agent, net)

    # Pooled ports deleted behind the agent's back: an ADD never gets one.
    for port_id in ready:
        agent.backend.delete_port(agent.ctx, port_id)
    ns, cid = make_netns("pwp"), unique("pwp", 12)
    assert _add(agent, net, ns, cid).code == 0
    attached = _attached_port(agent, cid)
    assert attached not in ready
    assert agent.backend.get_port(agent.ctx, attached).device_id in ("", cid)
    assert not ready & _ready(agent)


def test_generation_bump_drains_and_sweep_deletes_unheld_marked_ports(
    start_agent: Any, tmp_path: Path
) -> None:
    from podwire.model import PortBinding, PortCreate

    agent, (net,) = _pooled_agent(start_agent, tmp_path)
    old = _wait_ready(agent, 2)
    host = agent.config.host_id
    # A port marked as this host's pool that the store does not hold (a lost
    # store): the sweep deletes it, whatever its status.
    leaked = agent.backend.create_port(
        agent.ctx,
        PortCreate(
            network_id=net.id,
            device_owner="podwire:pool",
            binding=PortBinding(host_id=host),
            tags=[f"podwire:host={host}", POOL_TAG, "podwire:pool=pwpgone"],
        ),
    )
    untagged = agent.backend.create_port(
        agent.ctx,
        PortCreate(
            network_id=net.id, device_owner="podwire:pool", binding=PortBinding(host_id=host)
        ),
    )
    other_host = agent.backend.create_port(
        agent.ctx,
        PortCreate(
            network_id=net.id, tags=["podwire:host=pwp-elsewhere", POOL_TAG], device_owner="x"
        ),
    )
    config = tmp_path / "agent.toml"
    config.write_text(config.read_text() + "generation = 2\n")
    agent.restart()
    new = _wait_ready(agent, 2)
    assert not new & old
    left = {p.id for p in agent.ports(net.id)}
    assert leaked.id not in left and untagged.id not in left and not old & left
    assert left == new | {other_host.id}  # another host's pool is its own business
    for port in agent.ports(net.id):
        if port.id in new:
            assert "podwire:generation=2" in port.tags
    agent.backend.delete_port(agent.ctx, other_host.id)

    # Pools turned off: the restart empties what they held.
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    agent.restart()
    assert agent.ports(net.id) == []
    assert agent.get("/v1/pools")["pools"] == []
