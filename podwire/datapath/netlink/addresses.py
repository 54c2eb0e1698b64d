"""Addresses over rtnetlink, and waiting until a link answers for its IPv6
addresses."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETADDR, RTM_GETMULTICAST, RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from podwire.datapath.netlink import encode
from podwire.datapath.netlink.constants import IFA_MULTICAST, LOOPBACK_IFINDEX
from podwire.datapath.netlink.replies import Address, parse_addr, walk_attrs
from podwire.datapath.netlink.request import NetlinkError, RtnlSocket


class AddressCalls(RtnlSocket):
    """Addresses on a link, and the IPv6 readiness of a link's addresses."""

    def add_address(
        self, index: int, cidr: str, *, nodad: bool = True, exist_ok: bool = False
    ) -> None:
        body = encode.add_address(index, cidr, nodad=nodad)
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        try:
            self._request_body(body, RTM_NEWADDR, flags, f"add address {cidr} to link {index}")
        except NetlinkError as exc:
            if not (exist_ok and exc.errno == errno.EEXIST):
                raise

    def addresses(self, index: int) -> list[Address]:
        out: list[Address] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            msg = ifaddrmsg()
            msg["family"] = family
            msg["index"] = index
            replies = self._request(msg, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, "list addresses")
            for data, mtype, a, b in replies:
                if mtype != RTM_NEWADDR:
                    continue
                owner, address = parse_addr(data, a, b)
                if owner == index:
                    out.append(address)
        return out

    def bring_up(
        self, index: int, addresses: list[str], *, nodad: bool = True, arp_notify: bool = False
    ) -> None:
        """``addresses`` on link ``index``, then the link and ``lo`` up, in one
        send (``_request_batch``): the container end's configuration in one
        round trip instead of one per address plus a lookup of ``lo``.
        ``lo`` is ifindex 1 in every network namespace (LOOPBACK_IFINDEX);
        setting it up when it is up changes nothing. ``arp_notify``: the
        link's net.ipv4.conf.<dev>.arp_notify set to 1 before it comes up,
        so that it announces its IPv4 addresses then (gratuitous ARP)."""
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        requests = [
            (
                encode.add_address(index, cidr, nodad=nodad),
                RTM_NEWADDR,
                flags,
                f"add address {cidr} to link {index}",
            )
            for cidr in addresses
        ]
        if arp_notify:
            conf = encode.set_ipv4_conf(index, {encode.IPV4_DEVCONF_ARP_NOTIFY: 1})
            requests.append(
                (conf, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, f"set arp_notify on link {index}")
            )
        for link in (index, LOOPBACK_IFINDEX):
            up = encode.set_link(link, up=True)
            requests.append((up, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, f"set link {link} up"))
        self._request_batch(requests)

    def multicast_groups(self, index: int) -> set[str]:
        """IPv6 multicast groups ``index`` has joined (RTM_GETMULTICAST)."""
        replies = self._request_body(
            encode.dump_addresses(socket.AF_INET6, index),
            RTM_GETMULTICAST,
            NLM_F_REQUEST | NLM_F_DUMP,
            "list multicast groups",
        )
        groups: set[str] = set()
        for data, _mtype, a, b in replies:
            owner = struct.unpack_from("I", data, a + 4)[0]
            if owner != index:
                continue
            for t, x, y in walk_attrs(data, a + 8, b):
                if t == IFA_MULTICAST:
                    groups.add(socket.inet_ntop(socket.AF_INET6, bytes(data[x:y])))
        return groups

    def wait_ipv6_ready(self, index: int, addresses: list[str], timeout: float = 1.0) -> bool:
        """Wait until the link has joined the solicited-node group of each
        IPv6 address, i.e. it answers neighbour solicitations for them.

        The kernel joins those groups from its addrconf work queue, even for
        IFA_F_NODAD addresses, so right after "up" a neighbour's first
        solicitation may find the group not joined yet and wait a whole
        retransmit (1 s) for the next. Returns False on timeout."""
        wanted = {solicited_node(cidr) for cidr in addresses if ":" in cidr}
        if not wanted:
            return True
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while True:
            if wanted <= self.multicast_groups(index):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


def solicited_node(cidr: str) -> str:
    """ff02::1:ffXX:XXXX for an IPv6 address (RFC 4291 2.7.1)."""
    low = int(ipaddress.IPv6Interface(cidr).ip) & 0xFFFFFF
    return str(ipaddress.IPv6Address((0xFF02 << 112) | (0x1FF << 24) | low))
