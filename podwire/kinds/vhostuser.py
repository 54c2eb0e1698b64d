"""Kind ``vhostuser``: a vhost-user socket on an OVS-DPDK bridge for a DPDK
application in a container (docs/vhostuser.md).

Chosen by a network whose datapath hint is "vhostuser", or by the backend's
binding: vif_type "vhostuser" (Neutron's word), with vif_details
``vhostuser_mode`` ("server" | "client": the application's role, as
Neutron means it for the VM) and optionally ``vhostuser_socket`` (only its
file name is used: the directory is the container's).

The bridge: ``vhostuser.bridge``, else the OVN integration bridge on
backend "ovn" (iface-id = the logical port; ADD waits for ovn-controller's
binding), else "br-dpdk" (the embedded backend's OVS-DPDK bridge).

Host allocation (step ``kind.allocate``): the hugepages check (an ADD the
application could not run for is refused here), and the container's socket
directory, ``<vhostuser.socket_root>/<container id>``, named, not made: the
plug step makes it with everything else, so that its undo (from the VIF in
the record) removes all of it. Nothing to release. The builder refuses a
socket path over 107 bytes, before the plug step.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from podwire.datapath.base import Driver, PluggedInterface
from podwire.datapath.vif import VhostUser, VifBase
from podwire.errors import InvalidInput
from podwire.kinds.base import AttachmentRef, BuildContext, KindPlugin
from podwire.kinds.common import common_fields, short_name

OVS_IFNAME_PREFIX = "vhu"  # as Neutron names vhost-user interfaces
EMBEDDED_BRIDGE = "br-dpdk"
MODES = ("server", "client")


def _container_dir_name(container_id: str) -> str:
    if (
        not container_id
        or "/" in container_id
        or container_id in (".", "..")
        or "\0" in container_id
        or len(container_id) > 128
    ):
        raise InvalidInput(
            f"container id {container_id!r} cannot name a socket directory",
            kind="attachment",
            field="container_id",
        )
    return container_id


class VhostUserKind(KindPlugin):
    name = "vhostuser"
    vif_class = VhostUser
    datapath_hints = ("vhostuser",)
    vif_types = ("vhostuser",)

    # --- where ---------------------------------------------------------------------

    def _bridge(self) -> str:
        cfg = self.env.config
        if cfg.vhostuser.bridge:
            return cfg.vhostuser.bridge
        return cfg.ovn.integration_bridge if cfg.backend == "ovn" else EMBEDDED_BRIDGE

    def _ovs_db(self) -> str:
        cfg = self.env.config
        return cfg.vhostuser.ovs_db or cfg.ovn.ovs_db

    # --- hooks ---------------------------------------------------------------------

    def allocate(self, ref: AttachmentRef, intent: dict[str, Any]) -> dict[str, Any]:
        from podwire.datapath import hugepages

        cfg = self.env.config.vhostuser
        # Refused here, before the plug step: nothing is made on the host.
        hugepages.require_free(
            cfg.hugepages_mb, f"the DPDK application of port {ref.port_id}", ref.port_id
        )
        root = cfg.socket_root
        name = _container_dir_name(ref.container_id)
        return {"container_id": ref.container_id, "socket_dir": str(Path(root) / name)}

    def build(self, ctx: BuildContext) -> VhostUser:
        cfg = ctx.config
        details = ctx.port.binding.vif_details or {}
        mode = details.get("vhostuser_mode") or cfg.vhostuser.default_mode
        if mode not in MODES:
            raise InvalidInput(
                f"port {ctx.port.id} has vhostuser_mode {mode!r}; expected server or client",
                kind="port",
                object_id=ctx.port.id,
                field="vhostuser_mode",
            )
        ovs_ifname = short_name(OVS_IFNAME_PREFIX, ctx.port.id)
        wanted = details.get("vhostuser_socket")
        socket_name = posixpath.basename(wanted) if isinstance(wanted, str) and wanted else ""
        container_id = str(ctx.allocation["container_id"])
        vif = VhostUser(
            **common_fields(ctx),
            mode=mode,
            socket_dir=str(ctx.allocation["socket_dir"]),
            socket_name=socket_name or ovs_ifname,
            config_name=f"{container_id}-{ctx.ifname}",
            bridge=self._bridge(),
            ovs_ifname=ovs_ifname,
            # OVN names a Logical_Switch_Port after the port id.
            iface_id=ctx.port.id,
            ovs_db=self._ovs_db(),
            ovs_socket_dir=str(cfg.vhostuser.ovs_socket_dir),
            wait_bound=cfg.backend == "ovn",
            bind_timeout=cfg.ovn.bind_timeout,
            socket_timeout=cfg.vhostuser.socket_timeout,
            hugepages_mb=cfg.vhostuser.hugepages_mb,
        )
        from podwire.datapath.vhostuser import validate

        # Names and the 107-byte socket paths, before the plug step.
        validate(vif)
        return vif

    def make_driver(self) -> Driver:
        from podwire.datapath.vhostuser import VhostUserDriver

        return VhostUserDriver(ovs_db=self._ovs_db())

    def device_info(self, vif: VifBase, interface: PluggedInterface | None) -> dict[str, Any]:
        """The Network Plumbing WG device-info of type vhost-user; ``mode``
        is the application's role, ``path`` the socket on the host."""
        if not isinstance(vif, VhostUser):
            return {}
        return {
            "type": "vhost-user",
            "version": "1.1.0",
            "vhost-user": {
                "mode": vif.mode,
                "path": str(Path(vif.socket_dir) / vif.socket_name),
            },
        }
