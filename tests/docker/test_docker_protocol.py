"""The plugin socket spoken to directly, as dockerd would (and as it never
should): handshake, unknown paths, malformed and impossible requests. Every
failure is {"Err": ...} naming the cause, and leaves nothing behind."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.docker import DockerAgent, random_subnets

pytestmark = [pytest.mark.docker, pytest.mark.root]


@pytest.fixture
def plugin(docker_agent: DockerAgent) -> Iterator[httpx.Client]:
    if docker_agent.proc is None or docker_agent.proc.proc is None:
        docker_agent.start()
    transport = httpx.HTTPTransport(uds=str(docker_agent.plugin_socket))
    with httpx.Client(transport=transport, base_url="http://plugin", timeout=30) as client:
        yield client


def call(client: httpx.Client, method: str, body: Any = None, raw: bytes | None = None) -> Any:
    content = raw if raw is not None else httpx.Request("POST", "/", json=body).content
    return client.post(
        f"/{method}",
        content=content,
        headers={"Content-Type": "application/vnd.docker.plugins.v1.2+json"},
    )


def test_handshake_and_capabilities(plugin: httpx.Client) -> None:
    answer = call(plugin, "Plugin.Activate", raw=b"")
    assert answer.status_code == 200
    assert answer.json() == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert call(plugin, "NetworkDriver.GetCapabilities", raw=b"null").json()["Scope"] == "local"
    assert call(plugin, "IpamDriver.GetCapabilities").json()["RequiresMACAddress"] is False
    spaces = call(plugin, "IpamDriver.GetDefaultAddressSpaces").json()
    assert spaces["LocalDefaultAddressSpace"] and spaces["GlobalDefaultAddressSpace"]
    for method in ("NetworkDriver.DiscoverNew", "NetworkDriver.DiscoverDelete"):
        assert call(plugin, method, {"DiscoveryType": 1, "DiscoveryData": {}}).json() == {}


def test_unknown_paths_are_404(plugin: httpx.Client) -> None:
    assert call(plugin, "NetworkDriver.NoSuchThing", {}).status_code == 404
    assert call(plugin, "VolumeDriver.Create", {}).status_code == 404
    assert call(plugin, "", {}).status_code == 404


@pytest.mark.parametrize(
    ("method", "raw", "expected"),
    [
        ("NetworkDriver.CreateEndpoint", b"{not json", "not JSON"),
        ("NetworkDriver.CreateEndpoint", b"[1, 2]", "must be a JSON object"),
        ("NetworkDriver.CreateEndpoint", b'{"NetworkID": "n1"}', "EndpointID"),
        ("NetworkDriver.Join", b'{"NetworkID": "", "EndpointID": "e"}', "NetworkID"),
        ("NetworkDriver.CreateNetwork", b'{"NetworkID": 7}', "NetworkID"),
        ("IpamDriver.RequestAddress", b'{"Address": "198.18.0.1"}', "PoolID"),
        ("IpamDriver.ReleaseAddress", b'{"PoolID": "p"}', "Address"),
    ],
)
def test_malformed_requests_get_400_and_err(
    plugin: httpx.Client, method: str, raw: bytes, expected: str
) -> None:
    answer = call(plugin, method, raw=raw)
    assert answer.status_code == 400
    assert expected in answer.json()["Err"]
    assert answer.json()["Err"].startswith(method)


def test_impossible_requests_get_err_naming_the_cause(
    plugin: httpx.Client, docker_agent: DockerAgent
) -> None:
    def err(method: str, body: dict[str, Any]) -> str:
        answer = call(plugin, method, body)
        assert answer.status_code == 200, answer.text
        text: str = answer.json()["Err"]
        return text

    assert "not a podwire network" in err(
        "NetworkDriver.CreateEndpoint",
        {"NetworkID": "n-unknown", "EndpointID": "e1", "Interface": {"Address": "198.18.0.9/24"}},
    )
    assert "endpoint e-unknown is not known" in err(
        "NetworkDriver.Join", {"NetworkID": "n", "EndpointID": "e-unknown", "SandboxKey": "/x"}
    )
    assert "pool 'nope' is not known" in err(
        "IpamDriver.RequestAddress", {"PoolID": "nope", "Address": ""}
    )
    assert "--subnet" in err("IpamDriver.RequestPool", {"AddressSpace": "", "Pool": "", "V6": True})
    assert "not a CIDR" in err("IpamDriver.RequestPool", {"Pool": "198.18.0.1/24"})
    assert "network 'no-such-backend-net' not found" in err(
        "NetworkDriver.CreateNetwork",
        {
            "NetworkID": "n-adopt-missing",
            "IPv4Data": [{"AddressSpace": "", "Pool": "198.18.250.0/24"}],
            "Options": {"com.docker.network.generic": {"podwire.network": "no-such-backend-net"}},
        },
    )
    # IPAM failures carry the key libnetwork's IPAM client reads, too.
    answer = call(plugin, "IpamDriver.ReleasePool", {"PoolID": ""}).json()
    assert answer["Err"] == answer["Error"]

    # DEL of unknown things is success (idempotent).
    for method in ("NetworkDriver.DeleteEndpoint", "NetworkDriver.Leave"):
        assert call(plugin, method, {"NetworkID": "n", "EndpointID": "e-unknown"}).json() == {}
    assert call(plugin, "NetworkDriver.DeleteNetwork", {"NetworkID": "n-unknown"}).json() == {}
    assert call(plugin, "IpamDriver.ReleasePool", {"PoolID": "p-unknown"}).json() == {}
    assert docker_agent.attachments() == []


def test_ipam_pool_lifecycle_and_overlap(plugin: httpx.Client, docker_agent: DockerAgent) -> None:
    v4, _ = random_subnets()
    first = call(plugin, "IpamDriver.RequestPool", {"Pool": v4}).json()
    assert first["Pool"] == v4
    # The same request again: the same pool (reference counted).
    assert call(plugin, "IpamDriver.RequestPool", {"Pool": v4}).json()["PoolID"] == first["PoolID"]
    inner = v4.replace(".0/24", ".0/25")
    overlap = call(plugin, "IpamDriver.RequestPool", {"Pool": inner}).json()
    assert "overlaps" in overlap["Err"]
    gw = call(
        plugin,
        "IpamDriver.RequestAddress",
        {
            "PoolID": first["PoolID"],
            "Options": {"RequestAddressType": "com.docker.network.gateway"},
        },
    ).json()
    assert gw["Address"] == v4.replace(".0/24", ".1/24")
    outside = call(
        plugin, "IpamDriver.RequestAddress", {"PoolID": first["PoolID"], "Address": "198.18.9.9"}
    )
    assert "outside pool" in outside.json()["Error"]
    for _ in range(2):
        assert call(plugin, "IpamDriver.ReleasePool", {"PoolID": first["PoolID"]}).json() == {}
    # Released twice = gone: the overlapping pool is allowed now.
    again = call(plugin, "IpamDriver.RequestPool", {"Pool": inner}).json()
    assert again["Pool"] == inner
    call(plugin, "IpamDriver.ReleasePool", {"PoolID": again["PoolID"]})


def test_gateway_follows_the_shared_ipam_rules(plugin: httpx.Client) -> None:
    """The gateway Docker gets unasked is the backends' default gateway (the
    first usable address); a pool with no usable room for one is refused."""
    v4, v6 = random_subnets()
    for cidr, gateway in ((v4, v4.replace(".0/24", ".1/24")), (v6, v6.replace("::/64", "::1/64"))):
        pool = call(plugin, "IpamDriver.RequestPool", {"Pool": cidr, "V6": ":" in cidr}).json()
        gw = call(
            plugin,
            "IpamDriver.RequestAddress",
            {
                "PoolID": pool["PoolID"],
                "Options": {"RequestAddressType": "com.docker.network.gateway"},
            },
        ).json()
        assert gw["Address"] == gateway
        assert call(plugin, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]}).json() == {}
    single = v4.replace(".0/24", ".9/32")
    pool = call(plugin, "IpamDriver.RequestPool", {"Pool": single}).json()
    refused = call(
        plugin,
        "IpamDriver.RequestAddress",
        {"PoolID": pool["PoolID"], "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    ).json()
    assert "no room for a gateway" in refused["Error"]
    assert call(plugin, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]}).json() == {}


def _exists(ifname: str) -> bool:
    from pathlib import Path

    return Path(f"/sys/class/net/{ifname}").exists()


def test_full_flow_by_hand_leave_rejoin_and_forced_release(
    plugin: httpx.Client, docker_agent: DockerAgent
) -> None:
    """What dockerd sends, step by step, plus two things it rarely does:
    Join again after Leave, and ReleaseAddress of an endpoint it forgot."""
    import uuid

    v4, _ = random_subnets()
    nid, eid = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    pool = call(plugin, "IpamDriver.RequestPool", {"AddressSpace": "", "Pool": v4}).json()
    gw = call(
        plugin,
        "IpamDriver.RequestAddress",
        {"PoolID": pool["PoolID"], "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    ).json()["Address"]
    created = call(
        plugin,
        "NetworkDriver.CreateNetwork",
        {"NetworkID": nid, "IPv4Data": [{"Pool": v4, "Gateway": gw}], "Options": {}},
    ).json()
    assert created == {}
    address = call(plugin, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]}).json()[
        "Address"
    ]
    endpoint = call(
        plugin,
        "NetworkDriver.CreateEndpoint",
        {"NetworkID": nid, "EndpointID": eid, "Interface": {"Address": address}, "Options": {}},
    ).json()
    mac = endpoint["Interface"]["MacAddress"]
    join = call(
        plugin, "NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid, "SandboxKey": "/x"}
    ).json()
    src = join["InterfaceName"]["SrcName"]
    assert _exists(src) and join["Gateway"] == gw.split("/")[0]
    from pathlib import Path

    assert Path(f"/sys/class/net/{src}/address").read_text().strip() == mac

    info = call(plugin, "NetworkDriver.EndpointOperInfo", {"NetworkID": nid, "EndpointID": eid})
    port_id = info.json()["Value"]["podwire.port"]
    assert call(plugin, "NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid}).json() == {}
    assert not _exists(src)
    rejoin = call(plugin, "NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid}).json()
    assert rejoin["InterfaceName"]["SrcName"] == src and _exists(src)

    # dockerd forgot the endpoint and releases its address: podwire finishes
    # the endpoint so that nothing holds the address any more.
    release = {"PoolID": pool["PoolID"], "Address": address}
    assert call(plugin, "IpamDriver.ReleaseAddress", release).json() == {}
    assert not _exists(src)
    assert docker_agent.attachments() == []
    from podwire.errors import NotFound

    with pytest.raises(NotFound):
        docker_agent.backend.get_port(docker_agent.ctx, port_id)

    assert (
        call(plugin, "NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid}).json()
        == {}
    )
    assert call(plugin, "NetworkDriver.DeleteNetwork", {"NetworkID": nid}).json() == {}
    assert (
        call(plugin, "IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": gw}).json()
        == {}
    )
    assert call(plugin, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]}).json() == {}
    assert not [
        n for n in docker_agent.backend.list_networks(docker_agent.ctx) if nid[:12] in n.name
    ]


def _create_network(plugin: httpx.Client, nid: str, v4: str) -> tuple[str, str]:
    """RequestPool, the gateway, CreateNetwork, as dockerd orders them."""
    pool = call(plugin, "IpamDriver.RequestPool", {"AddressSpace": "", "Pool": v4}).json()
    gw = call(
        plugin,
        "IpamDriver.RequestAddress",
        {"PoolID": pool["PoolID"], "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    ).json()["Address"]
    created = call(
        plugin,
        "NetworkDriver.CreateNetwork",
        {"NetworkID": nid, "IPv4Data": [{"Pool": v4, "Gateway": gw}], "Options": {}},
    ).json()
    assert created == {}
    return pool["PoolID"], gw


def _delete_network(plugin: httpx.Client, nid: str, pool_id: str, gw: str) -> None:
    assert call(plugin, "NetworkDriver.DeleteNetwork", {"NetworkID": nid}).json() == {}
    release = {"PoolID": pool_id, "Address": gw}
    assert call(plugin, "IpamDriver.ReleaseAddress", release).json() == {}
    assert call(plugin, "IpamDriver.ReleasePool", {"PoolID": pool_id}).json() == {}


def test_restart_forgets_a_network_whose_backend_network_went(
    plugin: httpx.Client, docker_agent: DockerAgent
) -> None:
    """The backend network of a Docker network is deleted while the agent is
    down: at start the door drops its record and unlinks the pool, so the
    endpoint fails naming the cause, Docker's replayed CreateNetwork links
    the pool again, and Docker's deletes all succeed."""
    import uuid

    v4, _ = random_subnets()
    nid = uuid.uuid4().hex * 2
    pool_id, gw = _create_network(plugin, nid, v4)
    (network,) = [
        n for n in docker_agent.backend.list_networks(docker_agent.ctx) if nid[:12] in n.name
    ]
    docker_agent.stop()
    for subnet in docker_agent.backend.list_subnets(docker_agent.ctx, {"network_id": [network.id]}):
        docker_agent.backend.delete_subnet(docker_agent.ctx, subnet.id)
    docker_agent.backend.delete_network(docker_agent.ctx, network.id)
    docker_agent.close_backend()
    docker_agent.start()

    body = {"NetworkID": nid, "EndpointID": uuid.uuid4().hex * 2, "Interface": {}, "Options": {}}
    assert (
        "not a podwire network" in call(plugin, "NetworkDriver.CreateEndpoint", body).json()["Err"]
    )
    # The pool is Docker's still (same id, reference counted), but on no network.
    unlinked = call(plugin, "IpamDriver.RequestAddress", {"PoolID": pool_id}).json()
    assert "not on a network yet" in unlinked["Error"]
    again = call(
        plugin,
        "NetworkDriver.CreateNetwork",
        {"NetworkID": nid, "IPv4Data": [{"Pool": v4, "Gateway": gw}], "Options": {}},
    ).json()
    assert again == {}
    address = call(plugin, "IpamDriver.RequestAddress", {"PoolID": pool_id}).json()["Address"]
    assert ipaddress.ip_interface(address) in ipaddress.ip_network(v4)
    assert (
        call(plugin, "IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": address}).json()
        == {}
    )
    _delete_network(plugin, nid, pool_id, gw)
    assert not [
        n for n in docker_agent.backend.list_networks(docker_agent.ctx) if nid[:12] in n.name
    ]


def test_leave_restart_join_replugs_from_the_record(
    plugin: httpx.Client, docker_agent: DockerAgent
) -> None:
    """Leave's mark is on the endpoint's attachment record, so a Join after an
    agent restart still plugs the interface again."""
    import uuid

    v4, _ = random_subnets()
    nid, eid = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    pool_id, gw = _create_network(plugin, nid, v4)
    address = call(plugin, "IpamDriver.RequestAddress", {"PoolID": pool_id}).json()["Address"]
    endpoint = {"NetworkID": nid, "EndpointID": eid}
    created = call(
        plugin, "NetworkDriver.CreateEndpoint", {**endpoint, "Interface": {"Address": address}}
    ).json()
    assert "MacAddress" in created["Interface"]
    src = call(plugin, "NetworkDriver.Join", endpoint).json()["InterfaceName"]["SrcName"]
    assert call(plugin, "NetworkDriver.Leave", endpoint).json() == {}
    assert not _exists(src)
    (record,) = docker_agent.attachments()
    assert record["frontend_state"]["unplugged"] is True
    assert record["frontend_state"]["docker_network_id"] == nid

    docker_agent.restart()
    assert call(plugin, "NetworkDriver.Join", endpoint).json()["InterfaceName"]["SrcName"] == src
    assert _exists(src)
    (record,) = docker_agent.attachments()
    assert record["frontend_state"]["unplugged"] is False

    assert call(plugin, "NetworkDriver.Leave", endpoint).json() == {}
    assert call(plugin, "NetworkDriver.DeleteEndpoint", endpoint).json() == {}
    assert docker_agent.attachments() == []
    release = {"PoolID": pool_id, "Address": address}
    assert call(plugin, "IpamDriver.ReleaseAddress", release).json() == {}
    _delete_network(plugin, nid, pool_id, gw)


@pytest.mark.parametrize("id_recorded", [True, False], ids=["id-recorded", "before-the-id"])
def test_restart_undoes_a_create_network_cut_short(
    plugin: httpx.Client, docker_agent: DockerAgent, id_recorded: bool
) -> None:
    """What a crash inside CreateNetwork leaves: the door's "creating" record
    and a backend network with its subnet (with or without the network's id
    written back to the record). At start the door deletes both, so nothing
    leaks, and Docker's next CreateNetwork for that id works from scratch."""
    import uuid

    from podwire.frontends.docker.records import DockerRecords, NetworkRecord
    from podwire.model import NetworkCreate, SubnetCreate

    v4, _ = random_subnets()
    nid = uuid.uuid4().hex * 2
    docker_agent.stop()
    backend, ctx = docker_agent.backend, docker_agent.ctx
    left = backend.create_network(
        ctx, NetworkCreate(name=f"docker-{nid[:12]}", description=f"docker network {nid}")
    )
    backend.create_subnet(ctx, SubnetCreate(network_id=left.id, cidr=v4))
    DockerRecords(docker_agent.state_dir / "docker").put_network(
        NetworkRecord(
            docker_network_id=nid,
            network_id=left.id if id_recorded else None,
            created=True,
            state="creating",
        )
    )
    docker_agent.close_backend()
    docker_agent.start()

    from podwire.errors import NotFound

    with pytest.raises(NotFound):
        docker_agent.backend.get_network(docker_agent.ctx, left.id)
    assert DockerRecords(docker_agent.state_dir / "docker").network(nid) is None
    pool_id, gw = _create_network(plugin, nid, v4)
    (network,) = [
        n for n in docker_agent.backend.list_networks(docker_agent.ctx) if nid[:12] in n.name
    ]
    assert network.id != left.id
    _delete_network(plugin, nid, pool_id, gw)
    assert not [
        n for n in docker_agent.backend.list_networks(docker_agent.ctx) if nid[:12] in n.name
    ]
