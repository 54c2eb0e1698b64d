"""Network namespaces: an open namespace, the worker threads that enter
one, and the sockets opened there."""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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
    """Run ``fn`` on a worker thread that has entered ``netns``.

    The workers are the dedicated threads ARCHITECTURE.md asks for: they do
    nothing but this, so no thread that serves other work ever changes
    namespace. Each enters the namespace, runs ``fn``, and goes back to the
    namespace it started in; one that cannot go back ends there (it never
    runs anything else). Long-lived, unlike a thread per call (~0.2-1 ms of
    thread start and join per ADD, more under load). Keep ``fn`` short (open
    a socket, write a sysctl): it is not for running long work.
    """
    return _WORKERS.start(netns, fn).result()


def start_in_netns(netns: Netns, fn: Callable[[], T]) -> Pending[T]:
    """``run_in_netns`` without waiting: the caller goes on with other work
    (say, making the device ``fn`` needs, which ``fn`` then waits for) and
    takes the result later with ``Pending.result``."""
    return _WORKERS.start(netns, fn)


@dataclass
class _Job:
    netns: Netns
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    failure: BaseException | None = None


class Pending(Generic[T]):
    """A job given to a namespace worker; ``result`` waits for it."""

    def __init__(self, job: _Job) -> None:
        self._job = job

    def result(self) -> T:
        self._job.done.wait()
        if self._job.failure is not None:
            raise self._job.failure
        result: T = self._job.result
        return result


class _NetnsWorkers:
    """Up to ``limit`` long-lived threads entering namespaces on request;
    started as concurrent callers need them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def start(self, netns: Netns, fn: Callable[[], T]) -> Pending[T]:
        job = _Job(netns, fn)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            if self._idle == 0 and len(self._threads) < self._limit:
                worker = threading.Thread(target=self._serve, name="podwire-netns", daemon=True)
                self._threads.append(worker)
                self._idle += 1  # idle until it takes its first job
                worker.start()
        self._queue.put(job)
        return Pending(job)

    def _serve(self) -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                job = self._queue.get()
                with self._lock:
                    self._idle -= 1
                entered = False
                try:
                    _enter(job.netns.fd, job.netns.path)
                    entered = True
                    job.result = job.fn()
                except BaseException as exc:
                    job.failure = exc
                back = not entered or _libc.setns(home, CLONE_NEWNET) == 0
                with self._lock:
                    if back:
                        self._idle += 1
                    else:  # stranded in another namespace: never serve again
                        self._threads.remove(threading.current_thread())
                job.done.set()
                if not back:
                    return
        finally:
            os.close(home)


def _enter(fd: int, path: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        if code == errno.EINVAL:
            raise NetnsError(code, f"{path} is not a network namespace")
        raise NetnsError(code, f"cannot enter {path}: {os.strerror(code)}")


_WORKERS = _NetnsWorkers(limit=4)


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
