"""Driver ``veth_ovs``: a veth pair whose host end is an interface of the OVS
integration bridge with ``external_ids:iface-id`` = the OVN logical port, so
ovn-controller binds it.

ADD, in order, each step pushed on an undo stack:
1. the veth pair, container end configured (the shared veth helper);
2. TX checksum offload off on both ends: OVS's userspace (netdev) datapath
   forwards the partial checksums a veth leaves for offload, and TCP then
   fails while ping passes (seen on the test machine); harmless with the kernel
   datapath;
3. the OVS interface, with iface-id, attached-mac and iface-status=active
   (what Neutron's and ovn-kubernetes' plugs write);
4. the wait, bounded by ``VethOvs.bind_timeout``, until ovn-controller has
   marked the interface ``ovn-installed`` (its flows are in): only then can
   the container's first packet pass, so ADD returns only then.
A timeout undoes 3 and 1 and names the port and the bridge.

Port security is OVN's (the logical port's port_security column), not ours.
DEL removes the OVS interface, then the pair; both may already be gone.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from podwire.datapath import veth
from podwire.datapath.base import DriverDescription, PluggedInterface
from podwire.datapath.netlink import Netns, get_tx_checksum, rtnl, set_tx_checksum
from podwire.datapath.ovs import DEFAULT_OVS_DB, OvsDb
from podwire.datapath.vif import VethOvs, Vif
from podwire.errors import DatapathError, Drift, InvalidInput, PodwireError


class VethOvsDriver:
    name = "veth_ovs"
    kinds: tuple[str, ...] = ("veth_ovs",)

    def __init__(self, ovs_db: str = DEFAULT_OVS_DB, timeout: float = 10.0) -> None:
        # Only describe() uses this remote; plug/unplug/check use the VIF's.
        self._default_db = ovs_db
        self._timeout = timeout

    def _db(self, vif: VethOvs) -> OvsDb:
        return OvsDb.for_remote(vif.ovs_db, self._timeout)

    # -- describe -------------------------------------------------------------

    def describe(self) -> DriverDescription:
        def unavailable(reason: str) -> DriverDescription:
            return DriverDescription(
                name=self.name, kinds=list(self.kinds), available=False, reason=reason
            )

        if os.geteuid() != 0:
            return unavailable("needs root (CAP_NET_ADMIN) to create veth pairs")
        try:
            OvsDb.for_remote(self._default_db, self._timeout).api()
        except PodwireError as exc:
            return unavailable(exc.message)
        return DriverDescription(name=self.name, kinds=list(self.kinds), available=True)

    # -- plug -----------------------------------------------------------------

    def _expect(self, vif: Vif) -> VethOvs:
        if not isinstance(vif, VethOvs):
            raise InvalidInput(
                f"driver {self.name} cannot plug a {vif.kind} VIF",
                kind="vif",
                object_id=vif.port_id,
            )
        return vif

    def plug(self, vif: Vif, netns: str | None, ifname: str) -> PluggedInterface:
        vif = self._expect(vif)
        veth.check_ifname(ifname, "ifname")
        veth.check_ifname(vif.host_ifname, "host_ifname")
        mac = veth.check_mac(vif.mac)
        mtu = veth.check_mtu(vif.mtu)
        addresses = veth.check_addresses(vif.addresses)
        veth.check_routes(vif.routes)
        if not vif.iface_id:
            raise InvalidInput("iface_id (the logical port) is empty", field="iface_id")
        db = self._db(vif)
        db.api()  # Unavailable before anything is made, when OVS is down

        with ExitStack() as scope:
            ns = scope.enter_context(veth.open_netns(netns)) if netns is not None else None
            with ExitStack() as undo:
                try:
                    host = scope.enter_context(rtnl())
                    veth.plug_pair(
                        undo,
                        host,
                        ns,
                        host_ifname=vif.host_ifname,
                        ifname=ifname,
                        mac=mac,
                        mtu=mtu,
                        addresses=addresses,
                        routes=vif.routes,
                    )
                    set_tx_checksum(None, vif.host_ifname, False)
                    set_tx_checksum(ns, ifname, False)
                except OSError as exc:
                    raise veth.datapath_error(exc, f"plugging port {vif.port_id}") from exc
                db.replace_port(
                    vif.bridge,
                    vif.host_ifname,
                    {
                        "iface-id": vif.iface_id,
                        "attached-mac": mac,
                        "iface-status": "active",
                        "podwire-port-id": vif.port_id,
                    },
                )
                undo.callback(db.delete_port, vif.host_ifname)
                if vif.wait_bound and not db.wait_installed(vif.host_ifname, vif.bind_timeout):
                    raise DatapathError(
                        f"ovn-controller did not bind logical port {vif.iface_id} "
                        f"(interface {vif.host_ifname} on bridge {vif.bridge}) within "
                        f"{vif.bind_timeout:g} s; is ovn-controller running, and does the "
                        "logical port exist in the northbound database?",
                        kind="port",
                        object_id=vif.port_id,
                    )
                if ns is not None and vif.wait_bound:
                    # A reused address may still be mapped to its previous
                    # owner's MAC by peers, and OVN's ARP responder keeps them
                    # from asking again; the announcements sent at link up
                    # were dropped before the flows were installed.
                    veth.announce_again(ns, ifname, mac)
                undo.pop_all()
        return PluggedInterface(
            ifname=ifname,
            mac=mac,
            sandbox=netns,
            mtu=mtu,
            addresses=addresses,
            host_ifname=vif.host_ifname,
        )

    # -- unplug ---------------------------------------------------------------

    def unplug(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._expect(vif)
        veth.check_ifname(vif.host_ifname, "host_ifname")
        # OVS first: a port whose netdev vanished under vswitchd only logs
        # errors, but removing it first keeps ovn-controller's view clean.
        self._db(vif).delete_port(vif.host_ifname)
        veth.delete_host_end(vif.host_ifname)

    # -- check ----------------------------------------------------------------

    def check(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._expect(vif)
        with rtnl() as host:
            if host.link(vif.host_ifname) is None:
                raise Drift(
                    f"host end {vif.host_ifname} is missing",
                    field="host_ifname",
                    object_id=vif.host_ifname,
                )
        info = self._db(vif).interface(vif.host_ifname)
        if info is None or info["bridge"] != vif.bridge:
            raise Drift(
                f"{vif.host_ifname} is not a port of OVS bridge {vif.bridge}",
                field="bridge",
                object_id=vif.host_ifname,
            )
        if info["external_ids"].get("iface-id") != vif.iface_id:
            raise Drift(
                f"{vif.host_ifname} has iface-id {info['external_ids'].get('iface-id')!r}, "
                f"expected {vif.iface_id}",
                field="iface_id",
                object_id=vif.host_ifname,
            )
        try:
            if get_tx_checksum(None, vif.host_ifname):
                raise Drift(
                    f"TX checksum offload is on for {vif.host_ifname}",
                    field="tx_checksum",
                    object_id=vif.host_ifname,
                )
        except OSError as exc:
            raise DatapathError(f"reading offloads of {vif.host_ifname}: {exc}") from exc
        if netns is None:
            return
        veth.check_container_end(
            netns,
            ifname,
            mac=vif.mac,
            mtu=vif.mtu,
            addresses=veth.check_addresses(vif.addresses),
            routes=vif.routes,
        )
        with Netns(netns) as ns:
            if get_tx_checksum(ns, ifname):
                raise Drift(
                    f"TX checksum offload is on for {ifname} in {netns}",
                    field="tx_checksum",
                    object_id=ifname,
                )
