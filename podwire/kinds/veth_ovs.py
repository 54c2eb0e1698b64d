"""Kind ``veth_ovs``: a veth pair into the OVS integration bridge with
iface-id = the logical port, so ovn-controller binds it. Chosen when the
backend answers binding vif_type "veth_ovs" (or Neutron's "ovs"), or for a
network with datapath "ovs".

Its driver and its describe() use the node's configured Open_vSwitch
database (``ovn.ovs_db``), not a default path."""

from __future__ import annotations

from podwire.datapath.base import Driver
from podwire.datapath.vif import VethOvs
from podwire.kinds.base import BuildContext, KindPlugin
from podwire.kinds.common import common_fields, short_name

HOST_VETH_PREFIX = "pwv"


class VethOvsKind(KindPlugin):
    name = "veth_ovs"
    vif_class = VethOvs
    datapath_hints = ("ovs",)
    vif_types = ("veth_ovs", "ovs")

    def build(self, ctx: BuildContext) -> VethOvs:
        ovn = ctx.config.ovn
        return VethOvs(
            **common_fields(ctx),
            bridge=ovn.integration_bridge,
            host_ifname=short_name(HOST_VETH_PREFIX, ctx.port.id),
            # OVN names a Logical_Switch_Port after the port id.
            iface_id=ctx.port.id,
            bind_timeout=ovn.bind_timeout,
            # Kept on the VIF so DEL and CHECK work from the record alone.
            ovs_db=ovn.ovs_db,
        )

    def make_driver(self) -> Driver:
        from podwire.datapath.veth_ovs import VethOvsDriver

        return VethOvsDriver(ovs_db=self.env.config.ovn.ovs_db)
