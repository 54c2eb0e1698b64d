"""Rtnl, the rtnetlink connection drivers use: links, addresses and routes
on sockets opened in one namespace."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from podwire.datapath.netlink.addresses import AddressCalls
from podwire.datapath.netlink.links import LinkCalls
from podwire.datapath.netlink.netns import Netns, run_in_netns, socket_pair
from podwire.datapath.netlink.routes import RouteCalls
from podwire.datapath.netlink.sysctl import write_sysctls
from podwire.datapath.netlink.tc import TcCalls


class Rtnl(LinkCalls, AddressCalls, RouteCalls, TcCalls):
    """One rtnetlink socket in one namespace, for one caller at a time,
    with an inet socket beside it for the ioctls netlink lacks."""

    @classmethod
    def open(cls, netns: Netns | None = None, sysctls: Mapping[str, str] | None = None) -> Rtnl:
        """Sockets in ``netns`` (the host's when None). ``sysctls`` are written
        there first, on the same short-lived thread, so setting them costs no
        second entry into the namespace (see write_sysctls)."""

        def enter() -> tuple[socket.socket, socket.socket]:
            if sysctls:
                write_sysctls(sysctls)
            return socket_pair()

        if netns is None:
            return cls(*enter(), "host")
        return cls(*run_in_netns(netns, enter), netns.path)


@contextmanager
def rtnl(netns: Netns | None = None, sysctls: Mapping[str, str] | None = None) -> Iterator[Rtnl]:
    conn = Rtnl.open(netns, sysctls)
    try:
        yield conn
    finally:
        conn.close()
