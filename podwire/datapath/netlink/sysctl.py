"""net.* sysctls, written in a namespace."""

from __future__ import annotations

from collections.abc import Mapping

from podwire.datapath.netlink.netns import Netns, run_in_netns


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
