"""NeutronBackend: the Backend protocol over the Neutron API of a real server,
on TCP with a token and on a unix socket with trust-all admin auth (the
agent's set-up), with the same typed errors the embedded backend raises."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podwire import errors
from podwire.backends.base import Backend
from podwire.backends.neutron import NeutronBackend
from podwire.config import load_config
from podwire.model import (
    AllowedAddressPair,
    Context,
    FixedIpRequest,
    NetworkCreate,
    NetworkUpdate,
    PortBinding,
    PortCreate,
    PortUpdate,
    SubnetCreate,
    SubPort,
    TrunkCreate,
)
from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo, free_port

CTX = Context(project_id="ignored-by-remote")


@pytest.fixture(scope="module")
def alice(podwire_server: ServerInfo) -> Iterator[NeutronBackend]:
    # The agent's own token: alice's project with the service role (binding).
    backend = NeutronBackend.at(podwire_server.url, token=podwire_server.tokens["alice_service"])
    yield backend
    backend.close()


def test_is_a_backend_and_round_trips_objects(alice: NeutronBackend) -> None:
    assert isinstance(alice, Backend)
    net = alice.create_network(CTX, NetworkCreate(name=unique("rb-"), mtu=1400, datapath="bridge"))
    try:
        assert (net.mtu, net.datapath) == (1400, "bridge")
        v4 = alice.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="198.18.60.0/24"))
        v6 = alice.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="2001:db8:60::/64"))
        assert alice.get_network(CTX, net.id).subnets == [v4.id, v6.id]
        port = alice.create_port(
            CTX,
            PortCreate(
                network_id=net.id,
                fixed_ips=[FixedIpRequest(subnet_id=v4.id, ip_address="198.18.60.9")],
                allowed_address_pairs=[AllowedAddressPair(ip_address="198.19.60.0/24")],
                binding=PortBinding(host_id="node-a", profile={"pci_slot": "0000:01:00.2"}),
                device_id="ctr-rb",
            ),
        )
        assert port.allowed_address_pairs[0].mac_address is None
        assert alice.get_port(CTX, port.id) == port
        assert alice.list_ports(CTX, {"fixed_ips.ip_address": ["198.18.60.9"]}) == [port]
        assert alice.list_ports(CTX, {"binding.host_id": ["node-a"]}) == [port]
        assert alice.list_ports(CTX, {"device_id": ["ctr-rb"], "network_id": [net.id]}) == [port]
        assert alice.list_ports(CTX, {"device_id": ["other"]}) == []

        moved = alice.update_port(
            CTX, port.id, PortUpdate(binding=PortBinding(host_id="node-b", vif_type="bridge"))
        )
        # The model replaces the whole binding; the remote does the same.
        assert moved.binding == PortBinding(host_id="node-b", vif_type="bridge")
        renamed = alice.update_network(CTX, net.id, NetworkUpdate(name="renamed"))
        assert renamed.name == "renamed"

        parent = alice.create_port(CTX, PortCreate(network_id=net.id))
        trunk = alice.create_trunk(
            CTX,
            TrunkCreate(port_id=parent.id, sub_ports=[SubPort(port_id=port.id, segmentation_id=7)]),
        )
        assert alice.get_port(CTX, port.id).parent_port_id == parent.id
        assert alice.get_port(CTX, port.id).segmentation_id == 7
        trunk = alice.remove_subports(CTX, trunk.id, [port.id])
        assert trunk.sub_ports == []
        trunk = alice.add_subports(CTX, trunk.id, [SubPort(port_id=port.id, segmentation_id=8)])
        assert [s.segmentation_id for s in trunk.sub_ports] == [8]
        assert alice.list_trunks(CTX, {"port_id": [parent.id]}) == [trunk]
        alice.delete_trunk(CTX, trunk.id)
        for p in (port, parent):
            alice.delete_port(CTX, p.id)
    finally:
        alice.delete_network(CTX, net.id)


def test_typed_errors_come_back(alice: NeutronBackend, podwire_server: ServerInfo) -> None:
    with pytest.raises(errors.NotFound) as not_found:
        alice.get_port(CTX, "no-such-port")
    assert not_found.value.kind == "port"
    net = alice.create_network(CTX, NetworkCreate(name=unique("rbe-")))
    try:
        alice.create_subnet(
            CTX,
            SubnetCreate(
                network_id=net.id,
                cidr="198.18.61.0/24",
                allocation_pools=[{"start": "198.18.61.10", "end": "198.18.61.10"}],
            ),
        )
        with pytest.raises(errors.Conflict):
            alice.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="198.18.61.128/25"))
        alice.create_port(CTX, PortCreate(network_id=net.id))
        with pytest.raises(errors.Exhausted):
            alice.create_port(CTX, PortCreate(network_id=net.id))
        with pytest.raises(errors.Conflict):
            alice.delete_network(CTX, net.id)
        with pytest.raises(errors.InvalidInput) as bad:
            alice.list_ports(CTX, {"colour": ["red"]})
        assert "colour" in bad.value.message
        with pytest.raises(errors.Forbidden):
            alice.create_network(CTX, NetworkCreate(project_id=podwire_server.projects["bob"]))
    finally:
        for p in alice.list_ports(CTX, {"network_id": [net.id]}):
            alice.delete_port(CTX, p.id)
        alice.delete_network(CTX, net.id)

    with (
        NeutronBackend.at(podwire_server.url, token="nope") as stranger,
        pytest.raises(errors.NotAuthenticated),
    ):
        stranger.list_networks(CTX)
    with (
        NeutronBackend.at(f"http://127.0.0.1:{free_port()}", token="x") as nowhere,
        pytest.raises(errors.Unavailable, match="cannot reach"),
    ):
        nowhere.list_networks(CTX)


def test_from_config() -> None:
    config = load_config(None, backend="remote", **{"remote.url": "unix:///tmp/x.sock"})
    backend = NeutronBackend.for_remote(config)
    backend.close()
    with pytest.raises(errors.InvalidInput, match=r"remote\.url"):
        NeutronBackend.for_remote(load_config(None, backend="remote"))


_UDS_SERVER = textwrap.dedent(
    """
    import sys, uvicorn
    from podwire.api.app import create_app
    from podwire.api.auth import TrustAllAuth
    from podwire.backends.registry import open_backend
    from podwire.config import load_config

    backend = open_backend(load_config(None, state_dir=sys.argv[1]))
    app = create_app(backend, TrustAllAuth("default"))
    uvicorn.run(app, uds=sys.argv[2], log_level="warning")
    """
)


@pytest.fixture
def uds_server(tmp_path: Path) -> Iterator[Path]:
    """The API on a unix socket with trust-all admin auth, as the agent mounts it."""
    sock = tmp_path / "api.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", _UDS_SERVER, str(tmp_path / "state"), str(sock)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "the unix-socket API server exited"
            if sock.exists():
                try:
                    transport = httpx.HTTPTransport(uds=str(sock))
                    with httpx.Client(transport=transport) as client:
                        if client.get("http://podwire/").status_code == 200:
                            break
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, "the unix-socket API server did not answer"
            time.sleep(0.05)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_over_a_unix_socket_with_trust_all_auth(uds_server: Path) -> None:
    with NeutronBackend.at(f"unix://{uds_server}") as backend:
        net = backend.create_network(CTX, NetworkCreate(name="on-uds"))
        assert net.project_id == "default"
        # Admin rights: another project may be named.
        other = backend.create_network(CTX, NetworkCreate(name="other", project_id="p2"))
        assert {n.project_id for n in backend.list_networks(CTX)} == {"default", "p2"}
        backend.delete_network(CTX, other.id)
        backend.delete_network(CTX, net.id)
        assert backend.list_networks(CTX) == []
