"""The kind registry and the two host kinds' builders: pure logic (the
decision of the kind, VIF fields from a port, its network and subnets)."""

from __future__ import annotations

import pytest

from podwire.config import Config
from podwire.datapath.vif import AddressPair, Route, VethBridge, VethOvs, VifBase
from podwire.errors import InvalidInput
from podwire.kinds import registry
from podwire.kinds.base import BuildContext, KindChoice, KindEnv, KindPlugin
from podwire.kinds.veth_bridge import bridge_name, host_veth_name
from podwire.model import AllowedAddressPair, FixedIp, HostRoute, Network, Port, Subnet

NET_ID = "3f0e4a0c-1111-4222-8333-944455556666"
PORT_ID = "9a8b7c6d-aaaa-4bbb-8ccc-ddddeeeeffff"


def _ctx(default_route: bool = True, **net: object) -> BuildContext:
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
    return BuildContext(
        network=network,
        port=port,
        subnets=[v4, v6, unused],
        config=Config(),
        ifname="eth0",
        default_route=default_route,
    )


def _plugin(kind: str) -> KindPlugin:
    env = KindEnv(Config(), None, None, lambda _network_id: False)  # type: ignore[arg-type]
    return registry.plugin_class(kind)(env)


def build_vif(ctx: BuildContext, vif_type: str = "unbound") -> VifBase:
    port = ctx.port.model_copy(
        update={"binding": ctx.port.binding.model_copy(update={"vif_type": vif_type})}
    )
    kind = registry.decide(KindChoice.of(port, ctx.network, "host"))
    return _plugin(kind).build(ctx)


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


def test_kind_decision() -> None:
    net = _ctx().network
    assert registry.decide(KindChoice(datapath_hint=None)) == "veth_bridge"
    # The backend's answer (OVN's binding) decides, in podwire's or Neutron's word.
    assert registry.decide(KindChoice(vif_type="veth_ovs")) == "veth_ovs"
    assert registry.decide(KindChoice(vif_type="ovs")) == "veth_ovs"
    # The network's hint wins over the backend's answer.
    assert registry.decide(KindChoice(vif_type="ovs", datapath_hint="bridge")) == "veth_bridge"
    ovs_hint = net.model_copy(update={"datapath": "ovs"})
    assert isinstance(build_vif(_ctx(datapath="ovs")), VethOvs)
    vif = build_vif(_ctx(), vif_type="veth_ovs")
    assert isinstance(vif, VethOvs) and vif.iface_id == PORT_ID
    assert vif.ovs_db == Config().ovn.ovs_db
    # The vhostuser hint and binding have their kind (tests/vhostuser).
    assert registry.decide(KindChoice(datapath_hint="vhostuser")) == "vhostuser"
    assert registry.decide(KindChoice(vif_type="vhostuser")) == "vhostuser"
    # Kinds this build has no plugin for are named in the error.
    # vnic_type direct is SR-IOV's (kind sriov); one no kind serves is named.
    direct = _ctx().port.model_copy(update={"vnic_type": "direct"})
    assert registry.decide(KindChoice.of(direct, net, "host")) == "sriov"
    with pytest.raises(InvalidInput, match="baremetal"):
        registry.decide(
            KindChoice.of(
                _ctx().port.model_copy(update={"vnic_type": "baremetal"}),
                ovs_hint.model_copy(update={"datapath": None}),
                "host",
            )
        )
    # Inside a VM: ipvlan by default, the others by the network's hint.
    assert registry.decide(KindChoice(node_mode="nested")) == "ipvlan_nested"
    assert registry.decide(KindChoice(node_mode="nested", datapath_hint="macvlan")) == (
        "macvlan_nested"
    )
    assert registry.decide(KindChoice(node_mode="nested", datapath_hint="vlan")) == "vlan_nested"
    # A hint no kind serves is named (SR-IOV's "sriov" has a kind now, in
    # either node mode: a VM may have VFs passed through).
    assert registry.decide(KindChoice(node_mode="nested", datapath_hint="sriov")) == "sriov"
    with pytest.raises(InvalidInput, match="infiniband"):
        registry.decide(KindChoice(node_mode="nested", datapath_hint="infiniband"))
    # The node's own default for networks without a hint.
    assert registry.decide(KindChoice(node_mode="nested", default_kind="macvlan_nested")) == (
        "macvlan_nested"
    )
    with pytest.raises(InvalidInput, match="default_kind"):
        registry.decide(KindChoice(node_mode="host", default_kind="macvlan_nested"))
    # A nested hint does not bind a host's own containers on that network.
    assert registry.decide(KindChoice(node_mode="host", datapath_hint="macvlan")) == "veth_bridge"


def test_not_the_default_route_owner_gets_no_default_routes_and_no_dns() -> None:
    vif = build_vif(_ctx(default_route=False))
    assert vif.routes == (Route(destination="198.19.0.0/16", gateway="198.18.7.254"),)
    assert vif.dns_nameservers == ()
    assert vif.addresses == ("198.18.7.10/24", "2001:db8:7::10/64")


def test_records_read_back_as_their_kinds_class() -> None:
    vif = build_vif(_ctx())
    again = registry.parse_vif(vif.model_dump(mode="json"))
    assert again == vif and type(again) is VethBridge
    with pytest.raises(InvalidInput, match="no VIF kind"):
        registry.parse_vif({**vif.model_dump(mode="json"), "kind": "nope"})


def test_registry_is_the_one_list() -> None:
    """Every registered kind's VIF class names it, and each hint a kind
    claims is a hint the model accepts."""
    from typing import get_args

    from podwire.model import DatapathHint

    for name in registry.KINDS:
        cls = registry.plugin_class(name)
        assert cls.name == name
        assert cls.vif_class.model_fields["kind"].default == name
        assert set(cls.datapath_hints) <= set(get_args(DatapathHint))
    # Test-only kinds exist only under fault injection.
    assert "faulty_bridge" not in registry.names() or registry.os.environ.get("PODWIRE_FAULTS")
