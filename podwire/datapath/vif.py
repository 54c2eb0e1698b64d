"""VIFs: what a data-path driver needs to plug one port, one class per kind.

The agent builds a VIF from a port, its network and subnets, and the node's
settings; drivers see only VIFs, never backends. Every VIF is plain data
(JSON round-trips through ``model_dump`` and
podwire.kinds.registry.parse_vif) because the agent
stores it in the attachment record and DEL/CHECK/GC work from that record
alone, even when the backend is gone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Plain):
    destination: str  # CIDR; "0.0.0.0/0" / "::/0" for default routes
    gateway: str | None = None


class AddressPair(_Plain):
    """A (source IP or CIDR, MAC) the container may send from."""

    ip: str
    mac: str


class PortSecurity(_Plain):
    """Anti-spoofing: when enabled, only ``allowed`` sources may leave the
    container. The agent fills ``allowed`` from the port's MAC with each fixed
    IP, plus its allowed_address_pairs."""

    enabled: bool = True
    allowed: tuple[AddressPair, ...] = ()


class VifBase(_Plain):
    """What every kind's VIF carries. A kind's class adds a ``kind`` literal
    (its registry name) and its own fields; podwire.kinds.registry finds the
    class by that name when a record is read back."""

    kind: str
    port_id: str
    network_id: str
    mac: str
    # Addresses with prefix length, e.g. "198.18.0.5/24", "2001:db8::5/64".
    addresses: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    mtu: int = 1500
    dns_nameservers: tuple[str, ...] = ()
    port_security: PortSecurity = Field(default_factory=PortSecurity)


class VethBridge(VifBase):
    """A veth pair; the host end is a port of a Linux bridge (one per network)."""

    kind: Literal["veth_bridge"] = "veth_bridge"
    bridge: str
    host_ifname: str
    # Subnet gateways the bridge itself holds, e.g. ("198.18.0.1/24",), so the
    # host answers on the gateway address. Nothing is forwarded or NATed.
    bridge_addresses: tuple[str, ...] = ()


class VethOvs(VifBase):
    """A veth pair; the host end is on an OVS bridge with iface-id = the
    logical port, so ovn-controller binds it."""

    kind: Literal["veth_ovs"] = "veth_ovs"
    bridge: str = "br-int"
    host_ifname: str
    iface_id: str
    # Wait until the logical port is up (ovn-controller bound it).
    wait_bound: bool = True
    bind_timeout: float = 15.0
    # The Open_vSwitch database holding ``bridge`` (config ovn.ovs_db); kept on
    # the VIF so DEL and CHECK work from the attachment record alone.
    ovs_db: str = "unix:/var/run/openvswitch/db.sock"


class MacvlanNested(VifBase):
    """A macvlan on the VM's own NIC; the container's addresses are on the VM
    port's allowed_address_pairs."""

    kind: Literal["macvlan_nested"] = "macvlan_nested"
    parent_ifname: str
    mode: Literal["bridge", "private", "vepa", "passthru"] = "bridge"


class IpvlanNested(VifBase):
    """An ipvlan slave on the VM's NIC (shares the VM's MAC)."""

    kind: Literal["ipvlan_nested"] = "ipvlan_nested"
    parent_ifname: str
    mode: Literal["l2", "l3", "l3s"] = "l2"


class VlanNested(VifBase):
    """An 802.1Q sub-interface of the VM's NIC: a trunk sub-port (Neutron) or
    a parent port + tag (OVN)."""

    kind: Literal["vlan_nested"] = "vlan_nested"
    parent_ifname: str
    vlan_id: int


class SriovVf(VifBase):
    """A virtual function moved into the container (netdevice) or handed to a
    DPDK application through vfio-pci (no netdev in the container). The VF
    settings applied through the PF are the optional fields below (None:
    left at the VF's baseline)."""

    kind: Literal["sriov"] = "sriov"
    pci_address: str
    pf_pci_address: str = ""
    pf_ifname: str
    vf_index: int
    physical_network: str | None = None
    numa_node: int | None = None
    driver: Literal["netdevice", "vfio-pci"] = "netdevice"
    vlan_id: int | None = None
    qos: int | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    link_state: Literal["auto", "enable", "disable"] | None = None


class VhostUser(VifBase):
    """A vhost-user socket for a DPDK application; no netdev in the container.
    ``mode`` is the application's role: "server" means the application owns
    the socket and OVS connects to it (OVS type dpdkvhostuserclient);
    "client" means OVS owns it (dpdkvhostuser) and the agent moves it from
    ``ovs_socket_dir`` into ``socket_dir``."""

    kind: Literal["vhostuser"] = "vhostuser"
    mode: Literal["server", "client"] = "server"
    # The container's own directory (<socket_root>/<container id>).
    socket_dir: str
    socket_name: str
    # The config file the application reads: <container id>-<ifname>.
    config_name: str = ""
    bridge: str = "br-int"
    # The OVS interface (and port) name; OVS names a dpdkvhostuser socket
    # after it.
    ovs_ifname: str = ""
    iface_id: str | None = None
    ovs_db: str = "unix:/var/run/openvswitch/db.sock"
    ovs_socket_dir: str = "/var/run/openvswitch"
    # Wait until ovn-controller marks the interface ovn-installed (OVN).
    wait_bound: bool = False
    bind_timeout: float = 15.0
    socket_timeout: float = 5.0
    # Hugepage memory (MiB) the application needs; 0: not checked.
    hugepages_mb: int = 0


# Drivers are typed against the base class; each checks its own class.
Vif = VifBase
