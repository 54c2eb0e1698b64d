"""Port pools on the ``remote`` backend (the openstacksdk client pointed at a
real ``podwire server``), with two agents (two hosts: two state dirs, two
host ids) on one server (docs/pools.md): a pool fills, a hit attaches a
pre-created port, the CLI's drain deletes them; a network delete removes
every host's still-pooled ports with the network (as Neutron removes its
own network:dhcp ports), a taken one keeps the network in use, and each
agent drops its pool's entries at its next sweep."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo, start_podwire_server
from tests.pools.test_pools_embedded import _add, _attached_port, _cli, _del, _pools, _wait_ready

pytestmark = pytest.mark.root

POOL_TAG = "podwire:purpose=pool"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerInfo]:
    with start_podwire_server() as info:
        yield info


def _remote_agent(
    start_agent: Any, server: ServerInfo, path: Path, host: str, network: str, sweep: float
) -> AgentProcess:
    """An agent of host ``host`` on the server, as a host's agent runs (the
    service role: it binds ports), pooling ``network``."""
    path.mkdir()
    config = path / "agent.toml"
    config.write_text(
        f'host_id = "{host}"\nbackend = "remote"\n'
        f'[remote]\nurl = "{server.url}"\ntoken = "{server.tokens["alice_service"]}"\n'
        "[pools]\nenabled = true\nmin = 2\nmax = 3\nbatch = 2\n"
        f'refill_interval = 0.1\nsweep_interval = {sweep}\nnetworks = ["{network}"]\n'
    )
    agent: AgentProcess = start_agent("--config", str(config))
    return agent


def _two_hosts(
    start_agent: Any, server: ServerInfo, tmp_path: Path, sweep: float
) -> tuple[Any, ...]:
    """Two hosts' agents pooling one new network; ``sweep``: their sweep
    interval (a drained pool of a listed network comes back at a sweep)."""
    name = unique("pwz")
    a = _remote_agent(start_agent, server, tmp_path / "a", unique("pwz-host-a"), name, sweep)
    b = _remote_agent(start_agent, server, tmp_path / "b", unique("pwz-host-b"), name, sweep)
    net = a.create_network(name, f"198.19.{int(name[-4:], 16) % 250}.0/24")
    return a, b, net


def _server_ports(server: ServerInfo, network_id: str) -> list[dict[str, Any]]:
    with server.http("admin") as api:
        resp = api.get("/ports", params={"network_id": network_id})
        resp.raise_for_status()
        return list(resp.json()["ports"])


def _pool_ports(agent: AgentProcess) -> list[dict[str, Any]]:
    return [p for pool in _pools(agent) for p in pool["ports"]]


def _wait_no_pool_ports(agent: AgentProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pool_ports(agent):
            return
        time.sleep(0.05)
    raise AssertionError(f"pool entries left: {_pools(agent)}\n{agent.log()}")


def test_remote_pool_fills_a_hit_attaches_a_pooled_port_drain_deletes_them(
    start_agent: Any, make_netns: Any, server: ServerInfo, tmp_path: Path
) -> None:
    a, b, net = _two_hosts(start_agent, server, tmp_path, sweep=300)
    ready_a = _wait_ready(a, 2)
    ready_b = _wait_ready(b, 2)
    # Each host's ports are its own: marked and bound to it, in the server.
    on_server = {p["id"]: p for p in _server_ports(server, net.id)}
    assert ready_a | ready_b <= set(on_server)
    for agent, ready in ((a, ready_a), (b, ready_b)):
        for port_id in ready:
            port = on_server[port_id]
            assert POOL_TAG in port["tags"] and port["device_owner"] == "podwire:pool"
            assert port["binding:host_id"] == agent.config.host_id and port["device_id"] == ""

    # A's pooled ports deleted behind its back (in the server): the take
    # never hands one out; it drops them, and the ADD still succeeds.
    with server.http("admin") as api:
        for port_id in ready_a:
            assert api.delete(f"/ports/{port_id}").status_code == 204
    ns, cid = make_netns("pwz"), unique("pwz", 12)
    added = _add(a, net, ns, cid)
    assert added.code == 0, added.stdout
    own = _attached_port(a, cid)
    assert own not in ready_a and own in {p["id"] for p in _server_ports(server, net.id)}
    assert not ready_a & {p["port_id"] for p in _pool_ports(a)}
    assert _del(a, net, ns, cid).code == 0

    # A hit: the ADD attaches one of host A's pre-created ports (refilled
    # after the miss) and claims it: device_id is the container's.
    ready_a = _wait_ready(a, 2)
    added = _add(a, net, ns, cid)
    assert added.code == 0, added.stdout
    taken = _attached_port(a, cid)
    assert taken in ready_a
    port = a.backend.get_port(a.ctx, taken)
    assert port.device_id == cid and port.binding.host_id == a.config.host_id
    assert POOL_TAG in port.tags and port.device_owner == "podwire:pool"
    ip = added.json["ips"][0]["address"].split("/")[0]
    assert ip in {f.ip_address for f in port.fixed_ips}

    # Drain (A's CLI): A's ready ports go, the one in use at its DEL; B's stay.
    drained = json.loads(_cli(a, "--json", "pool", "drain", "--network", net.name))["deleted"]
    assert len(drained) >= 1 and taken not in drained
    left = {p["id"] for p in _server_ports(server, net.id)}
    assert not left & set(drained) and taken in left and ready_b <= left
    assert _del(a, net, ns, cid).code == 0
    left = {p["id"] for p in _server_ports(server, net.id)}
    assert taken not in left
    assert {p["binding:host_id"] for p in _server_ports(server, net.id)} <= {b.config.host_id}


def test_network_delete_removes_every_hosts_pooled_ports_not_a_taken_one(
    start_agent: Any, make_netns: Any, server: ServerInfo, tmp_path: Path
) -> None:
    a, b, net = _two_hosts(start_agent, server, tmp_path, sweep=0.5)
    _wait_ready(a, 2)
    _wait_ready(b, 2)

    # A port B's ADD took (device_id set) holds the network, through the
    # server's own API and through A's agent (which drains A's pool first).
    ns, cid = make_netns("pwz"), unique("pwz", 12)
    assert _add(b, net, ns, cid).code == 0
    taken = _attached_port(b, cid)
    assert b.backend.get_port(b.ctx, taken).device_id == cid
    with server.http("alice") as api:
        refused = api.delete(f"/networks/{net.id}")
    assert refused.status_code == 409, refused.text
    assert "still has 1 port(s)" in refused.json()["NeutronError"]["message"]
    transport = httpx.HTTPTransport(uds=str(a.socket))
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as local:
        assert local.delete(f"/v2.0/networks/{net.id}").status_code == 409
    assert taken in {p["id"] for p in _server_ports(server, net.id)}

    # B's DEL gives the port back: every port left is pooled, none holds the
    # network; the delete through A's agent removes both hosts' ports.
    assert _del(b, net, ns, cid).code == 0
    _wait_ready(b, 2)
    assert not [p for p in _pool_ports(b) if p["state"] in ("taken", "draining")]
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as local:
        deleted = local.delete(f"/v2.0/networks/{net.id}")
    assert deleted.status_code == 204, deleted.text
    assert _server_ports(server, net.id) == []
    with server.http("admin") as api:
        assert api.get(f"/networks/{net.id}").status_code == 404

    # Each agent finds its entries' ports gone at its next sweep.
    _wait_no_pool_ports(a)
    _wait_no_pool_ports(b)
    for agent in (a, b):
        status = agent.get("/v1/status")["pools"]
        assert not any(status.get(s) for s in ("ready", "taken", "creating")), status
