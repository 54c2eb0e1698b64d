"""The throwaway links a driver's describe() makes to ask the kernel what it
supports, and the sweep of those a killed process left behind.

A probe lives for milliseconds and is deleted in a ``finally``, so only a
process killed mid-probe (kill -9, the OOM killer) leaves one in the host
namespace. Its name says who made it: ``<prefix>-<pid, 6 hex>-<sequence, 2
hex>`` (13 characters, room for the one-letter suffix a probe gives its veth
peer or sub-link within IFNAMSIZ). The hyphens keep it apart from the names
tests make from a prefix and random hex (``pwp`` + hex is also a helper's
test prefix): no such name is ever taken for a probe. The sweep removes a probe only when
the process named in it is gone, so it never pulls a link from under a live
agent's (or a test's) probe in progress. PID_MAX_LIMIT is 2**22: a pid fits
in 6 hex digits.

Liveness is read in this process's pid namespace: agents sharing one network
namespace must see each other's pids (the norm: agents run on the host, or
with the host's pid namespace). A dead process's pid reused by a live one
only keeps that probe until a later sweep.
"""

from __future__ import annotations

import itertools
import os
import re
import threading

from podwire.datapath.netlink import rtnl

# veth_bridge's bridge/veth probe; the nested driver's macvlan/ipvlan/vlan probe.
PREFIXES = ("pwp", "pwq")
_NAME = re.compile(r"^(pwp|pwq)-([0-9a-f]{6})-[0-9a-f]{2}[ps]?$")
_sequence = itertools.count()
_sequence_lock = threading.Lock()


def probe_name(prefix: str) -> str:
    """A fresh probe name of this process: unique among its concurrent probes
    (up to 256 at once, far more than describe() ever runs)."""
    if prefix not in PREFIXES:
        raise ValueError(f"{prefix!r} is not a probe prefix ({', '.join(PREFIXES)})")
    with _sequence_lock:
        seq = next(_sequence) % 256
    return f"{prefix}-{os.getpid():06x}-{seq:02x}"


def owner_pid(name: str) -> int | None:
    """The pid a probe's name carries; None for a name that is no probe."""
    match = _NAME.match(name)
    return int(match.group(2), 16) if match else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: exists and is no zombie (a killed agent its
    parent has not reaped yet is dead for this purpose)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ...": the state follows the last ")".
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True  # cannot tell: keep the probe
    return state not in (b"Z", b"X")


def sweep_stale() -> list[str]:
    """Delete every probe link in this (the host) namespace whose creating
    process is gone; return the names deleted. A veth probe's peer and a
    sub-link go with it; either is also matched on its own."""
    gone: list[str] = []
    with rtnl() as host:
        for link in host.links():
            pid = owner_pid(link.name)
            if pid is None or pid == os.getpid() or _alive(pid):
                continue
            # False: already gone with its veth peer or parent.
            if host.delete_link(link.name):
                gone.append(link.name)
    return gone
