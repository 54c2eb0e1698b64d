"""The libnetwork remote driver through the real (private) dockerd: what a
Docker user runs, and what the backend holds afterwards."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from podwire.model import FixedIpRequest, PortCreate
from tests.fixtures.common import unique
from tests.fixtures.docker import DockerEnv, DockerError, random_subnets

pytestmark = [pytest.mark.docker, pytest.mark.root]


def _port_of(env: DockerEnv, container: str, net: str) -> Any:
    """The backend port behind a container's endpoint (device_id = endpoint id)."""
    ep = env.endpoint(container, net)
    bn = env.backend_network(net)
    ports = [p for p in env.agent.ports(bn.id) if p.device_id == ep["EndpointID"]]
    assert len(ports) == 1, f"expected one port for endpoint {ep['EndpointID']}: {ports}"
    return ports[0]


def _ping(env: DockerEnv, container: str, address: str) -> None:
    done = env.exec(container, "ping", "-c", "2", "-W", "3", address, check=False)
    assert done.returncode == 0, f"{container} cannot ping {address}:\n{done.stdout}{done.stderr}"


def _bridges() -> set[str]:
    from pathlib import Path

    return {p.name for p in Path("/sys/class/net").iterdir() if (p / "bridge").exists()}


def test_dual_stack_containers_ping_and_inspect_shows_backend_port(docker_env: DockerEnv) -> None:
    v4, v6 = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4, v6)
    c1 = docker_env.run(unique("c"), net)
    c2 = docker_env.run(unique("c"), net)

    for c in (c1, c2):
        ep = docker_env.endpoint(c, net)
        port = _port_of(docker_env, c, net)
        ips = {f.ip_address for f in port.fixed_ips}
        assert ep["IPAddress"] in ips and ipaddress.ip_address(ep["IPAddress"]) in (
            ipaddress.ip_network(v4)
        )
        assert ep["GlobalIPv6Address"] in ips
        assert ipaddress.ip_address(ep["GlobalIPv6Address"]) in ipaddress.ip_network(v6)
        assert len(ips) == 2
        assert ep["MacAddress"] == port.mac_address
        assert ep["Gateway"] == str(ipaddress.ip_network(v4)[1])
        assert ep["IPv6Gateway"] == str(ipaddress.ip_network(v6)[1])
        assert port.device_owner == "podwire:docker"
        # The interface in the container is the port's: MAC and both addresses.
        shown = docker_env.exec(c, "ip", "addr", "show", "eth0").stdout
        assert port.mac_address in shown
        assert ep["IPAddress"] + "/24" in shown and ep["GlobalIPv6Address"] + "/64" in shown

    e2 = docker_env.endpoint(c2, net)
    e1 = docker_env.endpoint(c1, net)
    _ping(docker_env, c1, e2["IPAddress"])
    _ping(docker_env, c2, e1["IPAddress"])
    _ping(docker_env, c1, e2["GlobalIPv6Address"])
    _ping(docker_env, c2, e1["GlobalIPv6Address"])

    # No reservation left over: exactly one port per endpoint.
    assert len(docker_env.agent.ports(docker_env.backend_network(net).id)) == 2


def test_fixed_ip_is_honoured_and_a_used_one_refused(docker_env: DockerEnv) -> None:
    v4, _ = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4)
    wanted = str(ipaddress.ip_network(v4)[77])
    c1 = docker_env.run(unique("c"), net, "--ip", wanted)
    assert docker_env.endpoint(c1, net)["IPAddress"] == wanted
    assert [f.ip_address for f in _port_of(docker_env, c1, net).fixed_ips] == [wanted]

    with pytest.raises(DockerError, match=f"address {wanted} is in use by port"):
        docker_env.run(unique("c"), net, "--ip", wanted)
    # The refused container left nothing in the backend.
    assert len(docker_env.agent.ports(docker_env.backend_network(net).id)) == 1


def test_disconnect_rm_and_network_rm_release_everything(docker_env: DockerEnv) -> None:
    v4, v6 = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4, v6)
    backend_net = docker_env.backend_network(net)
    name = unique("c")
    docker_env.run(name, net)
    port = _port_of(docker_env, name, net)
    assert len(docker_env.agent.attachments()) >= 1

    docker_env.docker("network", "disconnect", net, name)
    assert docker_env.agent.ports(backend_net.id) == []
    assert all(a["port_id"] != port.id for a in docker_env.agent.attachments())

    docker_env.docker("network", "connect", net, name)
    again = _port_of(docker_env, name, net)
    assert again.id != port.id
    docker_env.docker("rm", "-f", name)
    assert docker_env.agent.ports(backend_net.id) == []
    assert not [a for a in docker_env.agent.attachments() if a["port_id"] == again.id]

    from podwire.kinds.veth_bridge import bridge_name

    assert bridge_name(backend_net.id) in _bridges()
    docker_env.docker("network", "rm", net)
    from podwire.errors import NotFound

    with pytest.raises(NotFound):
        docker_env.agent.backend.get_network(docker_env.agent.ctx, backend_net.id)
    assert bridge_name(backend_net.id) not in _bridges()
    # The pools are released too: the same subnets can be used again.
    docker_env.create_network(unique("pwn"), v4, v6)


def test_adopts_an_existing_backend_network_and_leaves_it(docker_env: DockerEnv) -> None:
    v4, _ = random_subnets()
    agent = docker_env.agent
    backend_name = unique("pwb")
    existing = agent.proc.create_network(backend_name, v4, mtu=1400)
    net = unique("pwn")
    docker_env.create_network(net, v4, args=("-o", f"podwire.network={backend_name}"))
    assert docker_env.backend_network(net).id == existing.id
    c = docker_env.run(unique("c"), net)
    assert _port_of(docker_env, c, net).network_id == existing.id
    # The backend network's MTU reaches the container's interface.
    assert "mtu 1400" in docker_env.exec(c, "ip", "link", "show", "eth0").stdout

    docker_env.docker("rm", "-f", c)
    docker_env.docker("network", "rm", net)
    assert agent.backend.get_network(agent.ctx, existing.id).name == backend_name
    assert agent.ports(existing.id) == []


def test_adopting_needs_a_matching_subnet(docker_env: DockerEnv) -> None:
    v4, other = random_subnets()[0], random_subnets()[0]
    backend_name = unique("pwb")
    docker_env.agent.proc.create_network(backend_name, v4)
    with pytest.raises(DockerError, match=f"has no subnet {other}"):
        docker_env.create_network(
            unique("pwn"), other, args=("-o", f"podwire.network={backend_name}")
        )


def _existing_port(env: DockerEnv, net: str, *, project: str = "default", **fields: Any) -> Any:
    bn = env.backend_network(net)
    return env.agent.backend.create_port(
        env.agent.ctx, PortCreate(network_id=bn.id, project_id=project, **fields)
    )


def _connect_with_port(env: DockerEnv, net: str, name: str, port: Any) -> None:
    """Zun's flow: a container, then `network connect` naming the port."""
    env.docker(
        "create", "--name", name, "--network", "none", "podwire-busybox:local", "sleep", "3600"
    )
    env.docker("network", "disconnect", "none", name)
    env.docker(
        "network",
        "connect",
        "--ip",
        port.fixed_ips[0].ip_address,
        "--driver-opt",
        f"podwire.port={port.id}",
        net,
        name,
    )
    env.docker("start", name)


def test_existing_port_by_id(docker_env: DockerEnv) -> None:
    v4, _ = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4)
    port = _existing_port(docker_env, net, name="zun-port")
    name = unique("c")
    _connect_with_port(docker_env, net, name, port)

    ep = docker_env.endpoint(name, net)
    assert ep["IPAddress"] == port.fixed_ips[0].ip_address
    assert ep["MacAddress"] == port.mac_address
    bound = docker_env.agent.backend.get_port(docker_env.agent.ctx, port.id)
    assert bound.device_id == ep["EndpointID"]
    peer = docker_env.run(unique("c"), net)
    _ping(docker_env, peer, ep["IPAddress"])

    docker_env.docker("rm", "-f", name)
    # The user's port survives, unbound, with its address.
    left = docker_env.agent.backend.get_port(docker_env.agent.ctx, port.id)
    assert left.device_id == "" and left.fixed_ips == port.fixed_ips


def test_existing_port_refused_when_in_use_or_foreign(docker_env: DockerEnv) -> None:
    v4, _ = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4)
    used = _existing_port(docker_env, net, device_id="some-vm")
    with pytest.raises(DockerError, match="in use"):
        _connect_with_port(docker_env, net, unique("c"), used)

    foreign = _existing_port(docker_env, net, project="other-project")
    with pytest.raises(DockerError, match="belongs to project other-project"):
        _connect_with_port(docker_env, net, unique("c"), foreign)

    # Without the option, an address held by an unused port names the way out.
    free = _existing_port(docker_env, net)
    ip = free.fixed_ips[0].ip_address
    with pytest.raises(DockerError, match=f"podwire.port={free.id}"):
        docker_env.run(unique("c"), net, "--ip", ip)

    bn = docker_env.backend_network(net)
    assert sorted(p.id for p in docker_env.agent.ports(bn.id)) == sorted(
        [used.id, foreign.id, free.id]
    )
    assert docker_env.agent.attachments() == []


def test_failed_endpoint_leaks_no_reservation(docker_env: DockerEnv) -> None:
    """IPv4 is reserved first; the IPv6 address then turns out to be another
    port's: the container fails and the IPv4 reservation is gone too."""
    v4, v6 = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4, v6)
    bn = docker_env.backend_network(net)
    subnet6 = next(
        s for s in docker_env.agent.backend.list_subnets(docker_env.agent.ctx) if s.cidr == v6
    )
    holder = docker_env.agent.backend.create_port(
        docker_env.agent.ctx,
        PortCreate(network_id=bn.id, fixed_ips=[FixedIpRequest(subnet_id=subnet6.id)]),
    )
    ip6 = holder.fixed_ips[0].ip_address
    with pytest.raises(DockerError, match=f"belongs to port {holder.id}"):
        docker_env.run(unique("c"), net, "--ip6", ip6)
    assert [p.id for p in docker_env.agent.ports(bn.id)] == [holder.id]
    assert docker_env.agent.attachments() == []


def test_network_without_subnet_is_refused_with_the_reason(docker_env: DockerEnv) -> None:
    with pytest.raises(DockerError, match="give the network a --subnet"):
        docker_env.docker(
            "network",
            "create",
            "-d",
            docker_env.driver,
            "--ipam-driver",
            docker_env.driver,
            unique("pwn"),
        )


def test_container_names_resolve_and_many_start_at_once(docker_env: DockerEnv) -> None:
    """Docker's own name resolution works on podwire networks, and parallel
    starts each get their own port."""
    import concurrent.futures

    v4, _ = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4)
    names = [unique("c") for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda n: docker_env.run(n, net), names))
    ports = docker_env.agent.ports(docker_env.backend_network(net).id)
    assert len(ports) == 6
    assert len({p.fixed_ips[0].ip_address for p in ports}) == 6
    _ping(docker_env, names[0], names[5])


def test_ip_range_and_backend_name_options(docker_env: DockerEnv) -> None:
    v4, _ = random_subnets()
    net = unique("pwn")
    backend_name = unique("pwb")
    cidr = ipaddress.ip_network(v4)
    ip_range = f"{cidr[128]}/25"
    docker_env.create_network(
        net, v4, args=("--ip-range", ip_range, "-o", f"podwire.name={backend_name}")
    )
    assert docker_env.backend_network(net).name == backend_name
    c = docker_env.run(unique("c"), net)
    assert ipaddress.ip_address(docker_env.endpoint(c, net)["IPAddress"]) in (
        ipaddress.ip_network(ip_range)
    )


def test_with_dockers_own_ipam(docker_env: DockerEnv) -> None:
    """-d podwire without --ipam-driver: Docker assigns the addresses, podwire
    makes ports holding exactly them (and deletes them with the endpoint)."""
    v4, _ = random_subnets()
    net = unique("pwn")
    docker_env.docker("network", "create", "-d", docker_env.driver, "--subnet", v4, net)
    info = docker_env.inspect("network", "inspect", net)[0]
    assert info["IPAM"]["Driver"] == "default"
    backend_net = docker_env.backend_network(net)
    c1, c2 = unique("c"), unique("c")
    docker_env.run(c1, net)
    docker_env.run(c2, net, "--ip", str(ipaddress.ip_network(v4)[50]))
    for c in (c1, c2):
        ep = docker_env.endpoint(c, net)
        port = _port_of(docker_env, c, net)
        assert [f.ip_address for f in port.fixed_ips] == [ep["IPAddress"]]
        assert ep["MacAddress"] == port.mac_address
    _ping(docker_env, c1, docker_env.endpoint(c2, net)["IPAddress"])
    docker_env.docker("rm", "-f", c1, c2)
    assert docker_env.agent.ports(backend_net.id) == []
    docker_env.docker("network", "rm", net)
