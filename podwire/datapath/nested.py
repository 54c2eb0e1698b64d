"""Containers inside a VM: a sub-interface of the VM's own NIC moved into the
container (macvlan in bridge mode, ipvlan l2/l3, an 802.1Q VLAN).

The sub-interface is created directly inside the container's namespace (the
kernel checks the name there, as for the veth peer in veth.py), with the
network's MTU and, for macvlan and VLAN, the port's MAC; then the addresses,
link up and routes as for every kind. An ipvlan slave has its parent's MAC:
the VIF carries the NIC's MAC (its builder reads it here).

The network's MTU may not exceed the NIC's: every frame of the container
leaves through the NIC. Refused with InvalidInput before anything is made.

Undo: deleting the sub-interface in the container's namespace; a namespace
already gone took its virtual links with it (the kernel destroys macvlan,
ipvlan and VLAN devices of a dying namespace), so that is success too.
"""

from __future__ import annotations

import errno
import os
import re
import uuid
from contextlib import ExitStack
from typing import Any

from podwire import faults
from podwire.datapath import probes
from podwire.datapath.base import DriverDescription, PluggedInterface
from podwire.datapath.netlink import NetlinkError, Netns, NetnsError, rtnl
from podwire.datapath.netlink.replies import Link
from podwire.datapath.veth import (
    check_addresses,
    check_container_end,
    check_ifname,
    check_mac,
    check_mtu,
    check_routes,
    configure_container_end,
    datapath_error,
    open_netns,
)
from podwire.datapath.vif import IpvlanNested, MacvlanNested, Vif, VlanNested
from podwire.errors import Conflict, DatapathError, InvalidInput, NotFound, Unavailable

NestedVif = MacvlanNested | IpvlanNested | VlanNested

_MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
_IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}


# --- the VM's NIC ---------------------------------------------------------------


def default_route_nic() -> str:
    """The interface of this machine's IPv4 (else IPv6) default route."""
    try:
        with rtnl() as host:
            for route in host.routes():
                if route.destination in ("0.0.0.0/0", "::/0") and route.oif:
                    link = host.link(index=route.oif)
                    if link is not None:
                        return link.name
    except NetlinkError as exc:
        raise datapath_error(exc, "looking up the default route") from exc
    raise Unavailable(
        "nested mode: no default route to find the VM's NIC by; set nested.nic",
        kind="config",
        field="nested.nic",
    )


def nic_link(name: str) -> Link:
    """The VM's NIC as the kernel has it (MAC, MTU)."""
    try:
        with rtnl() as host:
            link = host.link(name)
    except NetlinkError as exc:
        raise datapath_error(exc, f"looking up {name}") from exc
    if link is None:
        raise Unavailable(
            f"nested mode: the VM's NIC {name} does not exist",
            kind="interface",
            object_id=name,
            field="nested.nic",
        )
    return link


# --- the driver -------------------------------------------------------------------


def _linkinfo(vif: NestedVif) -> tuple[str, list[tuple[str, Any]], str | None]:
    """(link kind, IFLA_INFO_DATA, the MAC to set or None)."""
    if isinstance(vif, MacvlanNested):
        return "macvlan", [("IFLA_MACVLAN_MODE", _MACVLAN_MODES[vif.mode])], vif.mac
    if isinstance(vif, IpvlanNested):
        return "ipvlan", [("IFLA_IPVLAN_MODE", _IPVLAN_MODES[vif.mode])], None
    if not 1 <= vif.vlan_id <= 4094:
        raise InvalidInput(f"VLAN id {vif.vlan_id} is outside 1-4094", field="vlan_id")
    return "vlan", [("IFLA_VLAN_ID", vif.vlan_id)], vif.mac


# A sub-link's name in the container's namespace until plug renames it (the
# hyphen keeps it apart from names made of a prefix and random hex).
_TEMPORARY_PREFIX = "pwn-"
_TEMPORARY = re.compile(r"^pwn-[0-9a-f]{10}$")


class NestedDriver:
    """One driver for the three nested kinds: they differ only in the link
    kind and its data."""

    name = "nested"
    kinds: tuple[str, ...] = ("macvlan_nested", "ipvlan_nested", "vlan_nested")

    def __init__(self, link_kind: str) -> None:
        self._link_kind = link_kind
        self._description: DriverDescription | None = None

    def describe(self) -> DriverDescription:
        if self._description is None or not self._description.available:
            self._description = self._probe()
        return self._description

    def _probe(self) -> DriverDescription:
        def answer(available: bool, reason: str = "") -> DriverDescription:
            return DriverDescription(
                name=f"nested-{self._link_kind}",
                kinds=list(self.kinds),
                available=available,
                reason=reason,
            )

        if os.geteuid() != 0:
            return answer(False, f"needs root (CAP_NET_ADMIN) to create {self._link_kind} links")
        # The kernel knows a link kind if it accepts one on a throwaway parent
        # (a dummy is not always there: a veth pair is).
        # Named after this process: a kill -9 mid-probe leaves it to the
        # agent's start-up sweep (podwire.datapath.probes).
        probe = probes.probe_name("pwq")
        data: dict[str, list[tuple[str, Any]]] = {
            "macvlan": [("IFLA_MACVLAN_MODE", 4)],
            "ipvlan": [("IFLA_IPVLAN_MODE", 0)],
            "vlan": [("IFLA_VLAN_ID", 10)],
        }
        try:
            with rtnl() as host:
                host.add_veth(probe, probe + "p", mtu=1500)
                try:
                    parent = host.link(probe)
                    assert parent is not None
                    host.add_sublink(
                        probe + "s",
                        self._link_kind,
                        parent.index,
                        data=data[self._link_kind],
                        mtu=1500,
                    )
                    faults.hit("kind.nested.probe")
                finally:
                    host.delete_link(probe)
        except NetlinkError as exc:
            return answer(
                False, f"the kernel cannot create {self._link_kind} links: {exc.strerror}"
            )
        return answer(True)

    @staticmethod
    def _vif(vif: Vif) -> NestedVif:
        if not isinstance(vif, MacvlanNested | IpvlanNested | VlanNested):
            raise InvalidInput(f"the nested driver cannot plug a {vif.kind} VIF", field="kind")
        return vif

    def plug(self, vif: Vif, netns: str | None, ifname: str) -> PluggedInterface:
        nvif = self._vif(vif)
        check_ifname(ifname, "ifname")
        check_ifname(nvif.parent_ifname, "parent_ifname")
        check_mac(nvif.mac)
        mtu = check_mtu(nvif.mtu)
        addresses = check_addresses(nvif.addresses)
        check_routes(nvif.routes)
        kind, data, mac = _linkinfo(nvif)
        with ExitStack() as stack:
            ns: Netns | None = None
            if netns is not None:
                ns = stack.enter_context(open_netns(netns))
            try:
                with rtnl() as host:
                    parent = host.link(nvif.parent_ifname)
                    if parent is None:
                        raise Unavailable(
                            f"the VM's NIC {nvif.parent_ifname} does not exist",
                            kind="interface",
                            object_id=nvif.parent_ifname,
                        )
                    if parent.mtu is not None and mtu > parent.mtu:
                        raise InvalidInput(
                            f"network {nvif.network_id} has MTU {mtu}, more than the"
                            f" {parent.mtu} of the VM's NIC {nvif.parent_ifname}: a nested"
                            " container's frames leave through that NIC",
                            kind="network",
                            object_id=nvif.network_id,
                            field="mtu",
                        )
                    if not parent.up:
                        host.set_link(parent.index, up=True)
                    # The kernel looks the new name up in the caller's namespace
                    # first: a container's "eth0" would collide with the VM's own
                    # eth0. Made under a temporary name there, renamed inside.
                    made = ifname if ns is None else _TEMPORARY_PREFIX + uuid.uuid4().hex[:10]
                    host.add_sublink(
                        made, kind, parent.index, data=data, mtu=mtu, mac=mac, netns=ns
                    )
            except NetlinkError as exc:
                if exc.errno == errno.EBUSY:
                    raise Conflict(
                        f"the VM's NIC {nvif.parent_ifname} cannot take a {kind} link now: it"
                        " carries links of another kind (ipvlan and macvlan exclude each other"
                        " on one NIC)",
                        kind="interface",
                        object_id=nvif.parent_ifname,
                    ) from exc
                if exc.errno == errno.EEXIST:
                    where = netns or "the host namespace"
                    raise Conflict(
                        f"interface {ifname} already exists in {where}"
                        + (" (or the VLAN id is taken on the NIC)" if kind == "vlan" else ""),
                        kind="interface",
                        object_id=ifname,
                    ) from exc
                raise datapath_error(
                    exc, f"creating {kind} {ifname} on {nvif.parent_ifname}"
                ) from exc
            if ns is None:
                return PluggedInterface(ifname=ifname, mac=nvif.mac, sandbox=None, mtu=mtu)
            try:
                self._rename(ns, made, ifname)
            except BaseException:
                self._delete(ns, made)
                raise
            try:
                configure_container_end(ns, ifname, addresses=addresses, routes=nvif.routes)
            except BaseException:
                self._delete(ns, ifname)
                raise
            return PluggedInterface(
                ifname=ifname, mac=nvif.mac, sandbox=netns, mtu=mtu, addresses=addresses
            )
        raise AssertionError("unreachable")

    @staticmethod
    def _rename(ns: Netns, made: str, ifname: str) -> None:
        try:
            with rtnl(ns) as inner:
                link = inner.link(made)
                if link is None:
                    raise DatapathError(f"{made} vanished from {ns.path} while plugging")
                inner.set_link(link.index, name=ifname)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                raise Conflict(
                    f"interface {ifname} already exists in {ns.path}",
                    kind="interface",
                    object_id=ifname,
                ) from exc
            raise datapath_error(exc, f"renaming {made} to {ifname} in {ns.path}") from exc

    @staticmethod
    def _delete(ns: Netns | None, ifname: str) -> bool:
        try:
            with rtnl(ns) as conn:
                return conn.delete_link(ifname)
        except NetlinkError as exc:
            raise datapath_error(exc, f"deleting {ifname}") from exc

    def unplug(self, vif: Vif, netns: str | None, ifname: str) -> None:
        self._vif(vif)
        if netns is None:
            self._delete(None, ifname)
            return
        try:
            ns = Netns(netns)
        except NetnsError as exc:
            if exc.errno in (errno.ENOENT, errno.EINVAL):
                return  # the namespace is gone, and its links with it
            raise DatapathError(f"opening {netns}: {exc.strerror}") from exc
        with ns:
            self._delete(ns, ifname)
            self._sweep_temporary(ns)

    @staticmethod
    def _sweep_temporary(ns: Netns) -> None:
        """Sub-links a plug killed between making and renaming them left in
        the container under their temporary name: nothing else makes such
        names there, and the agent holds the container's lock while it
        unplugs (a DEL, or the start-up reconcile of an unfinished ADD)."""
        try:
            with rtnl(ns) as conn:
                for link in conn.links():
                    if _TEMPORARY.match(link.name):
                        conn.delete_link(link.name)
        except NetlinkError as exc:
            raise datapath_error(exc, f"removing temporary links in {ns.path}") from exc

    def check(self, vif: Vif, netns: str | None, ifname: str) -> None:
        nvif = self._vif(vif)
        if netns is None:
            raise NotFound("CHECK needs the container's namespace", kind="netns")
        check_container_end(
            netns,
            ifname,
            mac=nvif.mac,
            mtu=nvif.mtu,
            addresses=check_addresses(nvif.addresses),
            routes=nvif.routes,
        )
