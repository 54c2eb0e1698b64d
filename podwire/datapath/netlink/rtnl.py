"""Rtnl, the rtnetlink connection drivers use: links, addresses and routes
on sockets opened in one namespace."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from podwire.datapath.netlink.addresses import AddressCalls
from podwire.datapath.netlink.links import LinkCalls
from podwire.datapath.netlink.netns import Netns, run_in_netns, socket_pair, start_in_netns
from podwire.datapath.netlink.routes import RouteCalls
from podwire.datapath.netlink.sysctl import write_sysctls
from podwire.datapath.netlink.tc import TcCalls


class Rtnl(LinkCalls, AddressCalls, RouteCalls, TcCalls):
    """One rtnetlink socket in one namespace, for one caller at a time,
    with an inet socket beside it for the ioctls netlink lacks."""

    @classmethod
    def open(cls, netns: Netns | None = None) -> Rtnl:
        """Sockets in ``netns`` (the host's when None). To write sysctls on
        the same entry into the namespace, use RtnlOpening."""
        if netns is None:
            return cls(*socket_pair(), "host")
        return cls(*run_in_netns(netns, socket_pair), netns.path)


@contextmanager
def rtnl(netns: Netns | None = None) -> Iterator[Rtnl]:
    conn = Rtnl.open(netns)
    try:
        yield conn
    finally:
        conn.close()


# How long a namespace worker waits for the device an opening's sysctls
# name; the caller always says go (or abandons) within its own plug.
_OPENING_WAIT_S = 30.0


class RtnlOpening:
    """Sockets being opened in ``netns`` while the caller makes the device
    that ``sysctls`` name (the container end of a pair): the namespace
    worker's hop and the socket's set-up run beside the device's creation,
    and the sysctls are written once the caller says the device exists
    (``ready``). ``abandon`` when it never will."""

    def __init__(self, netns: Netns, sysctls: Mapping[str, str]) -> None:
        self._path = netns.path
        self._go = threading.Event()
        self._abandoned = False

        def enter() -> tuple[socket.socket, socket.socket]:
            pair = socket_pair()
            if not sysctls:
                return pair  # nothing waits for the device
            try:
                self._go.wait(_OPENING_WAIT_S)
                if self._abandoned:
                    raise _Abandoned
                write_sysctls(sysctls)
            except BaseException:
                for sock in pair:
                    sock.close()
                raise
            return pair

        self._pending = start_in_netns(netns, enter)

    @contextmanager
    def ready(self) -> Iterator[Rtnl]:
        """The device exists: the sysctls written, the connection open."""
        self._go.set()
        conn = Rtnl(*self._pending.result(), self._path)
        try:
            yield conn
        finally:
            conn.close()

    def abandon(self) -> None:
        """No device is coming: what the worker opened is closed."""
        self._abandoned = True
        self._go.set()
        try:
            pair = self._pending.result()
        except Exception:  # _Abandoned (closed there), or its own failure
            return
        for sock in pair:  # opened with nothing to wait for
            sock.close()


class _Abandoned(Exception):
    """The opening's caller gave up before its device existed."""
