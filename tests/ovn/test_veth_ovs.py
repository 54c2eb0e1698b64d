"""veth + OVS under a real (private) OVN: the backend creates logical ports,
the veth_ovs driver plugs them into network namespaces, ovn-controller binds
them, and packets pass or are dropped as OVN's port security says."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from podwire.backends.ovn import OvnBackend
from podwire.datapath.netlink import get_tx_checksum, set_tx_checksum
from podwire.datapath.veth_ovs import VethOvsDriver
from podwire.datapath.vif import VethOvs
from podwire.errors import DatapathError, Drift
from podwire.model import (
    AllowedAddressPair,
    Context,
    NetworkCreate,
    Port,
    PortCreate,
    PortUpdate,
    SubnetCreate,
    SubPort,
    TrunkCreate,
)
from tests.fixtures.common import unique
from tests.fixtures.netns import ns_ping, ns_run
from tests.fixtures.ovn import OvnEnv

pytestmark = [pytest.mark.ovn, pytest.mark.root]

CTX = Context(project_id="ovn-tests")


@dataclass
class OvnNet:
    env: OvnEnv
    backend: OvnBackend
    network_id: str
    cidr: str
    driver: VethOvsDriver
    plugged: list[tuple[VethOvs, str, str]] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)

    def port(self, **kwargs: object) -> Port:
        port = self.backend.create_port(CTX, PortCreate(network_id=self.network_id, **kwargs))
        self.ports.append(port.id)
        return port

    def vif(self, port: Port, **overrides: object) -> VethOvs:
        prefix = ipaddress.ip_network(self.cidr).prefixlen
        values: dict[str, object] = {
            "port_id": port.id,
            "network_id": port.network_id,
            "mac": port.mac_address,
            "addresses": tuple(f"{f.ip_address}/{prefix}" for f in port.fixed_ips),
            "bridge": self.env.bridge,
            "host_ifname": unique("pwo", 8),
            "iface_id": port.id,
            "ovs_db": self.env.ovs_remote,
            "bind_timeout": 20.0,
        }
        values.update(overrides)
        return VethOvs.model_validate(values)

    def plug(self, vif: VethOvs, netns: str, ifname: str = "eth0") -> None:
        self.plugged.append((vif, netns, ifname))
        self.driver.plug(vif, netns, ifname)


@pytest.fixture
def ovn_net(ovn_env: OvnEnv) -> Iterator[OvnNet]:
    backend = OvnBackend([ovn_env.nb_remote], timeout=10.0)
    net = backend.create_network(CTX, NetworkCreate(name=unique("pwnet")))
    cidr = "198.18.7.0/24"
    backend.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr=cidr))
    env = OvnNet(ovn_env, backend, net.id, cidr, VethOvsDriver(ovs_db=ovn_env.ovs_remote))
    try:
        yield env
    finally:
        for vif, netns, ifname in env.plugged:
            env.driver.unplug(vif, netns, ifname)
        for trunk in backend.list_trunks(CTX):
            backend.delete_trunk(CTX, trunk.id)
        for port_id in env.ports:
            with contextlib.suppress(Exception):
                backend.delete_port(CTX, port_id)
        backend.delete_network(CTX, net.id)
        backend.close()


def _ip(port: Port) -> str:
    return port.fixed_ips[0].ip_address


def test_veth_ovs_kind_describes_the_configured_ovs_database(ovn_env: OvnEnv) -> None:
    """STATUS on an agent whose OVS database is not at the default path:
    the kind's driver and describe() use the configured one."""
    from podwire.config import Config
    from podwire.kinds import registry
    from podwire.kinds.base import KindEnv

    config = Config.model_validate({"ovn": {"ovs_db": ovn_env.ovs_remote}})
    plugin = registry.plugin_class("veth_ovs")(KindEnv(config, None, None, lambda _: False))  # type: ignore[arg-type]
    assert type(plugin.driver()).__name__ == "VethOvsDriver"
    described = plugin.describe()
    assert described.available, described.reason
    assert described.kinds == ["veth_ovs"]


def test_two_namespaces_ping_and_carry_tcp(
    ovn_net: OvnNet, make_netns_pair: Callable[[], tuple[str, str]]
) -> None:
    (ns1, path1), (ns2, path2) = make_netns_pair(), make_netns_pair()
    p1, p2 = ovn_net.port(), ovn_net.port()
    ovn_net.plug(ovn_net.vif(p1), path1)
    ovn_net.plug(ovn_net.vif(p2), path2)

    # ADD returned only once the port is bound: OVN says so too.
    up = ovn_net.env.nbctl("get", "Logical_Switch_Port", p1.id, "up").strip()
    assert up == "true"
    assert ovn_net.backend.get_port(CTX, p1.id).status == "ACTIVE"

    assert ns_ping(ns1, _ip(p2)), "ping ns1 -> ns2 over OVN failed"
    assert ns_ping(ns2, _ip(p1)), "ping ns2 -> ns1 over OVN failed"

    # TCP: needs TX checksum offload off on the veth ends (userspace datapath).
    payload = 4 * 1024 * 1024
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns1,
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import socket
                s = socket.create_server(("{_ip(p1)}", 5201))
                s.settimeout(20)
                c, _ = s.accept()
                c.settimeout(20)
                n = 0
                while chunk := c.recv(65536):
                    n += len(chunk)
                c.sendall(str(n).encode())
                c.close()
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = ns_run(
            ns2,
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import socket, time
                for _ in range(50):
                    try:
                        c = socket.create_connection(("{_ip(p1)}", 5201), timeout=20)
                        break
                    except ConnectionRefusedError:
                        time.sleep(0.1)
                c.sendall(b"x" * {payload})
                c.shutdown(socket.SHUT_WR)
                print(c.recv(100).decode())
                """
            ),
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == str(payload)
    finally:
        server.kill()
        server.wait()


def test_spoofed_source_is_dropped_by_port_security(
    ovn_net: OvnNet, make_netns_pair: Callable[[], tuple[str, str]]
) -> None:
    (ns1, path1), (_ns2, path2) = make_netns_pair(), make_netns_pair()
    p1, p2 = ovn_net.port(), ovn_net.port()
    ovn_net.plug(ovn_net.vif(p1), path1)
    ovn_net.plug(ovn_net.vif(p2), path2)
    spoofed = "198.18.7.200"
    ns_run(ns1, "ip", "addr", "add", f"{spoofed}/24", "dev", "eth0", check=True)

    assert ns_ping(ns1, _ip(p2), source=_ip(p1)), "the legitimate source must pass"
    assert not ns_ping(ns1, _ip(p2), source=spoofed), "a spoofed source must be dropped"

    # Allowed as an address pair, the same source passes: the backend rewrote
    # port_security in the northbound database and OVN follows.
    ovn_net.backend.update_port(
        CTX, p1.id, PortUpdate(allowed_address_pairs=[AllowedAddressPair(ip_address=spoofed)])
    )
    security = ovn_net.env.nbctl("get", "Logical_Switch_Port", p1.id, "port_security")
    assert spoofed in security
    ok = any(ns_ping(ns1, _ip(p2), source=spoofed) for _ in range(5))
    assert ok, "an allowed address pair must pass"


def test_trunk_subport_row_has_parent_name_and_tag(ovn_net: OvnNet) -> None:
    parent, child = ovn_net.port(), ovn_net.port()
    trunk = ovn_net.backend.create_trunk(
        CTX,
        TrunkCreate(port_id=parent.id, sub_ports=[SubPort(port_id=child.id, segmentation_id=101)]),
    )
    assert trunk.sub_ports == [SubPort(port_id=child.id, segmentation_id=101)]
    row = ovn_net.env.nbctl(
        "--columns=parent_name,tag,tag_request", "list", "Logical_Switch_Port", child.id
    )
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in row.splitlines())}
    assert fields["parent_name"].strip('"') == parent.id
    assert fields["tag"] == "101"
    assert fields["tag_request"] == "101"
    seen = ovn_net.backend.get_port(CTX, child.id)
    assert (seen.parent_port_id, seen.segmentation_id) == (parent.id, 101)

    ovn_net.backend.remove_subports(CTX, trunk.id, [child.id])
    assert ovn_net.env.nbctl("get", "Logical_Switch_Port", child.id, "parent_name").strip() == "[]"


def test_del_leaves_no_logical_port_and_no_ovs_port(
    ovn_net: OvnNet, make_netns_pair: Callable[[], tuple[str, str]]
) -> None:
    _, path = make_netns_pair()
    port = ovn_net.port()
    vif = ovn_net.vif(port)
    ovn_net.driver.plug(vif, path, "eth0")
    assert vif.host_ifname in ovn_net.env.vsctl("list-ports", ovn_net.env.bridge).split()

    ovn_net.driver.unplug(vif, path, "eth0")
    ovn_net.driver.unplug(vif, path, "eth0")  # idempotent
    ovn_net.backend.delete_port(CTX, port.id)
    ovn_net.ports.remove(port.id)

    assert vif.host_ifname not in ovn_net.env.vsctl("list-ports", ovn_net.env.bridge).split()
    assert not subprocess.run(["ip", "link", "show", vif.host_ifname], capture_output=True).stdout
    assert (
        ovn_net.env.nbctl(
            "--bare", "--columns=name", "find", "Logical_Switch_Port", f"name={port.id}"
        ).strip()
        == ""
    )


def test_unbound_port_times_out_and_leaves_nothing(
    ovn_net: OvnNet, make_netns_pair: Callable[[], tuple[str, str]]
) -> None:
    ns, path = make_netns_pair()
    port = ovn_net.port()
    # A logical port nobody created: ovn-controller never binds the interface.
    vif = ovn_net.vif(port, iface_id="no-such-logical-port", bind_timeout=1.0)
    with pytest.raises(DatapathError, match="did not bind logical port no-such-logical-port"):
        ovn_net.driver.plug(vif, path, "eth0")
    assert vif.host_ifname not in ovn_net.env.vsctl("list-ports", ovn_net.env.bridge).split()
    assert not subprocess.run(["ip", "link", "show", vif.host_ifname], capture_output=True).stdout
    assert "eth0" not in ns_run(ns, "ip", "-o", "link").stdout


def test_check_compares_live_state(
    ovn_net: OvnNet, make_netns_pair: Callable[[], tuple[str, str]]
) -> None:
    _, path = make_netns_pair()
    port = ovn_net.port()
    vif = ovn_net.vif(port)
    ovn_net.plug(vif, path)
    ovn_net.driver.check(vif, path, "eth0")

    set_tx_checksum(None, vif.host_ifname, True)
    with pytest.raises(Drift) as drift:
        ovn_net.driver.check(vif, path, "eth0")
    assert drift.value.field == "tx_checksum"
    set_tx_checksum(None, vif.host_ifname, False)

    ovn_net.env.vsctl("del-port", ovn_net.env.bridge, vif.host_ifname)
    with pytest.raises(Drift) as drift:
        ovn_net.driver.check(vif, path, "eth0")
    assert drift.value.field == "bridge"


def test_plug_without_netns_leaves_the_container_end_in_the_host(ovn_net: OvnNet) -> None:
    """Docker's libnetwork moves the interface itself: plug(netns=None) leaves
    the container end in the host, named, with its MAC, offload off, bound."""
    port = ovn_net.port()
    vif = ovn_net.vif(port)
    ifname = unique("pwoc", 8)
    ovn_net.driver.plug(vif, None, ifname)
    try:
        link = subprocess.run(["ip", "-o", "link", "show", ifname], capture_output=True, text=True)
        assert port.mac_address in link.stdout
        assert not get_tx_checksum(None, ifname)
        assert ovn_net.env.nbctl("get", "Logical_Switch_Port", port.id, "up").strip() == "true"
        ovn_net.driver.check(vif, None, ifname)
    finally:
        ovn_net.driver.unplug(vif, None, ifname)
    assert not subprocess.run(["ip", "link", "show", ifname], capture_output=True).stdout
    assert vif.host_ifname not in ovn_net.env.vsctl("list-ports", ovn_net.env.bridge).split()
