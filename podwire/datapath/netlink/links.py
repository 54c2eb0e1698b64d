"""Links over rtnetlink: bridges, veth pairs, their settings and carrier."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from podwire.datapath.netlink import encode
from podwire.datapath.netlink.constants import ETHTOOL_GLINK, IFF_UP, SIOCETHTOOL
from podwire.datapath.netlink.netns import Netns
from podwire.datapath.netlink.replies import Link, mac_bytes, parse_link
from podwire.datapath.netlink.request import NetlinkError, RtnlSocket

# BRIDGE_VLAN_INFO_* flags (linux/if_bridge.h)
_VLAN_PVID = 0x2
_VLAN_UNTAGGED = 0x4


class LinkCalls(RtnlSocket):
    """Links: look up, list, create (bridge, veth pair), change, delete."""

    def sync_carrier(self, ifname: str) -> bool:
        """Settle ``ifname``'s pending carrier change now and return it.

        A veth gets carrier when both ends are up, but the kernel hands that
        event to the linkwatch work queue; until it runs, a bridge port stays
        disabled and IPv6 considers the link not ready, so the first packets
        after plug can be lost (seen: 2 in 25 first pings on a busy host).
        ETHTOOL_GLINK runs the device's pending linkwatch event synchronously
        (ethtool_op_get_link -> __linkwatch_sync_dev)."""
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GLINK, 0), 8)
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)) + b"\0" * 16
        fcntl.ioctl(self.inet.fileno(), SIOCETHTOOL, ifreq)
        return bool(struct.unpack("II", value.raw)[1])

    def link(self, name: str | None = None, index: int | None = None) -> Link | None:
        try:
            replies = self._request_body(
                encode.get_link(name, index),
                RTM_GETLINK,
                NLM_F_REQUEST | NLM_F_ACK,
                f"get link {name or index}",
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        for data, mtype, a, b in replies:
            if mtype == RTM_NEWLINK:
                return parse_link(data, a, b)
        return None

    def links(self) -> list[Link]:
        msg = ifinfmsg()
        replies = self._request(msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, "list links")
        return [parse_link(d, a, b) for d, t, a, b in replies if t == RTM_NEWLINK]

    def add_bridge(
        self, name: str, *, mtu: int, mac: str | None = None, vlan_filtering: bool = False
    ) -> None:
        """A bridge, up, without STP. With ``vlan_filtering`` it forwards a
        frame only between ports holding its VLAN (``bridge_vlan``), and new
        ports get no VLAN at all (default pvid 0) until given one."""
        data: list[tuple[str, Any]] = [("IFLA_BR_STP_STATE", 0)]
        if vlan_filtering:
            data += [("IFLA_BR_VLAN_FILTERING", 1), ("IFLA_BR_VLAN_DEFAULT_PVID", 0)]
        msg = ifinfmsg()
        msg["flags"] = IFF_UP
        msg["change"] = IFF_UP
        attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu)]
        if mac:
            # A bridge with a MAC set by hand keeps it; otherwise it takes the
            # lowest port MAC, changing as ports come and go.
            attrs.append(("IFLA_ADDRESS", mac_bytes(mac)))
        msg["attrs"] = [
            *attrs,
            (
                "IFLA_LINKINFO",
                {
                    "attrs": [
                        ("IFLA_INFO_KIND", "bridge"),
                        ("IFLA_INFO_DATA", {"attrs": data}),
                    ]
                },
            ),
        ]
        self._request(
            msg,
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            f"create bridge {name}",
        )

    def add_veth(
        self,
        name: str,
        peer_name: str,
        *,
        mtu: int,
        up: bool = False,
        master: int | None = None,
        peer_mac: str | None = None,
        peer_netns: Netns | None = None,
    ) -> None:
        """Create a veth pair in one request. The peer is created directly in
        ``peer_netns`` when given (the kernel checks its name there), so the
        container end never exists in the host namespace."""
        body = encode.add_veth(
            name,
            peer_name,
            mtu=mtu,
            up=up,
            master=master,
            peer_mac=peer_mac,
            peer_netns_fd=peer_netns.fd if peer_netns is not None else None,
        )
        self._request_body(
            body,
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            f"create veth {name} with peer {peer_name}",
        )

    def add_sublink(
        self,
        name: str,
        kind: str,
        parent: int,
        *,
        data: list[tuple[str, Any]],
        mtu: int,
        mac: str | None = None,
        netns: Netns | None = None,
    ) -> None:
        """Create a link on ``parent`` (macvlan, ipvlan, vlan: ``kind`` with
        its IFLA_INFO_DATA ``data``), down. With ``netns`` it is created
        directly there (the kernel checks ``name`` there), never in the host
        namespace."""
        attrs: list[tuple[str, Any]] = [
            ("IFLA_IFNAME", name),
            ("IFLA_MTU", mtu),
            ("IFLA_LINK", parent),
        ]
        if mac:
            attrs.append(("IFLA_ADDRESS", mac_bytes(mac)))
        if netns is not None:
            attrs.append(("IFLA_NET_NS_FD", netns.fd))
        attrs.append(
            (
                "IFLA_LINKINFO",
                {"attrs": [("IFLA_INFO_KIND", kind), ("IFLA_INFO_DATA", {"attrs": data})]},
            )
        )
        msg = ifinfmsg()
        msg["attrs"] = attrs
        self._request(
            msg,
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            f"create {kind} {name} on link {parent}",
        )

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        name: str | None = None,
        mac: str | None = None,
        mtu: int | None = None,
        master: int | None = None,
        netns: Netns | None = None,
    ) -> None:
        body = encode.set_link(
            index,
            up=up,
            name=name,
            mac=mac,
            mtu=mtu,
            master=master,
            netns_fd=netns.fd if netns is not None else None,
        )
        self._request_body(body, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, f"set link {index}")

    def bridge_vlan(
        self, index: int, vid: int, *, add: bool = True, pvid: bool = False, untagged: bool = False
    ) -> None:
        """Add (or delete) VLAN ``vid`` on bridge port ``index``: ``pvid``
        makes untagged ingress frames that VLAN, ``untagged`` strips the tag
        on egress (``bridge vlan add dev X vid N [pvid] [untagged]``).
        Deleting a VLAN the port lacks is success."""
        flags = (_VLAN_PVID if pvid else 0) | (_VLAN_UNTAGGED if untagged else 0)
        msg = ifinfmsg()
        msg["family"] = socket.AF_BRIDGE
        msg["index"] = index
        msg["attrs"] = [
            ("IFLA_AF_SPEC", {"attrs": [("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid})]})
        ]
        verb = "add" if add else "delete"
        try:
            self._request(
                msg,
                RTM_SETLINK if add else RTM_DELLINK,
                NLM_F_REQUEST | NLM_F_ACK,
                f"{verb} VLAN {vid} on link {index}",
            )
        except NetlinkError as exc:
            if add or exc.errno not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                raise

    def delete_link(self, name: str) -> bool:
        """Delete a link by name; False when there was none."""
        try:
            self._request_body(
                encode.delete_link(name),
                RTM_DELLINK,
                NLM_F_REQUEST | NLM_F_ACK,
                f"delete link {name}",
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True
