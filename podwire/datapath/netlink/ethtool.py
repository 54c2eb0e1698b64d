"""ethtool settings through the SIOCETHTOOL ioctl on a socket in a namespace."""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from collections.abc import Callable

from podwire.datapath.netlink.constants import ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, SIOCETHTOOL
from podwire.datapath.netlink.netns import Netns, run_in_netns


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
