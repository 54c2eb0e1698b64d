"""The VF authority: discovery (with the baseline recorded once), leases
with the NUMA preference, and restore to baseline from the record alone.

Used by the sriov kind (lease at ``kind.allocate``, free at its undo, the
start-up reconcile) and by its driver (apply at plug, restore at unplug).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podwire.datapath.netlink import NetlinkError, rtnl
from podwire.datapath.sriov import pcidrv
from podwire.datapath.sriov.inventory import PoolVf, Sysfs, Vf, choose, pool_vfs, pools
from podwire.datapath.sriov.leases import Lease, LeaseStore
from podwire.datapath.sriov.vfnl import (
    VfSettingRefused,
    VfState,
    known_limit,
    set_vf,
    vf_states,
)
from podwire.errors import DatapathError, Exhausted, InvalidInput

log = logging.getLogger(__name__)

# The PF-side settings a baseline holds and a restore puts back.
PF_SETTINGS = (
    "mac",
    "vlan",
    "qos",
    "spoofchk",
    "trust",
    "min_tx_rate",
    "max_tx_rate",
    "link_state",
)


@dataclass
class VfAuthority:
    sysfs_root: Path
    physical_networks: Mapping[str, Sequence[str]]
    store: LeaseStore
    _lock: threading.RLock = field(default_factory=threading.RLock)
    # PF address -> sriov_numvfs at the last scan: a change means a rescan.
    _numvfs: dict[str, int] = field(default_factory=dict)
    _pool: list[PoolVf] = field(default_factory=list)

    @property
    def sysfs(self) -> Sysfs:
        return Sysfs(self.sysfs_root)

    # --- discovery ------------------------------------------------------------------

    def scan(self, force: bool = False) -> list[PoolVf]:
        """The configured pools, rescanned when a PF's numvfs changed since
        the last scan; new VFs get their baseline recorded (once)."""
        with self._lock:
            sysfs = self.sysfs
            if (
                not force
                and self._numvfs
                and all(sysfs.numvfs(pf) == n for pf, n in self._numvfs.items())
            ):
                return list(self._pool)
            chosen = pools(sysfs, self.physical_networks)
            pool = pool_vfs(sysfs, self.physical_networks)
            self._numvfs = {pf.pci: pf.numvfs for pfs in chosen.values() for pf, _ in pfs}
            for cand in pool:
                if not self.store.discovered(cand.vf.pci):
                    self.store.record_baseline(
                        cand.vf.pci,
                        pf_pci=cand.vf.pf_pci,
                        vf_index=cand.vf.index,
                        physical_network=cand.physical_network,
                        numa_node=cand.vf.numa_node,
                        baseline=self.read_state(cand.vf),
                    )
                else:
                    lease = self.store.get(cand.vf.pci)
                    assert lease is not None
                    self.store.record_baseline(
                        cand.vf.pci,
                        pf_pci=cand.vf.pf_pci,
                        vf_index=cand.vf.index,
                        physical_network=cand.physical_network,
                        numa_node=cand.vf.numa_node,
                        baseline=lease.baseline,
                    )
            self.store.forget_missing((c.vf.pci for c in pool), self._numvfs)
            self._pool = pool
            return list(pool)

    def read_state(self, vf: Vf) -> dict[str, Any]:
        """What a baseline holds: the PF's view of the VF plus its driver,
        netdev name and MTU."""
        state: dict[str, Any] = {"driver": vf.driver, "netdev": vf.netdev, "mtu": None}
        pf_state = self._pf_state(vf)
        if pf_state is not None:
            state.update(pf_state.as_dict())
        if vf.netdev:
            try:
                mtu = (self.sysfs_root / "class/net" / vf.netdev / "mtu").read_text().strip()
                state["mtu"] = int(mtu)
            except (OSError, ValueError):
                pass
        return state

    def _pf_state(self, vf: Vf) -> VfState | None:
        if vf.pf_ifname is None:
            return None
        try:
            with rtnl() as host:
                pf = host.link(vf.pf_ifname)
                if pf is None:
                    return None
                return vf_states(host, pf.index).get(vf.index)
        except NetlinkError as exc:
            log.warning("reading VF %s through %s: %s", vf.pci, vf.pf_ifname, exc)
            return None

    # --- leases ---------------------------------------------------------------------

    def lease(
        self,
        *,
        attachment_id: str,
        container_id: str,
        ifname: str,
        physical_network: str,
        numa_node: int | None,
        pci_slot: str | None = None,
    ) -> tuple[Lease, Vf]:
        with self._lock:
            existing = self.store.by_attachment(attachment_id)
            if existing is not None:  # the same step again (idempotent)
                vf = self.sysfs.vf(existing.pci)
                if vf is not None:
                    return existing, vf
            if physical_network not in self.physical_networks:
                raise InvalidInput(
                    f"physical network {physical_network!r} has no SR-IOV PFs on this host "
                    f"(configured: {', '.join(self.physical_networks) or 'none'})",
                    kind="network",
                    field="physical_network",
                )
            pool = [c for c in self.scan() if c.physical_network == physical_network]
            free = self.store.free_pcis(c.vf.pci for c in pool)
            candidates = [c for c in pool if c.vf.pci in free]
            if pci_slot is not None:
                candidates = [c for c in candidates if c.vf.pci == pci_slot]
                if not candidates:
                    raise Exhausted(
                        f"VF {pci_slot} of physical network {physical_network} is not free "
                        "(or not in its pool)",
                        kind="vf",
                        object_id=pci_slot,
                    )
            cand = choose(candidates, numa_node)
            if cand is None:
                raise Exhausted(
                    f"no free VF on physical network {physical_network}: all {len(pool)} "
                    "VFs of its pool are leased",
                    kind="vf",
                    object_id=physical_network,
                )
            if not self.store.take(cand.vf.pci, attachment_id, container_id, ifname):
                raise DatapathError(f"VF {cand.vf.pci} was leased concurrently")
            lease = self.store.get(cand.vf.pci)
            assert lease is not None
            return lease, cand.vf

    def release(self, attachment_id: str) -> str | None:
        """Restore and free the VF leased to the attachment (if any)."""
        with self._lock:
            lease = self.store.by_attachment(attachment_id)
            if lease is None:
                return None
            self.restore(lease.pci)
            self.store.release(lease.pci)
            return lease.pci

    def reconcile(self, keep: set[str]) -> list[str]:
        """After a crash: VFs leased to no recorded attachment are restored
        and freed; VFs found dirty and unowned are reset."""
        out = []
        with self._lock:
            self.scan(force=True)
            for lease in self.store.leases():
                if lease.pci in keep:
                    continue
                if lease.leased or lease.state != "clean" or self.is_dirty(lease):
                    self.restore(lease.pci)
                    if lease.leased:
                        self.store.release(lease.pci)
                    out.append(f"vf {lease.pci}")
        return out

    def is_dirty(self, lease: Lease) -> bool:
        vf = self.sysfs.vf(lease.pci)
        if vf is None:
            return False
        live = self.read_state(vf)
        base = lease.baseline
        return any(live.get(k) != base.get(k) for k in (*PF_SETTINGS, "driver", "netdev"))

    # --- applying and restoring ----------------------------------------------------------

    def apply(self, vf: Vf, settings: Mapping[str, Any]) -> None:
        """The PF-side settings; a refusal names the setting and the driver."""
        if vf.pf_ifname is None:
            raise DatapathError(f"the PF of VF {vf.pci} has no netdev in this namespace")
        try:
            with rtnl() as host:
                pf = host.link(vf.pf_ifname)
                if pf is None:
                    raise DatapathError(f"PF {vf.pf_ifname} of VF {vf.pci} is gone")
                set_vf(host, pf.index, vf.index, **settings)
        except VfSettingRefused as exc:
            pf_driver = pcidrv.current_driver(self.sysfs_root, vf.pf_pci) or "?"
            limit = known_limit(pf_driver, exc.setting, dict(settings))
            raise InvalidInput(
                f"the {pf_driver} driver of PF {vf.pf_ifname} refused {exc.setting} "
                f"on VF {vf.index} ({vf.pci}): {exc.exc.strerror or exc.exc}"
                + (f" ({limit})" if limit else ""),
                kind="vf",
                object_id=vf.pci,
                field=exc.setting,
            ) from exc
        except NetlinkError as exc:
            raise DatapathError(f"VF {vf.pci} settings: {exc.strerror or exc}") from exc

    def restore(self, pci: str) -> None:
        """Put the VF back to its baseline from the lease row alone: its PF
        settings, its kernel driver, its netdev in the host namespace with
        its name and MTU. Idempotent."""
        with self._lock:
            lease = self.store.get(pci)
            if lease is None:
                return
            base = lease.baseline
            vf = self.sysfs.vf(pci)
            if vf is None:  # the VF is gone (numvfs lowered): nothing to restore
                self.store.cleaned(pci)
                return
            wanted = {k: base[k] for k in PF_SETTINGS if k in base and base[k] is not None}
            live = self._pf_state(vf)
            if live is not None:
                diff = {k: v for k, v in wanted.items() if live.as_dict().get(k) != v}
                if "vlan" in diff or "qos" in diff:
                    diff["vlan"], diff["qos"] = wanted.get("vlan", 0), wanted.get("qos", 0)
                if "min_tx_rate" in diff or "max_tx_rate" in diff:
                    diff["min_tx_rate"] = wanted.get("min_tx_rate", 0)
                    diff["max_tx_rate"] = wanted.get("max_tx_rate", 0)
                for key, value in diff.items():
                    try:
                        self.apply(vf, {key: value})
                    except InvalidInput as exc:
                        log.warning("restoring %s of VF %s: %s", key, pci, exc.message)
            driver = base.get("driver")
            if driver and vf.driver != driver:
                pcidrv.bind(self.sysfs_root, pci, driver)
            elif driver and base.get("netdev") and vf.netdev is None:
                # Its netdev is in a container's namespace (or that namespace
                # is gone and the kernel has not handed it back yet): a rebind
                # makes it again in the host namespace, wherever it was.
                pcidrv.rebind(self.sysfs_root, pci, driver)
            self._restore_netdev(pci, base)
            self.store.cleaned(pci)

    def _restore_netdev(self, pci: str, base: Mapping[str, Any]) -> None:
        vf = self.sysfs.vf(pci)
        if vf is None or vf.netdev is None:
            return
        try:
            with rtnl() as host:
                link = host.link(vf.netdev)
                if link is None:
                    return
                name = base.get("netdev")
                rename = name if name and name != vf.netdev and host.link(name) is None else None
                host.set_link(link.index, up=False)
                host.set_link(link.index, name=rename, mtu=base.get("mtu") or None)
        except NetlinkError as exc:
            raise DatapathError(f"restoring the netdev of VF {pci}: {exc.strerror}") from exc

    # --- listing --------------------------------------------------------------------

    def inventory(self) -> list[dict[str, Any]]:
        """Every pool VF with its lease and live driver/netdev (vf list)."""
        pool = self.scan()
        leases = {lease.pci: lease for lease in self.store.leases()}
        out = []
        for cand in pool:
            vf = cand.vf
            lease = leases.get(vf.pci)
            out.append(
                {
                    "physical_network": cand.physical_network,
                    "pf": vf.pf_ifname,
                    "pf_pci_address": vf.pf_pci,
                    "vf_index": vf.index,
                    "pci_address": vf.pci,
                    "numa_node": vf.numa_node,
                    "driver": vf.driver,
                    "netdev": vf.netdev,
                    "attachment_id": lease.attachment_id if lease else None,
                    "container_id": lease.container_id if lease else None,
                    "state": lease.state if lease else "clean",
                }
            )
        return out
