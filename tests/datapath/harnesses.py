"""Per-kind harnesses for the driver contract suite (test_driver_contract.py).

A harness knows what the suite cannot know in general about one VIF kind:
how to build a valid VIF (with the host-side prerequisites it needs: a
private nftables table, a private OVS + OVN and a logical port, a VF...),
what of a VIF may be left on the host (to prove unplug leaves nothing),
and how to break its host side by hand (to prove check names the field).
Everything the container sees (interface, MAC, MTU, addresses, routes) is
checked by the suite itself, the same way for every kind.

Adding a kind: write one harness class here and add one entry to
``HARNESSES`` (with the marks its prerequisites need). A harness builds its
driver from the driver class itself, with private options (an nftables
table, an OVS database), not through a registry: registries (the kind
plugins) are the agent's business, and this suite must not depend on how
they are shaped. Names of things a
harness makes are unique, and ``close()`` removes all of them, even after a
failed test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from podwire.datapath.base import Driver
from podwire.datapath.vif import Route, VethBridge, VethOvs, VhostUser
from tests.fixtures.common import require_command, require_root, unique

# Test addresses only from 198.18.0.0/15 and 2001:db8::/32; a random /24 (and
# /64) per harness, so bridges other tests hold on this host never collide.


def _subnets() -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    n = uuid.uuid4().int
    return (
        ipaddress.IPv4Network(f"198.19.{n % 250 + 1}.0/24"),
        ipaddress.IPv6Network(f"2001:db8:c0:{n % 0xFFFF:x}::/64"),
    )


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def host_link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _routes(v4: ipaddress.IPv4Network, v6: ipaddress.IPv6Network) -> tuple[Route, ...]:
    gw4, gw6 = str(v4[1]), str(v6[1])
    return (
        Route(destination="0.0.0.0/0", gateway=gw4),
        Route(destination="::/0", gateway=gw6),
        # A host route beside the defaults, as a subnet's host_routes give.
        Route(destination="198.18.250.0/24", gateway=gw4),
    )


class Harness:
    """What every harness provides (see the module docstring)."""

    kind: ClassVar[str]
    #: Whether the container gets a netdev (False for vhost-user, vfio VFs):
    #: the suite then checks interface, MAC, MTU, addresses and routes.
    container_netdev: ClassVar[bool] = True
    #: Whether plug(netns=None) is supported (Docker moves the interface).
    runtime_moves_interface: ClassVar[bool] = True
    #: Changes this harness can make by hand to a plugged VIF's host side
    #: (``break_host_side``), each with the field ``check`` must then name.
    host_drifts: ClassVar[dict[str, str]] = {}

    def driver(self) -> Driver:
        raise NotImplementedError

    def vif(self, **overrides: Any) -> Any:
        """A valid VIF of this kind, with fresh host-side names."""
        raise NotImplementedError

    def leftovers(self, vif: Any) -> list[str]:
        """What of ``vif`` is still on the host (empty when unplugged)."""
        raise NotImplementedError

    def break_host_side(self, drift: str, vif: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# --- veth + Linux bridge --------------------------------------------------------


@dataclass
class VethBridgeHarness(Harness):
    kind: ClassVar[str] = "veth_bridge"

    table: str = field(default_factory=lambda: unique("pwct"))
    bridge: str = field(default_factory=lambda: unique("pwcbr"))
    host_ends: list[str] = field(default_factory=list)
    v4: ipaddress.IPv4Network = field(init=False)
    v6: ipaddress.IPv6Network = field(init=False)
    _driver: Driver | None = None
    # The agent's own setting: unplug takes the pair down and deletes it on
    # a worker (VethBridgeDriver docstring); leftovers() waits for that.
    async_delete: bool = False

    def __post_init__(self) -> None:
        require_command("nft")
        self.v4, self.v6 = _subnets()

    def driver(self) -> Driver:
        from podwire.datapath.veth_bridge import VethBridgeDriver

        if self._driver is None:
            # A private nftables table: rules never mix with another test's.
            self._driver = VethBridgeDriver(nft_table=self.table, async_delete=self.async_delete)
        return self._driver

    def vif(self, **overrides: Any) -> VethBridge:
        host_end = unique("pwch", 8)
        self.host_ends.append(host_end)
        index = len(self.host_ends) + 10
        mac = f"02:00:00:c0:00:{index:02x}"
        values: dict[str, Any] = {
            "port_id": f"port-{host_end}",
            "network_id": f"net-{self.bridge}",
            "mac": mac,
            "addresses": (f"{self.v4[index]}/24", f"{self.v6[index]}/64"),
            "routes": _routes(self.v4, self.v6),
            "mtu": 1400,
            "bridge": self.bridge,
            "host_ifname": host_end,
            "bridge_addresses": (f"{self.v4[1]}/24", f"{self.v6[1]}/64"),
        }
        values.update(overrides)
        return VethBridge.model_validate(values)

    def _rules_of(self, host_end: str) -> bool:
        listing = subprocess.run(
            ["nft", "list", "table", "bridge", self.table], capture_output=True, text=True
        )
        return f'"{host_end}"' in listing.stdout

    def leftovers(self, vif: Any) -> list[str]:
        assert isinstance(vif, VethBridge)
        if self.async_delete:
            self.driver().flush()  # type: ignore[attr-defined]
        out = []
        if host_link_exists(vif.host_ifname):
            out.append(f"host end {vif.host_ifname}")
        if self._rules_of(vif.host_ifname):
            out.append(f"port security elements of {vif.host_ifname}")
        return out

    host_drifts: ClassVar[dict[str, str]] = {
        "host-end-deleted": "host_ifname",
        "host-end-off-bridge": "bridge",
        "port-security-removed": "port_security",
    }

    def break_host_side(self, drift: str, vif: Any) -> None:
        assert isinstance(vif, VethBridge)
        if drift == "host-end-deleted":
            _run("ip", "link", "del", vif.host_ifname)
        elif drift == "host-end-off-bridge":
            _run("ip", "link", "set", vif.host_ifname, "nomaster")
        elif drift == "port-security-removed":
            element = f'{{ "{vif.host_ifname}" }}'
            _run("nft", "delete", "element", "bridge", self.table, "secured", element)
        else:
            raise ValueError(drift)

    def close(self) -> None:
        for name in [*self.host_ends, self.bridge]:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        subprocess.run(["nft", "delete", "table", "bridge", self.table], capture_output=True)


# --- veth + OVS, bound by a private OVN -------------------------------------------


@dataclass
class VethOvsHarness(Harness):
    """Each VIF is a real logical port of a private OVN (tests/fixtures/ovn.py),
    so plug waits for ovn-controller to bind it, as in production."""

    kind: ClassVar[str] = "veth_ovs"

    env: Any  # tests.fixtures.ovn.OvnEnv
    backend: Any = None
    network_id: str = ""
    host_ends: list[str] = field(default_factory=list)
    v4: ipaddress.IPv4Network = field(init=False)
    v6: ipaddress.IPv6Network = field(init=False)
    _driver: Driver | None = None

    def __post_init__(self) -> None:
        from podwire.backends.ovn import OvnBackend
        from podwire.model import NetworkCreate, SubnetCreate

        self.v4, self.v6 = _subnets()
        self.backend = OvnBackend([self.env.nb_remote], timeout=10.0)
        net = self.backend.create_network(self._ctx(), NetworkCreate(name=unique("pwcnet")))
        self.network_id = net.id
        for cidr in (self.v4, self.v6):
            self.backend.create_subnet(self._ctx(), SubnetCreate(network_id=net.id, cidr=str(cidr)))

    @staticmethod
    def _ctx() -> Any:
        from podwire.model import Context

        return Context(project_id="driver-contract")

    def driver(self) -> Driver:
        from podwire.datapath.veth_ovs import VethOvsDriver

        if self._driver is None:
            # describe() asks this database; plug/unplug/check use the VIF's.
            self._driver = VethOvsDriver(ovs_db=self.env.ovs_remote)
        return self._driver

    def vif(self, **overrides: Any) -> VethOvs:
        from podwire.model import PortCreate

        port = self.backend.create_port(self._ctx(), PortCreate(network_id=self.network_id))
        host_end = unique("pwco", 8)
        self.host_ends.append(host_end)
        prefix = {4: 24, 6: 64}
        values: dict[str, Any] = {
            "port_id": port.id,
            "network_id": port.network_id,
            "mac": port.mac_address,
            "addresses": tuple(
                f"{f.ip_address}/{prefix[ipaddress.ip_address(f.ip_address).version]}"
                for f in port.fixed_ips
            ),
            "routes": _routes(self.v4, self.v6),
            "mtu": 1400,
            "bridge": self.env.bridge,
            "host_ifname": host_end,
            "iface_id": port.id,
            "ovs_db": self.env.ovs_remote,
            "bind_timeout": 20.0,
        }
        values.update(overrides)
        return VethOvs.model_validate(values)

    def _ovs_ports(self) -> list[str]:
        return self.env.vsctl("list-ports", self.env.bridge).split()

    def leftovers(self, vif: Any) -> list[str]:
        assert isinstance(vif, VethOvs)
        out = []
        if host_link_exists(vif.host_ifname):
            out.append(f"host end {vif.host_ifname}")
        if vif.host_ifname in self._ovs_ports():
            out.append(f"OVS port {vif.host_ifname} on {self.env.bridge}")
        return out

    host_drifts: ClassVar[dict[str, str]] = {
        "host-end-deleted": "host_ifname",
        "host-end-off-bridge": "bridge",
        "iface-id-changed": "iface_id",
        "tx-offload-on": "tx_checksum",
    }

    def break_host_side(self, drift: str, vif: Any) -> None:
        assert isinstance(vif, VethOvs)
        if drift == "host-end-deleted":
            _run("ip", "link", "del", vif.host_ifname)
        elif drift == "host-end-off-bridge":
            self.env.vsctl("del-port", self.env.bridge, vif.host_ifname)
        elif drift == "iface-id-changed":
            iface_id = "external_ids:iface-id=someone-else"
            self.env.vsctl("set", "Interface", vif.host_ifname, iface_id)
        elif drift == "tx-offload-on":
            require_command("ethtool")
            _run("ethtool", "-K", vif.host_ifname, "tx", "on")
        else:
            raise ValueError(drift)

    def close(self) -> None:
        for name in self.host_ends:
            with contextlib.suppress(Exception):
                self.env.vsctl("--if-exists", "del-port", self.env.bridge, name)
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        with contextlib.suppress(Exception):
            for port in self.backend.list_ports(self._ctx(), {"network_id": [self.network_id]}):
                self.backend.delete_port(self._ctx(), port.id)
            self.backend.delete_network(self._ctx(), self.network_id)
        self.backend.close()


# --- vhost-user on a private OVS-DPDK ---------------------------------------------


@dataclass
class VhostUserHarness(Harness):
    """Client-mode VIFs (the mode where the driver makes the most: the OVS
    port, the socket moved from OVS's directory, the config file) on the
    private OVS-DPDK of tests/fixtures/ovs_dpdk.py. No netdev in the
    container."""

    kind: ClassVar[str] = "vhostuser"
    container_netdev: ClassVar[bool] = False
    runtime_moves_interface: ClassVar[bool] = False

    ovs: Any  # tests.fixtures.ovs_dpdk.OvsDpdk
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pw11c", dir="/tmp")))
    names: list[str] = field(default_factory=list)
    _driver: Driver | None = None

    def driver(self) -> Driver:
        from podwire.datapath.vhostuser import VhostUserDriver

        if self._driver is None:
            self._driver = VhostUserDriver(ovs_db=self.ovs.remote)
        return self._driver

    def vif(self, **overrides: Any) -> VhostUser:
        name = unique("vhu", 10)
        self.names.append(name)
        v4, v6 = _subnets()
        values: dict[str, Any] = {
            "port_id": unique("port-", 8),
            "network_id": "net-contract",
            "mac": "0a:70:77:00:11:22",
            "addresses": (f"{v4[5]}/{v4.prefixlen}", f"{v6[5]}/{v6.prefixlen}"),
            "routes": _routes(v4, v6),
            "mode": "client",
            "socket_dir": str(self.root / name),
            "socket_name": name,
            "config_name": f"{name}-eth0",
            "bridge": self.ovs.bridge,
            "ovs_ifname": name,
            "ovs_db": self.ovs.remote,
            "ovs_socket_dir": str(self.ovs.sock_dir),
        }
        values.update(overrides)
        return VhostUser.model_validate(values)

    def leftovers(self, vif: Any) -> list[str]:
        assert isinstance(vif, VhostUser)
        out = []
        if vif.ovs_ifname in self.ovs.ports():
            out.append(f"OVS port {vif.ovs_ifname}")
        for path in (Path(vif.socket_dir), self.ovs.sock_dir / vif.ovs_ifname):
            if path.exists():
                out.append(str(path))
        return out

    host_drifts: ClassVar[dict[str, str]] = {
        "socket-removed": "socket",
        "port-off-bridge": "bridge",
        "config-removed": "config",
    }

    def break_host_side(self, drift: str, vif: Any) -> None:
        assert isinstance(vif, VhostUser)
        if drift == "socket-removed":
            (Path(vif.socket_dir) / vif.socket_name).unlink()
        elif drift == "port-off-bridge":
            self.ovs.vsctl("del-port", self.ovs.bridge, vif.ovs_ifname)
        elif drift == "config-removed":
            (Path(vif.socket_dir) / vif.config_name).unlink()
        else:
            raise ValueError(drift)

    def close(self) -> None:
        for name in self.names:
            with contextlib.suppress(Exception):
                self.ovs.vsctl("--if-exists", "del-port", self.ovs.bridge, name)
        shutil.rmtree(self.root, ignore_errors=True)


# --- the list: one entry per kind -------------------------------------------------


@dataclass(frozen=True)
class HarnessEntry:
    open: Callable[[pytest.FixtureRequest], contextlib.AbstractContextManager[Harness]]
    cls: type[Harness]
    marks: tuple[Any, ...] = ()


@contextlib.contextmanager
def _closing(harness: Harness) -> Iterator[Harness]:
    try:
        yield harness
    finally:
        harness.close()


def _veth_bridge(request: pytest.FixtureRequest) -> contextlib.AbstractContextManager[Harness]:
    require_root()
    return _closing(VethBridgeHarness())


def _veth_bridge_async(
    request: pytest.FixtureRequest,
) -> contextlib.AbstractContextManager[Harness]:
    require_root()
    return _closing(VethBridgeHarness(async_delete=True))


def _veth_ovs(request: pytest.FixtureRequest) -> contextlib.AbstractContextManager[Harness]:
    require_root()
    return _closing(VethOvsHarness(env=request.getfixturevalue("ovn_env")))


def _vhostuser(request: pytest.FixtureRequest) -> contextlib.AbstractContextManager[Harness]:
    require_root()
    return _closing(VhostUserHarness(ovs=request.getfixturevalue("ovs_dpdk")))


HARNESSES: dict[str, HarnessEntry] = {
    "veth_bridge": HarnessEntry(_veth_bridge, VethBridgeHarness),
    # The same kind with the option the agent runs it with.
    "veth_bridge-async": HarnessEntry(_veth_bridge_async, VethBridgeHarness),
    "veth_ovs": HarnessEntry(_veth_ovs, VethOvsHarness, (pytest.mark.ovn,)),
    "vhostuser": HarnessEntry(_vhostuser, VhostUserHarness, (pytest.mark.dpdk,)),
}
