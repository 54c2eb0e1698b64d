"""Pure translation logic: JSON <-> DockerService calls, and the address
helpers. A small in-test DockerService stands in for the agent (a fake
shipped as code, answering from its own state; no patched calls)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import pytest

with warnings.catch_warnings():
    # starlette nags about httpx vs httpx2; the client is only a test harness.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from podwire.errors import InvalidInput, NotFound
from podwire.frontends.docker import create_app
from podwire.frontends.docker.addresses import allocation_pools, interface_addresses
from podwire.frontends.docker.terms import (
    EndpointInterface,
    JoinInfo,
    PoolData,
    StaticRoute,
    endpoint_ifname,
)
from podwire.model import Subnet


class TableService:
    """Answers from tables; remembers the last options it saw."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.networks: dict[str, list[PoolData]] = {}
        self.join_info = JoinInfo(
            "pwd-abc", "198.18.0.1", None, (StaticRoute("198.18.9.0/24", None),)
        )

    def request_pool(
        self, address_space: str, pool: str, sub_pool: str, v6: bool
    ) -> tuple[str, str]:
        return f"{address_space}/{pool}", pool

    def release_pool(self, pool_id: str) -> None:
        pass

    def request_address(self, pool_id: str, address: str, is_gateway: bool) -> str:
        return f"{address or '198.18.0.1'}/24" if is_gateway else "198.18.0.5/24"

    def release_address(self, pool_id: str, address: str) -> None:
        pass

    def create_network(
        self,
        docker_network_id: str,
        ipv4: list[PoolData],
        ipv6: list[PoolData],
        options: Mapping[str, str],
    ) -> None:
        self.networks[docker_network_id] = [*ipv4, *ipv6]
        self.options = dict(options)

    def delete_network(self, docker_network_id: str) -> None:
        raise RuntimeError("boom")

    def create_endpoint(
        self,
        docker_network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: Mapping[str, Any],
    ) -> EndpointInterface:
        self.options = dict(options)
        if docker_network_id not in self.networks:
            raise NotFound(f"docker network {docker_network_id} is unknown")
        return EndpointInterface(
            address="" if interface.address else "198.18.0.5/24",
            mac="" if interface.mac else "0a:70:77:00:00:01",
        )

    def endpoint_info(self, docker_network_id: str, endpoint_id: str) -> dict[str, str]:
        return {"podwire.port": "p1"}

    def delete_endpoint(self, docker_network_id: str, endpoint_id: str) -> None:
        pass

    def join(self, docker_network_id: str, endpoint_id: str) -> JoinInfo:
        return self.join_info

    def leave(self, docker_network_id: str, endpoint_id: str) -> None:
        pass


@pytest.fixture
def svc() -> TableService:
    return TableService()


@pytest.fixture
def client(svc: TableService) -> TestClient:
    return TestClient(create_app(svc))


def test_create_network_passes_pools_and_flattens_driver_options(
    client: TestClient, svc: TableService
) -> None:
    body = {
        "NetworkID": "n1",
        "IPv4Data": [{"AddressSpace": "S", "Pool": "198.18.0.0/24", "Gateway": "198.18.0.1/24"}],
        "IPv6Data": None,
        "Options": {
            "com.docker.network.generic": {"podwire.network": "blue"},
            "com.docker.network.enable_ipv6": False,
        },
    }
    assert client.post("/NetworkDriver.CreateNetwork", json=body).json() == {}
    assert svc.networks["n1"] == [PoolData("S", "198.18.0.0/24", "198.18.0.1/24", {})]
    assert svc.options == {"podwire.network": "blue"}


def test_create_endpoint_returns_only_what_docker_lacks(
    client: TestClient, svc: TableService
) -> None:
    svc.networks["n1"] = []
    given = {"Address": "198.18.0.5/24", "AddressIPv6": "", "MacAddress": ""}
    answer = client.post(
        "/NetworkDriver.CreateEndpoint",
        json={
            "NetworkID": "n1",
            "EndpointID": "e1",
            "Interface": given,
            "Options": {"podwire.port": "p"},
        },
    ).json()
    assert answer == {"Interface": {"MacAddress": "0a:70:77:00:00:01"}}
    assert svc.options == {"podwire.port": "p"}
    # No Interface at all (another IPAM gave nothing): the address comes back too.
    answer = client.post(
        "/NetworkDriver.CreateEndpoint",
        json={"NetworkID": "n1", "EndpointID": "e2", "Interface": None},
    ).json()
    assert answer["Interface"]["Address"] == "198.18.0.5/24"


def test_join_shapes_routes_and_never_asks_for_gwbridge(
    client: TestClient, svc: TableService
) -> None:
    answer = client.post("/NetworkDriver.Join", json={"NetworkID": "n", "EndpointID": "e"}).json()
    assert answer == {
        "InterfaceName": {"SrcName": "pwd-abc", "DstPrefix": "eth"},
        "Gateway": "198.18.0.1",
        "StaticRoutes": [{"Destination": "198.18.9.0/24", "RouteType": 1}],
        "DisableGatewayService": True,
    }
    svc.join_info = JoinInfo(
        "x", None, "2001:db8::1", (StaticRoute("198.18.8.0/24", "198.18.0.7"),)
    )
    answer = client.post("/NetworkDriver.Join", json={"NetworkID": "n", "EndpointID": "e"}).json()
    assert "Gateway" not in answer and answer["GatewayIPv6"] == "2001:db8::1"
    assert answer["StaticRoutes"] == [
        {"Destination": "198.18.8.0/24", "RouteType": 0, "NextHop": "198.18.0.7"}
    ]


def test_errors_are_translated_in_one_place(client: TestClient) -> None:
    answer = client.post(
        "/NetworkDriver.CreateEndpoint", json={"NetworkID": "zz", "EndpointID": "e"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"Err": "NetworkDriver.CreateEndpoint: docker network zz is unknown"}
    crash = client.post("/NetworkDriver.DeleteNetwork", json={"NetworkID": "n"})
    assert crash.status_code == 500 and "RuntimeError: boom" in crash.json()["Err"]
    assert client.get("/Plugin.Activate").status_code == 405
    assert client.post("/IpamDriver.RequestAddress", json={"PoolID": "p"}).json() == {
        "Address": "198.18.0.5/24",
        "Data": {},
    }
    gateway = client.post(
        "/IpamDriver.RequestAddress",
        json={"PoolID": "p", "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    )
    assert gateway.json()["Address"] == "198.18.0.1/24"


def test_endpoint_ifname_is_short_and_cannot_collide_with_hex_names() -> None:
    name = endpoint_ifname("0123456789abcdef" * 4)
    assert name == "pwd-0123456789a" and len(name) == 15
    assert "-" in name


def test_ip_range_becomes_allocation_pools_around_the_gateway() -> None:
    assert allocation_pools("198.18.0.0/24", None, "198.18.0.1") is None
    pools = allocation_pools("198.18.0.0/24", "198.18.0.0/25", "198.18.0.1")
    assert [(p.start, p.end) for p in pools or []] == [("198.18.0.2", "198.18.0.127")]
    pools = allocation_pools("198.18.0.0/24", "198.18.0.128/25", "198.18.0.1")
    assert [(p.start, p.end) for p in pools or []] == [("198.18.0.128", "198.18.0.254")]
    pools = allocation_pools("198.18.0.0/24", "198.18.0.0/26", "198.18.0.10")
    assert [(p.start, p.end) for p in pools or []] == [
        ("198.18.0.1", "198.18.0.9"),
        ("198.18.0.11", "198.18.0.63"),
    ]


def test_interface_addresses_map_to_subnets_or_fail_naming_the_field() -> None:
    s4 = Subnet(id="s4", project_id="p", network_id="n", ip_version=4, cidr="198.18.0.0/24")
    s6 = Subnet(id="s6", project_id="p", network_id="n", ip_version=6, cidr="2001:db8::/64")
    got = interface_addresses("198.18.0.5/24", "2001:db8::5/64", [s4, s6])
    assert got == [(s4, "198.18.0.5"), (s6, "2001:db8::5")]
    with pytest.raises(InvalidInput, match=re.escape("Address 198.18.1.5/24 is on no subnet")):
        interface_addresses("198.18.1.5/24", "", [s4, s6])
    with pytest.raises(InvalidInput, match=re.escape("AddressIPv6 198.18.0.5/24 is not IPv6")):
        interface_addresses("", "198.18.0.5/24", [s4, s6])
    with pytest.raises(InvalidInput, match="not an address"):
        interface_addresses("banana", "", [s4])
