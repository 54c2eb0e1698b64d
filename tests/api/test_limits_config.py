"""The API's size limits are configuration (issue 14): a real `podwire
server` started with an [api] section enforces the configured bounds, lowered
and raised, through HTTP; a bad value stops the server at start with a
message naming the key. Refused calls leave the database as it was."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podwire.backends.registry import open_backend
from podwire.config import ApiConfig, Config, load_config
from podwire.datapath.vif import MacvlanNested
from podwire.errors import Exhausted
from podwire.kinds.base import AttachmentRef, KindEnv
from podwire.kinds.nested import MacvlanNestedKind
from podwire.model import (
    MAX_ALLOWED_ADDRESS_PAIRS,
    MAX_DNS_NAMESERVERS,
    MAX_HOST_ROUTES,
    Context,
    PortCreate,
)
from tests.api.test_errors import expect_error
from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo, podwire_command, start_podwire_server

LIMITS = """
[api]
max_body_bytes = 4096
max_dns_nameservers = 2
max_host_routes = 25
max_allowed_address_pairs = 3
max_fixed_ips = 1
max_tags = 1
max_sub_ports = 2
max_filter_value = 64
"""


@pytest.fixture(scope="module")
def limited_server() -> Iterator[ServerInfo]:
    with tempfile.TemporaryDirectory(prefix="pwl-") as tmp:
        config = Path(tmp) / "podwire.toml"
        config.write_text(LIMITS)
        with start_podwire_server(config_file=config) as info:
            yield info


@pytest.fixture(scope="module")
def admin(limited_server: ServerInfo) -> Iterator[httpx.Client]:
    with limited_server.http("admin") as client:
        yield client


@pytest.fixture(scope="module")
def alice(limited_server: ServerInfo) -> Iterator[httpx.Client]:
    with limited_server.http("alice") as client:
        yield client


@pytest.fixture(scope="module")
def net(alice: httpx.Client) -> Iterator[dict[str, Any]]:
    network = alice.post("/networks", json={"network": {"name": unique("pwl-")}})
    assert network.status_code == 201, network.text
    net: dict[str, Any] = network.json()["network"]
    sub = alice.post(
        "/subnets", json={"subnet": {"network_id": net["id"], "cidr": "198.19.140.0/24"}}
    )
    assert sub.status_code == 201, sub.text
    net["subnet"] = sub.json()["subnet"]
    yield net
    for port in alice.get("/ports", params={"network_id": net["id"]}).json()["ports"]:
        alice.delete(f"/ports/{port['id']}")
    alice.delete(f"/networks/{net['id']}")


def test_the_defaults_are_todays_constants() -> None:
    limits = load_config(None).api
    assert limits == ApiConfig()
    assert limits.max_body_bytes == 114688
    assert limits.max_dns_nameservers == MAX_DNS_NAMESERVERS == 5
    assert limits.max_host_routes == MAX_HOST_ROUTES == 20
    assert limits.max_allowed_address_pairs == MAX_ALLOWED_ADDRESS_PAIRS == 1000
    assert (limits.max_fixed_ips, limits.max_allocation_pools) == (32, 64)
    assert (limits.max_security_groups, limits.max_tags, limits.max_sub_ports) == (64, 50, 4094)
    assert limits.max_filter_value == 255


def test_lowered_list_limits_are_enforced(
    admin: httpx.Client, alice: httpx.Client, net: dict[str, Any]
) -> None:
    subnet = f"/subnets/{net['subnet']['id']}"
    three = {"subnet": {"dns_nameservers": ["198.19.0.1", "198.19.0.2", "198.19.0.3"]}}
    error = expect_error(admin, alice, "PUT", subnet, 400, "dns_nameservers", json=three)
    assert "api.max_dns_nameservers" in error["message"]
    two = {"subnet": {"dns_nameservers": ["198.19.0.1", "198.19.0.2"]}}
    assert alice.put(subnet, json=two).status_code == 200

    pairs = [{"ip_address": f"198.19.141.{i}"} for i in range(1, 5)]
    port = {"port": {"network_id": net["id"], "allowed_address_pairs": pairs}}
    expect_error(admin, alice, "POST", "/ports", 400, "allowed_address_pairs", json=port)
    port["port"]["allowed_address_pairs"] = pairs[:3]
    made = alice.post("/ports", json=port)
    assert made.status_code == 201, made.text
    port_path = f"/ports/{made.json()['port']['id']}"
    # Updates are bounded too, and the same for tags.
    update = {"port": {"allowed_address_pairs": pairs}}
    expect_error(admin, alice, "PUT", port_path, 400, "allowed_address_pairs", json=update)
    tags = {"port": {"tags": ["a", "b"]}}
    expect_error(admin, alice, "PUT", port_path, 400, "tags", json=tags)

    fixed = [{"subnet_id": net["subnet"]["id"]}] * 2
    body = {"port": {"network_id": net["id"], "fixed_ips": fixed}}
    expect_error(admin, alice, "POST", "/ports", 400, "fixed_ips", json=body)


def test_raised_list_limit_is_enforced(
    admin: httpx.Client, alice: httpx.Client, net: dict[str, Any]
) -> None:
    # 25 configured: more than the default of 20 now passes, 26 does not.
    routes = [
        {"destination": f"198.19.{150 + i}.0/24", "nexthop": "198.19.140.254"} for i in range(26)
    ]
    subnet = f"/subnets/{net['subnet']['id']}"
    body = {"subnet": {"host_routes": routes}}
    expect_error(admin, alice, "PUT", subnet, 400, "host_routes", json=body)
    ok = alice.put(subnet, json={"subnet": {"host_routes": routes[:25]}})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["subnet"]["host_routes"]) == 25


def test_body_and_filter_limits(
    admin: httpx.Client, alice: httpx.Client, net: dict[str, Any]
) -> None:
    big = {"network": {"name": "n", "description": "x" * 4100}}
    error = expect_error(admin, alice, "POST", "/networks", 413, "4096 bytes", json=big)
    assert error["type"] == "HTTPRequestEntityTooLarge"
    small = alice.post(
        "/networks", json={"network": {"name": unique("pwl-"), "description": "x" * 200}}
    )
    assert small.status_code == 201, small.text
    alice.delete(f"/networks/{small.json()['network']['id']}")

    long_name = alice.get("/networks", params={"name": "n" * 65})
    assert long_name.status_code == 400, long_name.text
    assert "api.max_filter_value" in long_name.json()["NeutronError"]["message"]
    assert alice.get("/networks", params={"name": "n" * 64}).status_code == 200


def test_sub_port_limit(admin: httpx.Client, alice: httpx.Client, net: dict[str, Any]) -> None:
    ports = []
    for _ in range(4):
        made = alice.post("/ports", json={"port": {"network_id": net["id"]}})
        assert made.status_code == 201, made.text
        ports.append(made.json()["port"]["id"])
    subs = [
        {"port_id": pid, "segmentation_type": "vlan", "segmentation_id": 100 + i}
        for i, pid in enumerate(ports[1:])
    ]
    body = {"trunk": {"port_id": ports[0], "sub_ports": subs}}
    expect_error(admin, alice, "POST", "/trunks", 400, "sub_ports", json=body)
    body["trunk"]["sub_ports"] = subs[:1]
    trunk = alice.post("/trunks", json=body)
    assert trunk.status_code == 201, trunk.text
    add = f"/trunks/{trunk.json()['trunk']['id']}/add_subports"
    expect_error(admin, alice, "PUT", add, 400, "sub_ports", json={"sub_ports": subs[1:]})
    alice.delete(f"/trunks/{trunk.json()['trunk']['id']}")


def test_nested_pairs_stop_at_the_servers_limit(
    limited_server: ServerInfo, alice: httpx.Client, net: dict[str, Any]
) -> None:
    """A nested kind in a VM's agent adds its containers' pairs to the VM's
    port until the server's configured bound (3 here) refuses: the refusal
    is "exhausted" naming the key, and the VM port keeps the pairs it had."""
    backend = open_backend(
        Config.model_validate(
            {
                "backend": "remote",
                "remote": {"url": limited_server.url, "token": limited_server.tokens["alice"]},
            }
        )
    )
    try:
        vm = backend.create_port(
            _ctx(limited_server), PortCreate(network_id=net["id"], name=unique("pwl-vm-"))
        )
        config = Config.model_validate(
            {"agent": {"node_mode": "nested"}, "nested": {"port_id": vm.id, "nic": "eth0"}}
        )
        env = KindEnv(
            config=config, backend=backend, ctx=_ctx(limited_server), uses_network=lambda _: False
        )
        kind = MacvlanNestedKind(env)
        for n in range(4):
            port = backend.create_port(_ctx(limited_server), PortCreate(network_id=net["id"]))
            vif = MacvlanNested(
                port_id=port.id,
                network_id=net["id"],
                mac=port.mac_address,
                addresses=(f"{port.fixed_ips[0].ip_address}/24",),
                parent_ifname="eth0",
            )
            ref = AttachmentRef(f"a{n}", f"c{n}", "eth0", net["id"], port.id)
            if n < 3:
                kind.apply_backend(ref, vif)
                continue
            before = backend.get_port(_ctx(limited_server), vm.id)
            with pytest.raises(Exhausted, match=r"api\.max_allowed_address_pairs"):
                kind.apply_backend(ref, vif)
            after = backend.get_port(_ctx(limited_server), vm.id)
            assert len(after.allowed_address_pairs) == 3
            assert after.revision_number == before.revision_number
    finally:
        backend.close()


def _ctx(server: ServerInfo) -> Context:
    return Context(project_id=server.projects["alice"])


@pytest.mark.parametrize(
    "line,key",
    [
        ("max_body_bytes = 0", "api.max_body_bytes"),
        ("max_dns_nameservers = -1", "api.max_dns_nameservers"),
        ("max_allowed_address_pairs = 1000000000", "api.max_allowed_address_pairs"),
        ("max_sub_ports = 5000", "api.max_sub_ports"),
        ("max_filter_value = 36", "api.max_filter_value"),
        ('max_tags = "many"', "api.max_tags"),
    ],
)
def test_a_bad_limit_stops_the_server_at_start(tmp_path: Path, line: str, key: str) -> None:
    # Unit check of every case; one real start of the server below.
    config = tmp_path / "podwire.toml"
    config.write_text(f"[api]\n{line}\n")
    with pytest.raises(Exception) as refused:
        load_config(config)
    assert key in str(refused.value)
    if key != "api.max_body_bytes":
        return
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{}")
    cmd = [*podwire_command(), "server", "--state-dir", str(tmp_path / "state")]
    cmd += ["--listen", "127.0.0.1:0", "--tokens", str(tokens), "--config", str(config)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "api.max_body_bytes" in run.stderr and "greater than or equal to 1024" in run.stderr
