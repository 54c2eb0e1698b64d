"""The one small pyroute2 wrapper: rtnetlink in any network namespace.

Why not pyroute2's ``IPRoute``/``IPRoute(netns=...)``: in pyroute2 0.9 the
sync API runs an asyncio loop per thread (about 0.5 ms per request on this
machine) and ``netns=`` forks a child process to open each socket (11-17 ms).
An ADD must cost a few ms in all, so this module keeps pyroute2's message
classes (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``) to *encode* requests, and
does the socket I/O itself: one blocking ``AF_NETLINK`` socket per call
(10 us to open), a request, and a loop that reads replies up to the ACK.
Replies are parsed by a tiny TLV walker that reads only the attributes
podwire needs (pyroute2's full decode of one link is ~160 us).

Sockets in another namespace are opened without ``setns()`` on a serving
thread: a short-lived thread enters the namespace, creates the socket and
exits (a socket stays in the namespace it was created in, whichever thread
uses it later). The thread never serves anything else and never goes back,
so a failed return to the host namespace cannot poison a worker.

Every socket here belongs to one call (one ``Rtnl``): nothing is shared
between threads, so drivers may call this concurrently.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETMULTICAST,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

IFF_UP = 0x1
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

# Attribute numbers the TLV walker reads (linux/if_link.h, if_addr.h, rtnetlink.h).
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_MULTICAST = 7
IFA_FLAGS = 8
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15

SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0A
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17

_libc = ctypes.CDLL(None, use_errno=True)
_seq = itertools.count(1)
_seq_lock = threading.Lock()


def _next_seq() -> int:
    with _seq_lock:
        return next(_seq) & 0x7FFFFFFF or 1


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` and its extended-ack text."""

    def __init__(self, code: int, request: str, kernel_message: str = "") -> None:
        text = os.strerror(code)
        if kernel_message:
            text = f"{text} ({kernel_message})"
        super().__init__(code, f"{request}: {text}")
        self.request = request
        self.kernel_message = kernel_message


class NetnsError(OSError):
    """A namespace path that does not exist or is not a network namespace."""


# --------------------------------------------------------------------------
# Namespaces


class Netns:
    """An open network namespace: a file descriptor on its path.

    Holding the fd keeps the namespace alive while a plug works in it, even
    if someone deletes its bind mount meanwhile.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise NetnsError(errno.ENOENT, f"network namespace {path} does not exist") from exc
        except OSError as exc:
            raise NetnsError(exc.errno, f"cannot open network namespace {path}: {exc}") from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def run_in_netns(netns: Netns, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread that has entered ``netns``.

    The thread exists only for this call and ends inside the namespace: it
    is the dedicated worker ARCHITECTURE.md asks for, so no thread that
    serves other work ever changes namespace. Keep ``fn`` short (open a
    socket, write a sysctl): it is not for running long work.
    """
    result: list[Any] = []
    failure: list[BaseException] = []

    def enter_and_run() -> None:
        try:
            if _libc.setns(netns.fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                if code == errno.EINVAL:
                    raise NetnsError(code, f"{netns.path} is not a network namespace")
                raise NetnsError(code, f"cannot enter {netns.path}: {os.strerror(code)}")
            result.append(fn())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=enter_and_run, name="podwire-netns", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    rt = _rtnl_socket()
    try:
        return rt, socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except BaseException:
        rt.close()
        raise


def _rtnl_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        # Errors need not echo our whole request back.
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        # Let the kernel filter dumps (addresses/routes of one interface).
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


# --------------------------------------------------------------------------
# Parsed replies


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


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, payload start, payload end) of the TLVs in data[start:end]."""
    pos = start
    while pos + 4 <= end:
        length, kind = struct.unpack_from("HH", data, pos)
        if length < 4:
            return
        yield kind & 0x3FFF, pos + 4, pos + length
        pos += (length + 3) & ~3


def _cstr(data: bytes, a: int, b: int) -> str:
    return data[a:b].split(b"\0", 1)[0].decode()


def _parse_link(data: bytes, start: int, end: int) -> Link:
    _family, _type, index, flags, _change = struct.unpack_from("BxHiII", data, start)
    name = ""
    mac = mtu = master = kind = None
    for t, a, b in _attrs(data, start + 16, end):
        if t == IFLA_IFNAME:
            name = _cstr(data, a, b)
        elif t == IFLA_ADDRESS:
            mac = ":".join(f"{x:02x}" for x in data[a:b])
        elif t == IFLA_MTU:
            mtu = struct.unpack_from("I", data, a)[0]
        elif t == IFLA_MASTER:
            master = struct.unpack_from("I", data, a)[0] or None
        elif t == IFLA_LINKINFO:
            for t2, a2, b2 in _attrs(data, a, b):
                if t2 == IFLA_INFO_KIND:
                    kind = _cstr(data, a2, b2)
    return Link(index, name, mac, mtu, master, bool(flags & IFF_UP), kind)


def _parse_addr(data: bytes, start: int, end: int) -> tuple[int, Address]:
    family, prefixlen, flags8, _scope, index = struct.unpack_from("BBBBI", data, start)
    local = address = None
    flags = flags8
    for t, a, b in _attrs(data, start + 8, end):
        if t == IFA_LOCAL:
            local = bytes(data[a:b])
        elif t == IFA_ADDRESS:
            address = bytes(data[a:b])
        elif t == IFA_FLAGS:
            flags = struct.unpack_from("I", data, a)[0]
    raw = local if local is not None else address
    ip = socket.inet_ntop(family, raw or b"")
    return index, Address(f"{ip}/{prefixlen}", flags)


def _parse_route(data: bytes, start: int, end: int) -> RouteEntry:
    family, dst_len, _src_len, _tos, table, proto, scope, _type, _flags = struct.unpack_from(
        "BBBBBBBBI", data, start
    )
    dst = gateway = None
    oif = None
    for t, a, b in _attrs(data, start + 12, end):
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


def _mac_bytes(mac: str) -> str:
    # pyroute2's IFLA_ADDRESS encoder takes the text form.
    return mac.lower()


# --------------------------------------------------------------------------
# The request/response loop


class Rtnl:
    """One rtnetlink socket in one namespace, for one caller at a time,
    with an inet socket beside it for the ioctls netlink lacks."""

    def __init__(self, sock: socket.socket, inet: socket.socket, where: str) -> None:
        self.sock = sock
        self.inet = inet
        self.where = where  # for messages: "host" or the netns path

    @classmethod
    def open(cls, netns: Netns | None = None, sysctls: Mapping[str, str] | None = None) -> Rtnl:
        """Sockets in ``netns`` (the host's when None). ``sysctls`` are written
        there first, on the same short-lived thread, so setting them costs no
        second entry into the namespace (see write_sysctls)."""

        def enter() -> tuple[socket.socket, socket.socket]:
            if sysctls:
                write_sysctls(sysctls)
            return _socket_pair()

        if netns is None:
            return cls(*enter(), "host")
        return cls(*run_in_netns(netns, enter), netns.path)

    def close(self) -> None:
        self.sock.close()
        self.inet.close()

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

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(
        self, msg: Any, msg_type: int, flags: int, what: str
    ) -> list[tuple[bytes, int, int, int]]:
        """Send one request; return its reply messages as (buffer, type,
        payload start, payload end). Raises NetlinkError on a NACK."""
        seq = _next_seq()
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self.sock.send(msg.data)
        replies: list[tuple[bytes, int, int, int]] = []
        while True:
            data = self.sock.recv(65536)
            pos = 0
            while pos + 16 <= len(data):
                length, mtype, mflags, mseq, _pid = struct.unpack_from("IHHII", data, pos)
                if length < 16:
                    break
                end = pos + length
                if mseq == seq:
                    if mtype == NLMSG_ERROR:
                        code = -struct.unpack_from("i", data, pos + 16)[0]
                        if code == 0:
                            return replies
                        raise NetlinkError(
                            code, f"{what} in {self.where}", _ext_ack(data, pos, mflags)
                        )
                    if mtype == NLMSG_DONE:
                        return replies
                    replies.append((data, mtype, pos + 16, end))
                pos += (length + 3) & ~3
            if not flags & (NLM_F_ACK | NLM_F_DUMP):
                return replies

    # -- links --------------------------------------------------------------

    def link(self, name: str | None = None, index: int | None = None) -> Link | None:
        msg = ifinfmsg()
        msg["index"] = index or 0
        if name is not None:
            msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            replies = self._request(
                msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, f"get link {name or index}"
            )
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        for data, mtype, a, b in replies:
            if mtype == RTM_NEWLINK:
                return _parse_link(data, a, b)
        return None

    def links(self) -> list[Link]:
        msg = ifinfmsg()
        replies = self._request(msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, "list links")
        return [_parse_link(d, a, b) for d, t, a, b in replies if t == RTM_NEWLINK]

    def add_bridge(self, name: str, *, mtu: int, mac: str | None = None) -> None:
        msg = ifinfmsg()
        msg["flags"] = IFF_UP
        msg["change"] = IFF_UP
        attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu)]
        if mac:
            # A bridge with a MAC set by hand keeps it; otherwise it takes the
            # lowest port MAC, changing as ports come and go.
            attrs.append(("IFLA_ADDRESS", _mac_bytes(mac)))
        msg["attrs"] = [
            *attrs,
            (
                "IFLA_LINKINFO",
                {
                    "attrs": [
                        ("IFLA_INFO_KIND", "bridge"),
                        ("IFLA_INFO_DATA", {"attrs": [("IFLA_BR_STP_STATE", 0)]}),
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
        peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer_name), ("IFLA_MTU", mtu)]
        if peer_mac:
            peer_attrs.append(("IFLA_ADDRESS", _mac_bytes(peer_mac)))
        if peer_netns is not None:
            peer_attrs.append(("IFLA_NET_NS_FD", peer_netns.fd))
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
                        (
                            "IFLA_INFO_DATA",
                            {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]},
                        ),
                    ]
                },
            )
        )
        msg["attrs"] = attrs
        self._request(
            msg,
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            f"create veth {name} with peer {peer_name}",
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
        msg = ifinfmsg()
        msg["index"] = index
        if up is not None:
            msg["flags"] = IFF_UP if up else 0
            msg["change"] = IFF_UP
        attrs: list[tuple[str, Any]] = []
        if name is not None:
            attrs.append(("IFLA_IFNAME", name))
        if mac is not None:
            attrs.append(("IFLA_ADDRESS", _mac_bytes(mac)))
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if netns is not None:
            attrs.append(("IFLA_NET_NS_FD", netns.fd))
        msg["attrs"] = attrs
        self._request(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, f"set link {index}")

    def delete_link(self, name: str) -> bool:
        """Delete a link by name; False when there was none."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            self._request(msg, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, f"delete link {name}")
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # -- addresses ------------------------------------------------------------

    def add_address(
        self, index: int, cidr: str, *, nodad: bool = True, exist_ok: bool = False
    ) -> None:
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
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        try:
            self._request(msg, RTM_NEWADDR, flags, f"add address {cidr} to link {index}")
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
                owner, address = _parse_addr(data, a, b)
                if owner == index:
                    out.append(address)
        return out

    def multicast_groups(self, index: int) -> set[str]:
        """IPv6 multicast groups ``index`` has joined (RTM_GETMULTICAST)."""
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET6
        msg["index"] = index
        replies = self._request(
            msg, RTM_GETMULTICAST, NLM_F_REQUEST | NLM_F_DUMP, "list multicast groups"
        )
        groups: set[str] = set()
        for data, _mtype, a, b in replies:
            owner = struct.unpack_from("I", data, a + 4)[0]
            if owner != index:
                continue
            for t, x, y in _attrs(data, a + 8, b):
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

    # -- routes ---------------------------------------------------------------

    def add_route(self, index: int, destination: str, gateway: str | None) -> None:
        net = ipaddress.ip_network(destination, strict=False)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        msg = rtmsg()
        msg["family"] = family
        msg["dst_len"] = net.prefixlen
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["type"] = RTN_UNICAST
        # An IPv4 route without a gateway is on-link (a host route to a
        # neighbour that is not in the subnet); IPv6 routes are universe.
        msg["scope"] = RT_SCOPE_LINK if gateway is None and family == socket.AF_INET else 0
        attrs: list[tuple[str, Any]] = [("RTA_OIF", index)]
        if net.prefixlen:
            attrs.append(("RTA_DST", str(net.network_address)))
        if gateway:
            attrs.append(("RTA_GATEWAY", gateway))
        msg["attrs"] = attrs
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        self._request(msg, RTM_NEWROUTE, flags, f"add route {destination} via {gateway or 'link'}")

    def routes(self, index: int | None = None) -> list[RouteEntry]:
        out: list[RouteEntry] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            msg = rtmsg()
            msg["family"] = family
            msg["table"] = RT_TABLE_MAIN
            replies = self._request(msg, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, "list routes")
            for data, mtype, a, b in replies:
                if mtype != RTM_NEWROUTE:
                    continue
                route = _parse_route(data, a, b)
                if route.table == RT_TABLE_MAIN and (index is None or route.oif == index):
                    out.append(route)
        return out


def solicited_node(cidr: str) -> str:
    """ff02::1:ffXX:XXXX for an IPv6 address (RFC 4291 2.7.1)."""
    low = int(ipaddress.IPv6Interface(cidr).ip) & 0xFFFFFF
    return str(ipaddress.IPv6Address((0xFF02 << 112) | (0x1FF << 24) | low))


def _ext_ack(data: bytes, pos: int, flags: int) -> str:
    """The kernel's extended-ack text of an NLMSG_ERROR message, if any."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # nlmsghdr(16) + error(4) + the capped original nlmsghdr(16), then TLVs.
    length = struct.unpack_from("I", data, pos)[0]
    for t, a, b in _attrs(data, pos + 36, pos + length):
        if t == NLMSGERR_ATTR_MSG:
            return _cstr(data, a, b)
    return ""


@contextmanager
def rtnl(netns: Netns | None = None, sysctls: Mapping[str, str] | None = None) -> Iterator[Rtnl]:
    conn = Rtnl.open(netns, sysctls)
    try:
        yield conn
    finally:
        conn.close()


# --------------------------------------------------------------------------
# sysctl and ethtool in a namespace


def write_sysctls(values: Mapping[str, str], *, skip_missing: bool = True) -> None:
    """Write net.* sysctls ({"net/ipv4/conf/eth0/arp_notify": "1"}) in the
    calling thread's namespace: /proc/sys/net shows the namespace of the
    thread that opens it. A key whose file is missing (that address family
    is off there) is skipped unless ``skip_missing`` is False."""
    for key, value in values.items():
        try:
            with open(f"/proc/sys/{key}", "w") as handle:
                handle.write(value)
        except FileNotFoundError:
            if not skip_missing:
                raise


def write_sysctl(netns: Netns | None, key: str, value: str) -> None:
    """Write net.* sysctl ``key`` ("net/ipv6/conf/eth0/accept_dad") in ``netns``."""

    def write() -> None:
        write_sysctls({key: value}, skip_missing=False)

    if netns is None:
        write()
    else:
        run_in_netns(netns, write)


def set_tx_checksum(netns: Netns | None, ifname: str, enabled: bool) -> None:
    """Turn TX checksum offload on/off (ethtool -K IF tx on|off) through the
    SIOCETHTOOL ioctl on a socket in ``netns``. OVS's userspace datapath
    needs it off on veth ends, or TCP keeps partial checksums."""

    def apply(sock: socket.socket) -> None:
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, int(enabled)), 8)
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)) + b"\0" * 16
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)

    _with_inet_socket(netns, apply)


def get_tx_checksum(netns: Netns | None, ifname: str) -> bool:
    out: list[bool] = []

    def read(sock: socket.socket) -> None:
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GTXCSUM, 0), 8)
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)) + b"\0" * 16
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
        out.append(bool(struct.unpack("II", value.raw)[1]))

    _with_inet_socket(netns, read)
    return out[0]


def _with_inet_socket(netns: Netns | None, fn: Callable[[socket.socket], None]) -> None:
    def make() -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    sock = make() if netns is None else run_in_netns(netns, make)
    with sock:
        fn(sock)
