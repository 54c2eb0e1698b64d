"""The hand-packed request bodies (podwire.datapath.netlink.encode) against
pyroute2's encoding of the same requests, built as the wrapper built them
before: byte for byte, header aside. Pure logic: no kernel needed."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from podwire.datapath.netlink import encode
from podwire.datapath.netlink.constants import (
    IFA_F_NODAD,
    IFF_UP,
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    RTN_UNICAST,
    RTPROT_STATIC,
)


def body(msg: Any) -> bytes:
    msg.encode()
    return bytes(msg.data[16:])


def pyroute2_link(name: str | None, index: int | None) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index or 0
    if name is not None:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    return body(msg)


def pyroute2_set_link(index: int, **kw: Any) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    if kw.get("up") is not None:
        msg["flags"] = IFF_UP if kw["up"] else 0
        msg["change"] = IFF_UP
    attrs: list[tuple[str, Any]] = []
    if kw.get("name") is not None:
        attrs.append(("IFLA_IFNAME", kw["name"]))
    if kw.get("mac") is not None:
        attrs.append(("IFLA_ADDRESS", kw["mac"]))
    if kw.get("mtu") is not None:
        attrs.append(("IFLA_MTU", kw["mtu"]))
    if kw.get("master") is not None:
        attrs.append(("IFLA_MASTER", kw["master"]))
    if kw.get("netns_fd") is not None:
        attrs.append(("IFLA_NET_NS_FD", kw["netns_fd"]))
    msg["attrs"] = attrs
    return body(msg)


def pyroute2_veth(
    name: str,
    peer: str,
    *,
    mtu: int,
    up: bool,
    master: int | None,
    peer_mac: str | None,
    fd: int | None,
) -> bytes:
    peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer), ("IFLA_MTU", mtu)]
    if peer_mac:
        peer_attrs.append(("IFLA_ADDRESS", peer_mac))
    if fd is not None:
        peer_attrs.append(("IFLA_NET_NS_FD", fd))
    msg = ifinfmsg()
    if up:
        msg["flags"] = IFF_UP
        msg["change"] = IFF_UP
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu)]
    if master is not None:
        attrs.append(("IFLA_MASTER", master))
    attrs.append(
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
                ]
            },
        )
    )
    msg["attrs"] = attrs
    return body(msg)


def pyroute2_address(index: int, cidr: str, nodad: bool) -> bytes:
    import ipaddress

    iface = ipaddress.ip_interface(cidr)
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    msg = ifaddrmsg()
    msg["family"] = family
    msg["prefixlen"] = iface.network.prefixlen
    msg["index"] = index
    ip = str(iface.ip)
    attrs: list[tuple[str, Any]] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    if nodad and family == socket.AF_INET6:
        msg["flags"] = IFA_F_NODAD
        attrs.append(("IFA_FLAGS", IFA_F_NODAD))
    msg["attrs"] = attrs
    return body(msg)


def pyroute2_route(index: int, destination: str, gateway: str | None) -> bytes:
    import ipaddress

    net = ipaddress.ip_network(destination, strict=False)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    msg = rtmsg()
    msg["family"] = family
    msg["dst_len"] = net.prefixlen
    msg["table"] = RT_TABLE_MAIN
    msg["proto"] = RTPROT_STATIC
    msg["type"] = RTN_UNICAST
    msg["scope"] = RT_SCOPE_LINK if gateway is None and family == socket.AF_INET else 0
    attrs: list[tuple[str, Any]] = [("RTA_OIF", index)]
    if net.prefixlen:
        attrs.append(("RTA_DST", str(net.network_address)))
    if gateway:
        attrs.append(("RTA_GATEWAY", gateway))
    msg["attrs"] = attrs
    return body(msg)


@pytest.mark.parametrize(
    ("name", "index"), [("pwk-a", None), (None, 7), ("eth0", 3), ("fifteen-chars-x", None)]
)
def test_get_and_delete_link(name: str | None, index: int | None) -> None:
    assert encode.get_link(name, index) == pyroute2_link(name, index)
    if name is not None:
        assert encode.delete_link(name) == pyroute2_link(name, None)


@pytest.mark.parametrize(
    "kw",
    [
        {"up": True},
        {"up": False},
        {"mac": "02:00:c6:12:00:05"},
        {"up": True, "name": "eth1", "mtu": 9000, "master": 12, "netns_fd": 9},
        {"name": "abc"},
    ],
)
def test_set_link(kw: dict[str, Any]) -> None:
    assert encode.set_link(4, **kw) == pyroute2_set_link(4, **kw)


@pytest.mark.parametrize(
    ("up", "master", "mac", "fd"),
    [
        (True, 5, "02:00:c6:12:00:09", 11),
        (False, None, None, None),
        (True, None, "0a:bc:de:f0:12:34", None),
    ],
)
def test_add_veth(up: bool, master: int | None, mac: str | None, fd: int | None) -> None:
    ours = encode.add_veth(
        "pwk-h1", "eth0", mtu=1450, up=up, master=master, peer_mac=mac, peer_netns_fd=fd
    )
    theirs = pyroute2_veth("pwk-h1", "eth0", mtu=1450, up=up, master=master, peer_mac=mac, fd=fd)
    assert ours == theirs


@pytest.mark.parametrize(
    "cidr", ["198.18.0.5/24", "198.19.255.254/15", "2001:db8::5/64", "2001:db8:1::1/128"]
)
@pytest.mark.parametrize("nodad", [True, False])
def test_add_address(cidr: str, nodad: bool) -> None:
    assert encode.add_address(6, cidr, nodad=nodad) == pyroute2_address(6, cidr, nodad)


@pytest.mark.parametrize(
    ("destination", "gateway"),
    [
        ("0.0.0.0/0", "198.18.0.1"),
        ("198.18.4.0/24", None),
        ("198.18.4.9/32", None),
        ("::/0", "2001:db8::1"),
        ("2001:db8:5::/48", None),
    ],
)
def test_add_route(destination: str, gateway: str | None) -> None:
    assert encode.add_route(3, destination, gateway) == pyroute2_route(3, destination, gateway)


def test_set_ipv4_conf_nests_the_settings_under_af_spec_af_inet() -> None:
    """The kernel's layout for setting per-device IPv4 settings (no pyroute2
    counterpart: it encodes IFLA_INET_CONF as the dump's flat array)."""
    got = encode.set_ipv4_conf(7, {encode.IPV4_DEVCONF_ARP_NOTIFY: 1})
    setting = (8).to_bytes(2, "little") + (22).to_bytes(2, "little") + (1).to_bytes(4, "little")
    inet_conf = (12).to_bytes(2, "little") + (1).to_bytes(2, "little") + setting
    af_inet = (16).to_bytes(2, "little") + (socket.AF_INET).to_bytes(2, "little") + inet_conf
    af_spec = (20).to_bytes(2, "little") + (26).to_bytes(2, "little") + af_inet
    assert got == encode.ifinfo(7) + af_spec
