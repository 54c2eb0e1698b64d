"""The agent's unix sockets and its state-dir lock.

Sockets are bound here, not by uvicorn, so that they are created with mode
0600 from the first instant (uvicorn would chmod them 0666)."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from podwire.errors import Unavailable


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind ``path`` with mode 0600 (parent directory created, 0755). A stale
    socket file nobody listens on is replaced; a live one is an error (another
    agent serves it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise Unavailable(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
            path.unlink(missing_ok=True)
        else:
            raise Unavailable(f"another agent is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def lock_state_dir(state_dir: Path) -> int:
    """One agent per state dir: its records are only consistent with one
    writer reconciling them."""
    import fcntl

    fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Unavailable(f"another agent is already using state dir {state_dir}") from None
    return fd
