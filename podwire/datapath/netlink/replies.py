"""Parsed replies: the few attributes podwire reads, by a tiny TLV walker
(pyroute2's full decode of one link costs ~160 us)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from podwire.datapath.netlink.constants import (
    IFA_ADDRESS,
    IFA_F_TENTATIVE,
    IFA_FLAGS,
    IFA_LOCAL,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    NLM_F_ACK_TLVS,
    NLMSGERR_ATTR_MSG,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
)


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str | None
    mtu: int | None
    master: int | None
    up: bool
    kind: str | None


@dataclass(frozen=True)
class Address:
    cidr: str  # "198.18.0.5/24"
    flags: int

    @property
    def tentative(self) -> bool:
        return bool(self.flags & IFA_F_TENTATIVE)


@dataclass(frozen=True)
class RouteEntry:
    destination: str  # "0.0.0.0/0", "198.18.0.0/24"
    gateway: str | None
    oif: int | None
    table: int
    scope: int
    protocol: int


def walk_attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, payload start, payload end) of the TLVs in data[start:end]."""
    pos = start
    while pos + 4 <= end:
        length, kind = struct.unpack_from("HH", data, pos)
        if length < 4:
            return
        yield kind & 0x3FFF, pos + 4, pos + length
        pos += (length + 3) & ~3


def cstr(data: bytes, a: int, b: int) -> str:
    return data[a:b].split(b"\0", 1)[0].decode()


def parse_link(data: bytes, start: int, end: int) -> Link:
    _family, _type, index, flags, _change = struct.unpack_from("BxHiII", data, start)
    name = ""
    mac = mtu = master = kind = None
    for t, a, b in walk_attrs(data, start + 16, end):
        if t == IFLA_IFNAME:
            name = cstr(data, a, b)
        elif t == IFLA_ADDRESS:
            mac = ":".join(f"{x:02x}" for x in data[a:b])
        elif t == IFLA_MTU:
            mtu = struct.unpack_from("I", data, a)[0]
        elif t == IFLA_MASTER:
            master = struct.unpack_from("I", data, a)[0] or None
        elif t == IFLA_LINKINFO:
            for t2, a2, b2 in walk_attrs(data, a, b):
                if t2 == IFLA_INFO_KIND:
                    kind = cstr(data, a2, b2)
    return Link(index, name, mac, mtu, master, bool(flags & IFF_UP), kind)


def parse_addr(data: bytes, start: int, end: int) -> tuple[int, Address]:
    family, prefixlen, flags8, _scope, index = struct.unpack_from("BBBBI", data, start)
    local = address = None
    flags = flags8
    for t, a, b in walk_attrs(data, start + 8, end):
        if t == IFA_LOCAL:
            local = bytes(data[a:b])
        elif t == IFA_ADDRESS:
            address = bytes(data[a:b])
        elif t == IFA_FLAGS:
            flags = struct.unpack_from("I", data, a)[0]
    raw = local if local is not None else address
    ip = socket.inet_ntop(family, raw or b"")
    return index, Address(f"{ip}/{prefixlen}", flags)


def parse_route(data: bytes, start: int, end: int) -> RouteEntry:
    family, dst_len, _src_len, _tos, table, proto, scope, _type, _flags = struct.unpack_from(
        "BBBBBBBBI", data, start
    )
    dst = gateway = None
    oif = None
    for t, a, b in walk_attrs(data, start + 12, end):
        if t == RTA_DST:
            dst = socket.inet_ntop(family, bytes(data[a:b]))
        elif t == RTA_GATEWAY:
            gateway = socket.inet_ntop(family, bytes(data[a:b]))
        elif t == RTA_OIF:
            oif = struct.unpack_from("I", data, a)[0]
        elif t == RTA_TABLE:
            table = struct.unpack_from("I", data, a)[0]
    if dst is None:
        dst = "0.0.0.0" if family == socket.AF_INET else "::"
    return RouteEntry(f"{dst}/{dst_len}", gateway, oif, table, scope, proto)


def mac_bytes(mac: str) -> str:
    # pyroute2's IFLA_ADDRESS encoder takes the text form.
    return mac.lower()


def ext_ack(data: bytes, pos: int, flags: int) -> str:
    """The kernel's extended-ack text of an NLMSG_ERROR message, if any."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # nlmsghdr(16) + error(4) + the capped original nlmsghdr(16), then TLVs.
    length = struct.unpack_from("I", data, pos)[0]
    for t, a, b in walk_attrs(data, pos + 36, pos + length):
        if t == NLMSGERR_ATTR_MSG:
            return cstr(data, a, b)
    return ""
