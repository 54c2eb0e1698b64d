"""The host side of a VM's port on the embedded backend (docs/nested.md):
the VM's tap on its network's bridge with port security, and, when the
port is a trunk parent, one access veth pair per sub-port into the
sub-port's network bridge, with the 802.1Q tags moved by two tc BPF
programs (netlink/bpf.py):

    VM --tap--(ingress: tag N? pop, redirect to pwtx<N>; other tags: drop;
    |          untagged: on to the tap's bridge, the VM port's security)
    |
    pwtx<sub-port> ==veth== pwty<sub-port> -- sub-port network's bridge
    (ingress: push tag N, redirect to the tap)   (the sub-port's security)

No trunk bridge, no 802.1Q device and no bridge VLAN filtering (this
kernel has none); the VM's own traffic never leaves its bridge.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

from podwire.datapath import veth
from podwire.datapath.netlink import NetlinkError, rtnl
from podwire.datapath.netlink import bpf as bpf_programs
from podwire.errors import DatapathError

POP_NAME = "pwtrunk"
PUSH_NAME = "pwtpush"


def _error(exc: OSError, what: str) -> DatapathError:
    return veth.datapath_error(exc, what)


def link_index(name: str) -> int | None:
    with rtnl() as host:
        link = host.link(name)
    return link.index if link is not None else None


def master_of(name: str) -> int | None:
    with rtnl() as host:
        link = host.link(name)
    return link.master if link is not None else None


def attach(name: str, bridge_index: int | None) -> None:
    """Make ``name`` a port of bridge ``bridge_index`` (None: of no
    bridge), up."""
    try:
        with rtnl() as host:
            link = host.link(name)
            if link is None:
                return
            host.set_link(link.index, master=bridge_index or 0, up=bridge_index is not None)
    except NetlinkError as exc:
        raise _error(exc, f"putting {name} on bridge {bridge_index}") from exc


def ensure_access(
    trunk_end: str, net_end: str, net_bridge_index: int, mtu: int, vid: int, tap_index: int
) -> None:
    """The access pair of one sub-port (made if missing), its network end
    on the network's bridge, its trunk end tagging toward the tap."""
    veth.check_ifname(trunk_end, "trunk_end")
    veth.check_ifname(net_end, "net_end")
    try:
        with rtnl() as host:
            if host.link(trunk_end) is None:
                try:
                    host.add_veth(net_end, trunk_end, mtu=mtu, up=True, master=net_bridge_index)
                except NetlinkError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
            end = host.link(trunk_end)
            peer = host.link(net_end)
            if end is None or peer is None:
                raise DatapathError(f"access pair {trunk_end}/{net_end} is incomplete")
            if peer.master != net_bridge_index or not peer.up:
                host.set_link(peer.index, master=net_bridge_index, up=True)
            if not end.up:
                host.set_link(end.index, up=True)
            host.add_clsact(end.index)
            fd = bpf_programs.load(bpf_programs.push_program(vid, tap_index), PUSH_NAME)
            try:
                host.set_ingress_bpf(end.index, fd, PUSH_NAME)
            finally:
                os.close(fd)
    except OSError as exc:
        raise _error(exc, f"making access pair {trunk_end} for VLAN {vid}") from exc


def set_tap_vlans(tap: str, vid_to_trunk_end: Mapping[int, str]) -> None:
    """The tap's ingress program for these sub-ports (replaced atomically);
    with none, the tap loses its program (tagged frames then reach the
    bridge, whose port security drops them)."""
    try:
        with rtnl() as host:
            link = host.link(tap)
            if link is None:
                return
            if not vid_to_trunk_end:
                host.delete_clsact(link.index)
                return
            table: dict[int, int] = {}
            for vid, end_name in vid_to_trunk_end.items():
                end = host.link(end_name)
                if end is None:
                    raise DatapathError(f"access end {end_name} of VLAN {vid} is missing")
                table[vid] = end.index
            host.add_clsact(link.index)
            fd = bpf_programs.load(bpf_programs.pop_program(table), POP_NAME)
            try:
                host.set_ingress_bpf(link.index, fd, POP_NAME)
            finally:
                os.close(fd)
    except OSError as exc:
        raise _error(exc, f"setting the VLANs of tap {tap}") from exc


def delete(name: str) -> bool:
    """Delete a link (a veth takes its peer); absent is success (False)."""
    try:
        with rtnl() as host:
            return host.delete_link(name)
    except NetlinkError as exc:
        raise _error(exc, f"deleting {name}") from exc


def links_named(prefixes: tuple[str, ...]) -> list[str]:
    with rtnl() as host:
        return [x.name for x in host.links() if x.name.startswith(prefixes)]
