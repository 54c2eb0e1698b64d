"""Proving that a path is a network namespace, without ever blocking.

A CNI_NETNS (or a Docker sandbox key) comes from outside: it may name a
FIFO, a device, a directory or a regular file. Opening a FIFO for reading
blocks until a writer comes, which once wedged agent workers with the
container's lock held. So a namespace path is first opened with ``O_PATH``
(which never opens the file for I/O and so never blocks), proven to live on
nsfs by ``fstatfs`` (NSFS_MAGIC), and only then reopened for reading through
``/proc/self/fd`` (the same inode, no race with a rename) and asked its
namespace type (``NS_GET_NSTYPE`` must say CLONE_NEWNET: a mount or user
namespace file is on nsfs too).

Stdlib only: every room may use it (the doors to refuse early, the data
paths to open safely).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

NSFS_MAGIC = 0x6E736673
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class NotNetns(OSError):
    """The path exists but is not a network namespace (errno EINVAL)."""


class _Statfs(ctypes.Structure):
    # Only f_type is read; the padding covers the rest of struct statfs.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def _fs_type(fd: int) -> int:
    buf = _Statfs()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(buf.f_type) & 0xFFFFFFFF


def open_netns(path: str | bytes) -> int:
    """A read-only fd on the network namespace at ``path``; never blocks.

    Raises FileNotFoundError when nothing is there, NotNetns when something
    that is not a network namespace is, other OSErrors as open(2) does.
    Symlinks are followed (``/proc/<pid>/ns/net`` is one)."""
    if ("\0" if isinstance(path, str) else b"\0") in path:  # type: ignore[operator]
        raise NotNetns(errno.EINVAL, f"{path!r} contains a NUL byte")
    probe = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if _fs_type(probe) != NSFS_MAGIC:
            raise NotNetns(errno.EINVAL, f"{os.fsdecode(path)} is not a network namespace")
        fd = os.open(f"/proc/self/fd/{probe}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(probe)
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        os.close(fd)
        raise NotNetns(errno.EINVAL, f"{os.fsdecode(path)} is not a namespace: {exc}") from None
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise NotNetns(errno.EINVAL, f"{os.fsdecode(path)} is a namespace, but not a network one")
    return fd


def prove(path: str | bytes) -> None:
    """Raise (as ``open_netns``) unless ``path`` is a network namespace."""
    os.close(open_netns(path))
