"""The SR-IOV driver: a leased VF into a container.

Kernel mode (``driver="netdevice"``): the VF's settings through its PF (MAC,
VLAN, spoofchk, trust, rates, link state, each only when the VIF asks), its
netdev moved into the container's namespace under the requested name, then
addresses and routes as for every kind. DPDK mode (``driver="vfio-pci"``):
the same PF settings, the VF bound to vfio-pci and left out of the
container's namespace; the container gets its PCI address and /dev/vfio
group. ``unplug`` restores the VF to its baseline from the lease record
alone (podwire.datapath.sriov.authority), so it works without the netns.
"""

from __future__ import annotations

import logging
from typing import Any

from podwire import faults
from podwire.datapath.base import DriverDescription, PluggedInterface
from podwire.datapath.netlink import NetlinkError, rtnl
from podwire.datapath.sriov import pcidrv
from podwire.datapath.sriov.authority import VfAuthority
from podwire.datapath.sriov.inventory import Vf
from podwire.datapath.sriov.vfnl import vf_states
from podwire.datapath.veth import (
    check_addresses,
    check_ifname,
    check_mtu,
    check_routes,
    configure_container_end,
    datapath_error,
    open_netns,
)
from podwire.datapath.vif import SriovVf, Vif
from podwire.errors import DatapathError, Drift, InvalidInput

log = logging.getLogger(__name__)


def vf_settings(vif: SriovVf) -> dict[str, Any]:
    """What the VIF asks of the PF (None fields are left as they are)."""
    out: dict[str, Any] = {"mac": vif.mac}
    if vif.vlan_id is not None:
        out["vlan"] = vif.vlan_id
        out["qos"] = vif.qos or 0
    if vif.spoofchk is not None:
        out["spoofchk"] = vif.spoofchk
    if vif.trust is not None:
        out["trust"] = vif.trust
    if vif.min_tx_rate is not None or vif.max_tx_rate is not None:
        out["min_tx_rate"] = vif.min_tx_rate or 0
        out["max_tx_rate"] = vif.max_tx_rate or 0
    if vif.link_state is not None:
        out["link_state"] = vif.link_state
    return out


class SriovDriver:
    name = "sriov"
    kinds: tuple[str, ...] = ("sriov",)

    def __init__(self, authority: VfAuthority) -> None:
        self.authority = authority

    def describe(self) -> DriverDescription:
        try:
            pool = self.authority.scan()
        except Exception as exc:
            return DriverDescription(
                name=self.name, kinds=list(self.kinds), available=False, reason=str(exc)
            )
        if not self.authority.physical_networks:
            reason = "no physical network configured (config section sriov)"
        elif not pool:
            reason = "no VFs found for the configured physical networks"
        else:
            reason = ""
        return DriverDescription(
            name=self.name, kinds=list(self.kinds), available=not reason, reason=reason
        )

    def _vif(self, vif: Vif) -> SriovVf:
        if not isinstance(vif, SriovVf):
            raise InvalidInput(f"the sriov driver cannot plug a {vif.kind} VIF")
        return vif

    def plug(self, vif: Vif, netns: str | None, ifname: str) -> PluggedInterface:
        vif = self._vif(vif)
        check_ifname(ifname, "ifname")
        check_mtu(vif.mtu)
        addresses = check_addresses(vif.addresses)
        check_routes(vif.routes)
        vf = self.authority.sysfs.vf(vif.pci_address)
        if vf is None:
            raise DatapathError(f"VF {vif.pci_address} is gone from this host")
        settings = vf_settings(vif)
        # The intent, before the VF is touched: a restore after kill -9 here
        # knows it may be dirty.
        self.authority.store.touching(
            vif.pci_address,
            {"settings": settings, "netns": netns, "ifname": ifname, "driver": vif.driver},
        )
        try:
            if vif.driver != "vfio-pci":
                vf = self._netdev_ready(vif)
                # The VF's own MAC first, while the PF has not pinned one: igbvf
                # takes a PF-set MAC only at its next reset ("reload the VF
                # driver"), and may set its own only until the PF pins it.
                self._set_vf_side_mac(vf.netdev, vif.mac)
            self.authority.apply(vf, settings)
            # Fault points inside the plug (docs/faults.md): the VF dirty in
            # the host, then moved into the container, before "done" is written.
            faults.hit("kind.sriov.vf_settings_applied")
            if vif.driver == "vfio-pci":
                pcidrv.bind(self.authority.sysfs_root, vif.pci_address, "vfio-pci")
                group = pcidrv.vfio_group_path(self.authority.sysfs_root, vif.pci_address)
                extra = {"pciID": vif.pci_address}
                if group:
                    extra["vfioGroup"] = group
                return PluggedInterface(
                    ifname=None,
                    mac=vif.mac,
                    sandbox=netns,
                    mtu=vif.mtu,
                    addresses=list(addresses),
                    extra=extra,
                )
            return self._plug_netdev(vif, netns, ifname, addresses)
        except BaseException:
            self.authority.restore(vif.pci_address)
            raise

    def _netdev_ready(self, vif: SriovVf) -> Vf:
        """The VF with its netdev in the host namespace."""
        vf = self.authority.sysfs.vf(vif.pci_address)
        if vf is None or vf.netdev is None:
            # Bound elsewhere or its netdev away: give it its kernel driver.
            lease = self.authority.store.get(vif.pci_address)
            driver = lease.baseline.get("driver") if lease else None
            if not driver or driver == "vfio-pci":
                raise DatapathError(f"VF {vif.pci_address} has no kernel driver to go back to")
            pcidrv.rebind(self.authority.sysfs_root, vif.pci_address, driver)
            vf = self.authority.sysfs.vf(vif.pci_address)
            if vf is None or vf.netdev is None:
                raise DatapathError(f"VF {vif.pci_address} has no netdev to move")
        return vf

    def _set_vf_side_mac(self, netdev: str | None, mac: str) -> None:
        if netdev is None:
            return
        try:
            with rtnl() as host:
                link = host.link(netdev)
                if link is not None and link.mac != mac:
                    host.set_link(link.index, up=False)
                    host.set_link(link.index, mac=mac)
        except NetlinkError as exc:
            # The PF-side MAC below still holds; the VF driver takes it at reset.
            log.info("VF netdev %s refused MAC %s: %s", netdev, mac, exc.strerror)

    def _plug_netdev(
        self, vif: SriovVf, netns: str | None, ifname: str, addresses: list[str]
    ) -> PluggedInterface:
        vf = self._netdev_ready(vif)
        try:
            with rtnl() as host:
                link = host.link(vf.netdev)
                if link is None:
                    raise DatapathError(f"VF netdev {vf.netdev} vanished")
                # Down, so the VF driver takes the MAC its PF set when it comes up.
                host.set_link(link.index, up=False, mtu=vif.mtu)
                if netns is None:  # the runtime moves it (Docker)
                    host.set_link(link.index, name=ifname)
                    host.set_link(link.index, up=True)
                else:
                    with open_netns(netns) as ns:
                        host.set_link(link.index, netns=ns, name=ifname)
        except NetlinkError as exc:
            raise datapath_error(exc, f"moving VF netdev {vf.netdev}") from exc
        faults.hit("kind.sriov.vf_moved")
        if netns is not None:
            with open_netns(netns) as ns:
                configure_container_end(ns, ifname, addresses=addresses, routes=vif.routes)
            mac = self._container_mac(netns, ifname)
        else:
            mac = vif.mac
        return PluggedInterface(
            ifname=ifname,
            mac=mac or vif.mac,
            sandbox=netns,
            mtu=vif.mtu,
            addresses=list(addresses),
            host_ifname=None,
            extra={"pciID": vif.pci_address},
        )

    def _container_mac(self, netns: str, ifname: str) -> str | None:
        with open_netns(netns) as ns, rtnl(ns) as inner:
            link = inner.link(ifname)
            return link.mac if link else None

    def unplug(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._vif(vif)
        self.authority.restore(vif.pci_address)

    def check(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._vif(vif)
        vf = self.authority.sysfs.vf(vif.pci_address)
        if vf is None:
            raise Drift(f"VF {vif.pci_address} is gone", field="pci_address")
        if vif.driver == "vfio-pci":
            if vf.driver != "vfio-pci":
                raise Drift(f"VF {vif.pci_address} is on {vf.driver}, not vfio-pci", field="driver")
        elif netns is not None:
            with open_netns(netns) as ns, rtnl(ns) as inner:
                if inner.link(ifname) is None:
                    raise Drift(f"{ifname} is missing from {netns}", field="ifname")
        if vf.pf_ifname is None:
            return
        with rtnl() as host:
            pf = host.link(vf.pf_ifname)
            state = vf_states(host, pf.index).get(vf.index) if pf else None
        if state is None:
            raise Drift(f"PF {vf.pf_ifname} does not report VF {vf.index}", field="pci_address")
        if state.mac != vif.mac:
            raise Drift(
                f"VF {vf.index} of {vf.pf_ifname} has MAC {state.mac}, not {vif.mac}", field="mac"
            )
        if vif.vlan_id is not None and state.vlan != vif.vlan_id:
            raise Drift(
                f"VF {vf.index} of {vf.pf_ifname} has VLAN {state.vlan}, not {vif.vlan_id}",
                field="vlan_id",
            )
        spoof = state.spoofchk
        if vif.spoofchk is not None and spoof is not None and spoof != vif.spoofchk:
            raise Drift(
                f"VF {vf.index} of {vf.pf_ifname} has spoofchk {state.spoofchk}", field="spoofchk"
            )
