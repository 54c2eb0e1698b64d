"""Network namespaces: an open namespace, the short-lived worker thread
that enters one, and the sockets opened there."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from podwire import nsfs
from podwire.datapath.netlink.constants import (
    CLONE_NEWNET,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GET_STRICT_CHK,
    SOL_NETLINK,
)

T = TypeVar("T")


_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    """A namespace path that does not exist or is not a network namespace."""


class Netns:
    """An open network namespace: a file descriptor on its path.

    Holding the fd keeps the namespace alive while a plug works in it, even
    if someone deletes its bind mount meanwhile.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            # Proven nsfs through O_PATH first: a FIFO here must never be
            # opened for reading (it blocks until a writer comes).
            self.fd = nsfs.open_netns(path)
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


def socket_pair() -> tuple[socket.socket, socket.socket]:
    rt = rtnl_socket()
    try:
        return rt, socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except BaseException:
        rt.close()
        raise


def rtnl_socket() -> socket.socket:
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
