"""Port security's pure parts: the elements a VIF becomes, EUI-64."""

from __future__ import annotations

import pytest

from podwire.datapath.portsec import eui64_link_local, port_elements
from podwire.datapath.vif import AddressPair, PortSecurity
from podwire.errors import InvalidInput


def test_eui64_link_local():
    assert eui64_link_local("02:00:00:00:00:05") == "fe80::ff:fe00:5"
    assert eui64_link_local("52:54:00:12:34:56") == "fe80::5054:ff:fe12:3456"


def test_port_elements_split_exact_and_cidr():
    mac = "02:00:00:00:00:05"
    sec = PortSecurity(
        allowed=(
            AddressPair(ip="198.18.0.5", mac=mac),
            AddressPair(ip="2001:db8::5", mac=mac),
            AddressPair(ip="198.18.4.0/24", mac="02:00:00:00:00:06"),
        )
    )
    el = port_elements("pwv1", sec)
    assert el["secured"] == ['"pwv1"']
    assert el["macs"] == ['"pwv1" . 02:00:00:00:00:05', '"pwv1" . 02:00:00:00:00:06']
    assert '"pwv1" . 02:00:00:00:00:05 . 198.18.0.5' in el["src4"]
    assert '"pwv1" . 02:00:00:00:00:05 . 0.0.0.0' in el["src4"]
    assert el["net4"] == ['"pwv1" . 02:00:00:00:00:06 . 198.18.4.0/24']
    assert '"pwv1" . 02:00:00:00:00:05 . 2001:db8::5' in el["src6"]
    assert '"pwv1" . 02:00:00:00:00:05 . fe80::ff:fe00:5' in el["src6"]
    assert "net6" not in el


def test_no_pairs_means_secured_and_nothing_allowed():
    assert port_elements("pwv1", PortSecurity(allowed=())) == {"secured": ['"pwv1"']}


@pytest.mark.parametrize(
    ("ifname", "pair"),
    [
        ('pwv1" }; flush ruleset; {', AddressPair(ip="198.18.0.5", mac="02:00:00:00:00:05")),
        ("pwv1", AddressPair(ip="198.18.0.5; drop", mac="02:00:00:00:00:05")),
        ("pwv1", AddressPair(ip="198.18.0.5", mac="02:00:00:00:00:05 drop")),
    ],
)
def test_nothing_unchecked_reaches_nft(ifname, pair):
    with pytest.raises(InvalidInput):
        port_elements(ifname, PortSecurity(allowed=(pair,)))


def test_effective_security_always_includes_the_vifs_own_addresses():
    from podwire.datapath.veth_bridge import effective_security
    from podwire.datapath.vif import VethBridge

    vif = VethBridge(
        port_id="p",
        network_id="n",
        mac="02:00:00:00:00:0A",
        addresses=("198.18.0.10/24", "2001:db8::a/64"),
        port_security=PortSecurity(
            allowed=(AddressPair(ip="198.18.1.0/24", mac="02:00:00:00:00:0b"),)
        ),
        bridge="b",
        host_ifname="h",
    )
    allowed = effective_security(vif).allowed
    assert AddressPair(ip="198.18.0.10", mac="02:00:00:00:00:0a") in allowed
    assert AddressPair(ip="2001:db8::a", mac="02:00:00:00:00:0a") in allowed
    assert AddressPair(ip="198.18.1.0/24", mac="02:00:00:00:00:0b") in allowed
    off = vif.model_copy(update={"port_security": PortSecurity(enabled=False)})
    assert not effective_security(off).enabled
