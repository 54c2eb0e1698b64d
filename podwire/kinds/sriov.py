"""Kind ``sriov``: an SR-IOV virtual function for the container.

Chosen by a network's datapath hint ``sriov``, a port's vnic_type
``direct`` (kernel mode: the VF's netdev in the container) or
``direct-physical`` (DPDK mode: the VF on vfio-pci), a binding profile flag
``{"dpdk": true}`` also asking for DPDK mode, or Neutron's vif_types
``hw_veb`` / ``hostdev_physical``.

- ``allocate``: a VF leased from the physical network's pool (the network's
  ``physical_network``, else the port's binding profile's, else
  ``sriov.default_physical_network``), on the NUMA node asked for (the
  request's, else the binding profile's ``numa_node``) when one is free
  there; the chosen node is in the VIF and the device-info.
- ``release``: the VF restored to its baseline and the lease freed, from the
  lease record alone (podwire.datapath.sriov.authority).
- ``apply_backend``: binding profile ``pci_slot`` and ``physical_network``
  written back to the port (Neutron's SR-IOV binding); undone at DEL.
- ``reconcile``: after a crash, leased VFs no record holds are restored and
  freed; dirty unowned VFs are reset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from podwire.datapath.base import Driver, DriverDescription, PluggedInterface
from podwire.datapath.sriov.leases import lease_levels
from podwire.datapath.vif import SriovVf, VifBase
from podwire.errors import InvalidInput, NotFound
from podwire.kinds.base import AttachmentRef, BuildContext, KindEnv, KindPlugin
from podwire.kinds.common import common_fields
from podwire.model import PortUpdate

log = logging.getLogger(__name__)

LEASES_FILE = "sriov.db"
DEVICE_INFO_VERSION = "1.1.0"
# Binding profile keys this kind writes back to the port.
WRITTEN_BACK = ("pci_slot", "physical_network")


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


class SriovKind(KindPlugin):
    name = "sriov"
    vif_class = SriovVf
    datapath_hints = ("sriov",)
    vif_types = ("sriov", "hw_veb", "hostdev_physical")
    vnic_types = ("direct", "direct-physical")

    def __init__(self, env: KindEnv) -> None:
        super().__init__(env)
        self._authority: Any = None
        self._auth_lock = threading.Lock()

    # --- the authority (leases, inventory) ---------------------------------------------

    def configured(self) -> bool:
        return bool(self.env.config.sriov.physical_networks)

    def authority(self) -> Any:
        from podwire.datapath.sriov.authority import VfAuthority
        from podwire.datapath.sriov.leases import LeaseStore

        with self._auth_lock:
            if self._authority is None:
                cfg = self.env.config.sriov
                self._authority = VfAuthority(
                    sysfs_root=cfg.sysfs_root,
                    physical_networks=cfg.physical_networks,
                    store=LeaseStore(self.env.config.state_dir / LEASES_FILE),
                )
            return self._authority

    def make_driver(self) -> Driver:
        from podwire.datapath.sriov.driver import SriovDriver

        return SriovDriver(self.authority())

    def describe(self) -> DriverDescription:
        if not self.configured():
            return DriverDescription(
                name=self.name,
                kinds=[self.name],
                available=False,
                reason="no physical network configured (config section sriov)",
            )
        return super().describe()

    def inventory(self) -> list[dict[str, Any]]:
        """Every VF of the configured pools with its lease (``vf list``)."""
        if not self.configured():
            return []
        inventory: list[dict[str, Any]] = self.authority().inventory()
        return inventory

    def leases(self) -> list[dict[str, Any]]:
        """The cheap read for metrics: the lease rows."""
        if not self.configured():
            return []
        return [lease.as_dict() for lease in self.authority().store.leases()]

    def levels(self) -> dict[tuple[str, str], int]:
        if not self.configured():
            return {}
        return lease_levels(self.authority().store.leases())

    # --- hooks ------------------------------------------------------------------

    def allocate(self, ref: AttachmentRef, intent: dict[str, Any]) -> dict[str, Any]:
        backend, ctx = self.env.backend, self.env.ctx
        network = backend.get_network(ctx, ref.network_id)
        port = backend.get_port(ctx, ref.port_id)
        profile = port.binding.profile
        physnet = (
            network.physical_network
            or profile.get("physical_network")
            or self.env.config.sriov.default_physical_network
        )
        if not physnet:
            raise InvalidInput(
                f"network {network.name or network.id} has no physical_network and "
                "sriov.default_physical_network is not set: no VF pool to take from",
                kind="network",
                object_id=network.id,
                field="physical_network",
            )
        numa = ref.numa_node
        if numa is None and isinstance(profile.get("numa_node"), int):
            numa = profile["numa_node"]
        _lease, vf = self.authority().lease(
            attachment_id=ref.attachment_id,
            container_id=ref.container_id,
            ifname=ref.ifname,
            physical_network=physnet,
            numa_node=numa,
        )
        return {
            "pci_address": vf.pci,
            "pf_pci_address": vf.pf_pci,
            "pf_ifname": vf.pf_ifname,
            "vf_index": vf.index,
            "numa_node": vf.numa_node,
            "numa_requested": numa,
            "physical_network": physnet,
        }

    def release(self, data: Mapping[str, Any]) -> None:
        # From the intent alone (the lease is found by the attachment id).
        if self.configured() or (self.env.config.state_dir / LEASES_FILE).exists():
            self.authority().release(data["attachment_id"])

    def build(self, ctx: BuildContext) -> SriovVf:
        alloc = ctx.allocation
        port, network = ctx.port, ctx.network
        profile = port.binding.profile
        dpdk = port.vnic_type == "direct-physical" or _truthy(profile.get("dpdk"))
        trust = profile.get("trust", self.env.config.sriov.trust)
        return SriovVf(
            **common_fields(ctx),
            pci_address=alloc["pci_address"],
            pf_pci_address=alloc.get("pf_pci_address", ""),
            pf_ifname=alloc.get("pf_ifname") or "",
            vf_index=alloc["vf_index"],
            physical_network=alloc.get("physical_network"),
            numa_node=alloc.get("numa_node"),
            driver="vfio-pci" if dpdk else "netdevice",
            vlan_id=network.segmentation_id if network.network_type == "vlan" else None,
            spoofchk=port.port_security_enabled,
            trust=_truthy(trust) if trust is not None else None,
            min_tx_rate=profile.get("min_tx_rate"),
            max_tx_rate=profile.get("max_tx_rate"),
            link_state=profile.get("link_state"),
        )

    def apply_backend(self, ref: AttachmentRef, vif: VifBase) -> dict[str, Any]:
        assert isinstance(vif, SriovVf)
        backend, ctx = self.env.backend, self.env.ctx
        port = backend.get_port(ctx, ref.port_id)
        profile = dict(port.binding.profile)
        before = {k: profile.get(k) for k in WRITTEN_BACK}
        profile.update(pci_slot=vif.pci_address, physical_network=vif.physical_network)
        binding = port.binding.model_copy(update={"profile": profile})
        backend.update_port(ctx, port.id, PortUpdate(binding=binding))
        return {"profile_before": before}

    def undo_backend(self, data: Mapping[str, Any]) -> None:
        backend, ctx = self.env.backend, self.env.ctx
        with suppress(NotFound):
            port = backend.get_port(ctx, data["port_id"])
            before = data.get("profile_before") or {}
            profile = {k: v for k, v in port.binding.profile.items() if k not in WRITTEN_BACK}
            profile.update({k: v for k, v in before.items() if v is not None})
            binding = port.binding.model_copy(update={"profile": profile})
            backend.update_port(ctx, port.id, PortUpdate(binding=binding))

    def reconcile(self, recorded: Sequence[VifBase]) -> list[str]:
        if not self.configured():
            return []
        keep = {v.pci_address for v in recorded if isinstance(v, SriovVf)}
        return list(self.authority().reconcile(keep))

    def device_info(self, vif: VifBase, interface: PluggedInterface | None) -> dict[str, Any]:
        """The Network Plumbing WG device-info (type pci)."""
        if not isinstance(vif, SriovVf):
            return {}
        pci: dict[str, Any] = {"pci-address": vif.pci_address}
        if vif.pf_pci_address:
            pci["pf-pci-address"] = vif.pf_pci_address
        if vif.driver == "vfio-pci":
            from podwire.datapath.sriov.pcidrv import vfio_group_path

            group = vfio_group_path(self.env.config.sriov.sysfs_root, vif.pci_address)
            if group:
                pci["vfio-group"] = group  # podwire's addition: what DPDK opens
        info: dict[str, Any] = {"type": "pci", "version": DEVICE_INFO_VERSION, "pci": pci}
        if vif.numa_node is not None:
            info["numa-node"] = vif.numa_node  # podwire's addition: the node chosen
        return info

    def close(self) -> None:
        with self._auth_lock:
            if self._authority is not None:
                self._authority.store.close()
