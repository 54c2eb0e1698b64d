"""Kinds for containers inside a VM (``agent.node_mode = "nested"``): the
container gets a sub-interface of the VM's own NIC, and the VM's port in the
backend is changed so the SDN lets the container's traffic through.

* ``ipvlan_nested`` (network datapath "ipvlan"; the nested default): an
  ipvlan slave (l2, or l3 with ``nested.ipvlan_mode``) sharing the NIC's MAC;
  the container's addresses go on the VM port's allowed_address_pairs.
* ``macvlan_nested`` (datapath "macvlan"): a macvlan in bridge mode with the
  container port's own MAC; each address goes on the VM port's pairs with
  that MAC.
* ``vlan_nested`` (datapath "vlan"): the VM's port is (or becomes) a trunk
  parent; the container's port becomes a sub-port with the lowest free VLAN
  id of that trunk, and a VLAN sub-interface of the NIC goes into the
  container. On OVN the sub-port is a Logical_Switch_Port with parent_name
  and tag.

The container's own port is created unbound (``binds_port = False``): no
host plugs it; its device_owner and ownership tags say whose it is.

Pair updates race with the other containers of the same VM: each is a read,
a change, and a write conditional on the revision read (If-Match); a 412
reads again, ``nested.pair_update_tries`` times at most (bounded, with a
random pause growing with the attempt). The undo removes exactly the pairs
the step recorded, or, after a crash before the step finished, the pairs
derived from the container's port (which the port step's undo deletes only
after this one).

Tenant check: the VM's port is looked up with the agent's credentials (a
token of the VM owner's project, through the API): a port of another
project is Forbidden, and so is a container network of another project that
is not shared. Nothing is changed before these checks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from podwire.datapath.base import Driver
from podwire.datapath.vif import IpvlanNested, MacvlanNested, VifBase, VlanNested
from podwire.errors import Busy, Conflict, Exhausted, Forbidden, InvalidInput, NotFound, Unavailable
from podwire.kinds.base import AttachmentRef, BuildContext, KindEnv, KindPlugin
from podwire.kinds.common import common_fields
from podwire.model import (
    AllowedAddressPair,
    Network,
    Port,
    PortUpdate,
    SubPort,
    TrunkCreate,
)

# The tag podwire's ports carry naming their attachment (agent/ownership.py).
_ATTACHMENT_TAG = "podwire:attachment="
_VLAN_IDS = range(1, 4095)


class VmPort:
    """The VM's NIC and its port in the backend, found once per agent."""

    def __init__(self, env: KindEnv) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._nic: str | None = None
        self._port_id: str | None = None

    def nic(self) -> str:
        with self._lock:
            if self._nic is None:
                from podwire.datapath.nested import default_route_nic

                self._nic = self._env.config.nested.nic or default_route_nic()
            return self._nic

    def nic_mac_mtu(self) -> tuple[str, int]:
        from podwire.datapath.nested import nic_link

        link = nic_link(self.nic())
        if not link.mac:
            raise Unavailable(f"the VM's NIC {link.name} has no MAC address", field="nested.nic")
        return link.mac.lower(), link.mtu or 1500

    def port(self) -> Port:
        """The VM's port as the backend has it now. A port the agent's
        project cannot see is Forbidden: an agent attaches through its own
        VM's port only."""
        env = self._env
        port_id = self._port_id or env.config.nested.port_id
        if port_id is None:
            mac, _ = self.nic_mac_mtu()
            found = env.backend.list_ports(env.ctx, {"mac_address": [mac]})
            found = [p for p in found if p.parent_port_id is None]
            if len(found) != 1:
                raise Forbidden(
                    f"nested mode: {len(found)} ports of project {env.ctx.project_id} have the"
                    f" MAC {mac} of the VM's NIC {self.nic()}; set nested.port_id",
                    kind="port",
                    field="nested.port_id",
                )
            self._port_id = port_id = found[0].id
        try:
            return env.backend.get_port(env.ctx, port_id)
        except NotFound:
            raise Forbidden(
                f"port {port_id} is not a port of project {env.ctx.project_id}:"
                " an agent attaches containers only through its own VM's port",
                kind="port",
                object_id=port_id,
                field="nested.port_id",
            ) from None

    def wait_for_host(self, *, port_revision: int = -1, trunk_revision: int = -1) -> None:
        """Return once the host under the VM has applied the VM port at
        ``port_revision`` (its pairs) and its trunk at ``trunk_revision``
        (its sub-ports): then the container's traffic passes the host's port
        security and reaches the sub-port's network. A host that follows the
        VM port says so in its binding:vif_details (podwire/kinds/vm_ports.py);
        a port without that answer (OVN, whose chassis applies what the
        northbound database says, or a host without the watch) is not
        waited for. Bounded by ``nested.host_wait_seconds``: past it the ADD
        fails (Unavailable) and is undone."""
        from podwire.kinds.vm_ports import HOST_ACK_KEY

        env = self._env
        timeout = env.config.nested.host_wait_seconds
        if timeout <= 0:
            return
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            port = self.port()
            ack = port.binding.vif_details.get(HOST_ACK_KEY)
            if not isinstance(ack, dict):
                return
            if ack.get("port", -1) >= port_revision and ack.get("trunk", -1) >= trunk_revision:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the host of port {port.id} has not applied revision {port_revision}"
                    f" (trunk {trunk_revision}) in {timeout} s (it has {ack})",
                    kind="port",
                    object_id=port.id,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def check_tenant(env: KindEnv, vm: Port, network: Network | None, network_id: str) -> None:
    """The container's network must be one the VM owner's project may use."""
    if network is None:
        try:
            network = env.backend.get_network(env.ctx, network_id)
        except NotFound:
            raise Forbidden(
                f"network {network_id} is not usable by project {vm.project_id}",
                kind="network",
                object_id=network_id,
            ) from None
    if network.project_id != vm.project_id and not network.shared:
        raise Forbidden(
            f"network {network.id} belongs to another project than the VM's port {vm.id}",
            kind="network",
            object_id=network.id,
        )


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.005 * min(attempt + 1, 20)))


def _pair_key(pair: Mapping[str, Any] | AllowedAddressPair, port_mac: str) -> tuple[str, str]:
    if isinstance(pair, AllowedAddressPair):
        ip, mac = pair.ip_address, pair.mac_address
    else:
        ip, mac = pair["ip_address"], pair.get("mac_address")
    return str(ipaddress.ip_network(ip, strict=False)), (mac or port_mac).lower()


class NestedKind(KindPlugin):
    """What the three nested kinds share: the VM port, the MTU check."""

    binds_port: ClassVar[bool] = False
    node_modes: ClassVar[tuple[str, ...]] = ("nested",)
    one_project = True

    def __init__(self, env: KindEnv) -> None:
        super().__init__(env)
        self.vm = VmPort(env)

    def _checked_mtu(self, ctx: BuildContext) -> None:
        _, nic_mtu = self.vm.nic_mac_mtu()
        if ctx.network.mtu > nic_mtu:
            raise InvalidInput(
                f"network {ctx.network.name or ctx.network.id} has MTU {ctx.network.mtu}, more"
                f" than the {nic_mtu} of the VM's NIC {self.vm.nic()}: a nested container's"
                " frames leave through that NIC",
                kind="network",
                object_id=ctx.network.id,
                field="mtu",
            )

    def make_driver(self) -> Driver:
        from podwire.datapath.nested import NestedDriver

        return NestedDriver(self.link_kind)

    link_kind: ClassVar[str]


class PairKind(NestedKind):
    """macvlan and ipvlan: the container's addresses on the VM port's
    allowed_address_pairs (with the container's MAC for macvlan)."""

    own_mac: ClassVar[bool]

    def _pairs_of(self, addresses: list[str], mac: str) -> list[dict[str, Any]]:
        return [
            {
                "ip_address": str(ipaddress.ip_interface(a).ip),
                "mac_address": mac if self.own_mac else None,
            }
            for a in addresses
        ]

    def apply_backend(self, ref: AttachmentRef, vif: VifBase) -> dict[str, Any]:
        vm = self.vm.port()
        check_tenant(self.env, vm, None, ref.network_id)
        if ref.network_id != vm.network_id:
            raise InvalidInput(
                f"{self.name}: the container's network {ref.network_id} is not the network"
                f" {vm.network_id} of the VM's port {vm.id} (use the vlan kind for another"
                " network)",
                kind="network",
                object_id=ref.network_id,
            )
        pairs = self._pairs_of(list(vif.addresses), vif.mac)
        revision = self._change_pairs(vm.id, add=pairs, remove=[])
        # The data first: a failed wait is undone from it.
        data = {"vm_port_id": vm.id, "pairs": pairs}
        try:
            self.vm.wait_for_host(port_revision=revision)
        except Unavailable:
            self.undo_backend(data)
            raise
        return data

    def undo_backend(self, data: Mapping[str, Any]) -> None:
        pairs = data.get("pairs")
        if pairs is None:
            # Only the intent was recorded: the pairs follow from the
            # container's port, which is deleted only after this undo.
            try:
                port = self.env.backend.get_port(self.env.ctx, data["port_id"])
            except NotFound:
                return
            pairs = self._pairs_of([f.ip_address for f in port.fixed_ips], port.mac_address)
        vm_port_id = data.get("vm_port_id") or self.vm.port().id
        try:
            self._change_pairs(vm_port_id, add=[], remove=list(pairs))
        except NotFound:
            return

    def _change_pairs(
        self, vm_port_id: str, *, add: list[dict[str, Any]], remove: list[dict[str, Any]]
    ) -> int:
        """Change the pairs; the VM port's revision that holds the change."""
        env = self.env
        tries = env.config.nested.pair_update_tries
        for attempt in range(tries):
            port = env.backend.get_port(env.ctx, vm_port_id)
            mac = port.mac_address
            gone = {_pair_key(p, mac) for p in remove}
            current = list(port.allowed_address_pairs)
            kept = [p for p in current if _pair_key(p, mac) not in gone]
            have = {_pair_key(p, mac) for p in kept}
            new = list(kept)
            for pair in add:
                if _pair_key(pair, mac) not in have:
                    new.append(AllowedAddressPair.model_validate(pair))
                    have.add(_pair_key(pair, mac))
            if new == current:
                return port.revision_number
            try:
                return env.backend.update_port(
                    env.ctx,
                    vm_port_id,
                    PortUpdate(allowed_address_pairs=new),
                    if_revision=port.revision_number,
                ).revision_number
            except InvalidInput as exc:
                # The server's configured bound (api.max_allowed_address_pairs)
                # decides how many pairs a port may hold, not a constant here.
                if exc.field != "allowed_address_pairs":
                    raise
                raise Exhausted(
                    f"port {vm_port_id} cannot hold {len(new)} allowed-address-pairs:"
                    f" the VM has too many containers' addresses for its port ({exc.message})",
                    kind="port",
                    object_id=vm_port_id,
                    field="allowed_address_pairs",
                ) from exc
            except Conflict as exc:
                if exc.http_status != 412:  # only a stale revision is worth another try
                    raise
                _pause(attempt)
        raise Busy(
            f"the allowed_address_pairs of port {vm_port_id} kept changing under"
            f" {tries} tries; try again",
            kind="port",
            object_id=vm_port_id,
        )


class IpvlanNestedKind(PairKind):
    name = "ipvlan_nested"
    vif_class = IpvlanNested
    datapath_hints = ("ipvlan",)
    vif_types = ("ipvlan_nested",)
    default_for = ("nested",)
    link_kind = "ipvlan"
    own_mac = False

    def build(self, ctx: BuildContext) -> IpvlanNested:
        self._checked_mtu(ctx)
        nic_mac, _ = self.vm.nic_mac_mtu()
        # An ipvlan slave sends with its NIC's MAC: the VM port's.
        fields = {**common_fields(ctx), "mac": nic_mac}
        return IpvlanNested(
            **fields, parent_ifname=self.vm.nic(), mode=ctx.config.nested.ipvlan_mode
        )


class MacvlanNestedKind(PairKind):
    name = "macvlan_nested"
    vif_class = MacvlanNested
    datapath_hints = ("macvlan",)
    vif_types = ("macvlan_nested",)
    link_kind = "macvlan"
    own_mac = True

    def build(self, ctx: BuildContext) -> MacvlanNested:
        self._checked_mtu(ctx)
        return MacvlanNested(**common_fields(ctx), parent_ifname=self.vm.nic(), mode="bridge")


class VlanNestedKind(NestedKind):
    name = "vlan_nested"
    vif_class = VlanNested
    datapath_hints = ("vlan",)
    vif_types = ("vlan_nested",)
    link_kind = "vlan"

    def allocate(self, ref: AttachmentRef, intent: dict[str, Any]) -> dict[str, Any]:
        """The container's port becomes a sub-port of the VM port's trunk
        with the lowest free VLAN id (taken in the backend, which refuses a
        VLAN id twice on one trunk: a race loses and takes the next)."""
        env = self.env
        vm = self.vm.port()
        check_tenant(env, vm, None, ref.network_id)
        trunk_id = self._trunk_of(vm)
        revision = -1
        for _ in range(env.config.nested.pair_update_tries):
            trunk = env.backend.get_trunk(env.ctx, trunk_id)
            mine = [sp for sp in trunk.sub_ports if sp.port_id == ref.port_id]
            if mine:
                vlan = mine[0].segmentation_id
                revision = trunk.revision_number
                break
            used = {sp.segmentation_id for sp in trunk.sub_ports}
            vlan = next((v for v in _VLAN_IDS if v not in used), 0)
            if not vlan:
                raise Exhausted(
                    f"trunk {trunk_id} of port {vm.id} has no free VLAN id", kind="trunk"
                )
            try:
                revision = env.backend.add_subports(
                    env.ctx, trunk_id, [SubPort(port_id=ref.port_id, segmentation_id=vlan)]
                ).revision_number
                break
            except Conflict:
                continue  # another ADD took that id: look again
        else:
            raise Busy(f"trunk {trunk_id} kept changing; try again", kind="trunk")
        data = {"vm_port_id": vm.id, "trunk_id": trunk_id, "vlan_id": vlan, "port_id": ref.port_id}
        try:
            self.vm.wait_for_host(trunk_revision=revision)
        except Unavailable:
            self.release(data)
            raise
        return data

    def _trunk_of(self, vm: Port) -> str:
        env = self.env
        for _ in range(3):
            found = env.backend.list_trunks(env.ctx, {"port_id": [vm.id]})
            if found:
                return found[0].id
            try:
                return env.backend.create_trunk(env.ctx, TrunkCreate(port_id=vm.id)).id
            except Conflict:
                continue  # another ADD made it first
        raise Busy(f"cannot make port {vm.id} a trunk parent; try again", kind="trunk")

    def release(self, data: Mapping[str, Any]) -> None:
        env = self.env
        port_id = data.get("port_id")
        if port_id is None:
            # Only the intent was recorded: the port carries its attachment's tag.
            tag = _ATTACHMENT_TAG + str(data["attachment_id"])
            found = env.backend.list_ports(env.ctx, {"tags": [tag]})
            if not found:
                return
            port_id = found[0].id
        try:
            port = env.backend.get_port(env.ctx, port_id)
        except NotFound:
            return
        if port.parent_port_id is None:
            return
        for trunk in env.backend.list_trunks(env.ctx, {"port_id": [port.parent_port_id]}):
            # NotFound: not (any more) a member.
            with contextlib.suppress(NotFound, InvalidInput):
                env.backend.remove_subports(env.ctx, trunk.id, [port_id])

    def build(self, ctx: BuildContext) -> VlanNested:
        self._checked_mtu(ctx)
        vlan = ctx.allocation.get("vlan_id")
        if not isinstance(vlan, int):
            raise InvalidInput("vlan_nested: no VLAN id was allocated", kind="attachment")
        return VlanNested(**common_fields(ctx), parent_ifname=self.vm.nic(), vlan_id=vlan)
