"""VIF building from a port, its network and subnets: pure logic."""

from __future__ import annotations

import pytest

from podwire.agent.vifs import (
    PortContext,
    bridge_name,
    build_vif,
    choose_vif_kind,
    host_veth_name,
)
from podwire.config import Config
from podwire.datapath.vif import AddressPair, Route, VethBridge, VethOvs
from podwire.errors import InvalidInput
from podwire.model import AllowedAddressPair, FixedIp, HostRoute, Network, Port, Subnet

NET_ID = "3f0e4a0c-1111-4222-8333-944455556666"
PORT_ID = "9a8b7c6d-aaaa-4bbb-8ccc-ddddeeeeffff"


def _ctx(backend: str = "embedded", **net: object) -> PortContext:
    network = Network(id=NET_ID, name="n", project_id="p", mtu=1400, **net)  # type: ignore[arg-type]
    v4 = Subnet(
        id="s4",
        project_id="p",
        network_id=NET_ID,
        ip_version=4,
        cidr="198.18.7.0/24",
        gateway_ip="198.18.7.1",
        dns_nameservers=["198.18.7.53"],
        host_routes=[HostRoute(destination="198.19.0.0/16", nexthop="198.18.7.254")],
    )
    v6 = Subnet(
        id="s6",
        project_id="p",
        network_id=NET_ID,
        ip_version=6,
        cidr="2001:db8:7::/64",
        gateway_ip="2001:db8:7::1",
    )
    unused = Subnet(
        id="sx",
        project_id="p",
        network_id=NET_ID,
        ip_version=4,
        cidr="198.18.8.0/24",
        gateway_ip="198.18.8.1",
    )
    port = Port(
        id=PORT_ID,
        project_id="p",
        network_id=NET_ID,
        mac_address="0a:70:77:01:02:03",
        fixed_ips=[
            FixedIp(subnet_id="s4", ip_address="198.18.7.10"),
            FixedIp(subnet_id="s6", ip_address="2001:db8:7::10"),
        ],
        allowed_address_pairs=[AllowedAddressPair(ip_address="198.18.7.200")],
    )
    return PortContext(backend, network, port, [v4, v6, unused], Config())


def test_names_fit_ifnamsiz_and_derive_from_ids() -> None:
    assert len(bridge_name(NET_ID)) <= 15 and bridge_name(NET_ID).startswith("pwbr3f0e4a0c")
    assert len(host_veth_name(PORT_ID)) <= 15 and host_veth_name(PORT_ID) == "pwv9a8b7c6daaaa"


def test_veth_bridge_vif() -> None:
    vif = build_vif(_ctx())
    assert isinstance(vif, VethBridge)
    assert vif.addresses == ("198.18.7.10/24", "2001:db8:7::10/64")
    assert vif.routes == (
        Route(destination="0.0.0.0/0", gateway="198.18.7.1"),
        Route(destination="::/0", gateway="2001:db8:7::1"),
        Route(destination="198.19.0.0/16", gateway="198.18.7.254"),
    )
    assert vif.mtu == 1400
    assert vif.dns_nameservers == ("198.18.7.53",)
    # Gateways of the subnets the port is on only; not of the unused subnet.
    assert vif.bridge_addresses == ("198.18.7.1/24", "2001:db8:7::1/64")
    assert vif.port_security.enabled
    assert vif.port_security.allowed == (
        AddressPair(ip="198.18.7.10", mac="0a:70:77:01:02:03"),
        AddressPair(ip="2001:db8:7::10", mac="0a:70:77:01:02:03"),
        AddressPair(ip="198.18.7.200", mac="0a:70:77:01:02:03"),
    )


def test_kind_choice() -> None:
    net = _ctx().network
    assert choose_vif_kind("embedded", net) == "veth_bridge"
    assert choose_vif_kind("ovn", net) == "veth_ovs"
    assert choose_vif_kind("embedded", net, "direct") == "sriov_vf"
    ovs_hint = net.model_copy(update={"datapath": "ovs"})
    assert choose_vif_kind("embedded", ovs_hint) == "veth_ovs"
    vif = build_vif(_ctx("ovn"))
    assert isinstance(vif, VethOvs) and vif.iface_id == PORT_ID
    with pytest.raises(InvalidInput, match="vhostuser"):
        build_vif(_ctx(datapath="vhostuser"))
