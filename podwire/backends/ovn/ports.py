"""Ports as Logical_Switch_Ports: MACs, fixed IPs (podwire's IPAM against
the switch's generation counter), port security and binding."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import Any

from podwire.backends import rules
from podwire.backends.base import Filters, set_status_one_by_one
from podwire.backends.ovn import codec, ipam, virtual
from podwire.backends.ovn.filters import matches
from podwire.backends.ovn.objects import to_network, to_port, to_subnet
from podwire.backends.ovn.store import NbStore
from podwire.backends.ovn.tables import (
    LSP,
    Row,
    Tables,
    bump_generation,
    created_order,
    find_switch,
    ls_id,
    optional,
    port_rows,
    subnet_rows,
    trunk_id_of_parent,
    usage,
    used_addresses,
    used_macs,
    utc_now,
    xids,
)
from podwire.model import (
    Context,
    FixedIp,
    FixedIpRequest,
    Port,
    PortBinding,
    PortCreate,
    PortUpdate,
    Subnet,
    new_id,
)

_MAC_TRIES = 16
_rng = random.SystemRandom()

# Port fields that live in native columns or are derived, never in external_ids.
_PORT_NATIVE = frozenset(
    {"mac_address", "fixed_ips", "admin_state_up", "port_security_enabled"}
    | {"parent_port_id", "segmentation_id"}
)


# What a port bound to a host plugs as on OVN: the backend decides it (as
# Neutron's ML2/OVN answers binding:vif_type), the agent does not guess.
BOUND_VIF_TYPE = "veth_ovs"


def decided_binding(binding: PortBinding) -> PortBinding:
    if binding.host_id and binding.vif_type in ("", "unbound"):
        return binding.model_copy(update={"vif_type": BOUND_VIF_TYPE})
    return binding


class PortCalls(NbStore):
    """create/get/list/update/delete of ports."""

    def _mac(self, network_id: str, requested: str | None, used: set[str]) -> str:
        if requested is not None:
            return rules.requested_mac(network_id, requested, requested in used)
        octets = self._mac_prefix.split(":")
        for _ in range(_MAC_TRIES):
            tail = [f"{_rng.randrange(256):02x}" for _ in range(6 - len(octets))]
            mac = ":".join([*octets, *tail])
            if mac not in used:
                return mac
        raise rules.no_free_mac(network_id, self._mac_prefix)

    @staticmethod
    def _write_port(lsp: Row, port: Port) -> None:
        """Every column of the port's row from the Port object."""
        ips = [f.ip_address for f in port.fixed_ips]
        lsp.addresses = codec.lsp_addresses(
            port.mac_address,
            ips,
            port_security=port.port_security_enabled,
            extra_macs=virtual.extra_macs(port.mac_address, port.allowed_address_pairs),
        )
        lsp.port_security = codec.lsp_port_security(
            port.mac_address, ips, port.allowed_address_pairs, enabled=port.port_security_enabled
        )
        lsp.enabled = [port.admin_state_up]
        ids = {k: v for k, v in xids(lsp).items() if not k.startswith(codec.PREFIX)}
        for key in (codec.TRUNK_KEY, codec.TRUNK_ID_KEY):
            if key in xids(lsp):
                ids[key] = xids(lsp)[key]
        ids.update(codec.encode(port, exclude=_PORT_NATIVE))
        # What ovn-controller and humans look for on a bound port.
        ids["podwire:host_id"] = port.binding.host_id
        lsp.external_ids = ids

    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        project = rules.project_for(ctx, req.project_id, "port")
        rules.check_pairs(req.allowed_address_pairs)

        def work(txn: Any, t: Tables) -> Port:
            ls = self._network_row(t, ctx, req.network_id, field="network_id")
            bump_generation(ls)
            network = to_network(ls, [])
            subnets = self._subnets_of(t, req.network_id)
            plan = rules.plan_fixed_ips(req.network_id, subnets, req.fixed_ips)
            used_ips, used_macs = usage(ls)
            fixed_ips = ipam.allocate(plan, used_ips, req.device_owner)
            now = utc_now()
            security = (
                req.port_security_enabled
                if req.port_security_enabled is not None
                else network.port_security_enabled
            )
            port = Port(
                id=new_id(),
                name=req.name,
                project_id=project,
                network_id=req.network_id,
                description=req.description,
                mac_address=self._mac(req.network_id, req.mac_address, used_macs),
                fixed_ips=fixed_ips,
                device_id=req.device_id,
                device_owner=req.device_owner,
                status="DOWN",
                admin_state_up=req.admin_state_up,
                port_security_enabled=security,
                security_groups=list(req.security_groups or []),
                allowed_address_pairs=list(req.allowed_address_pairs),
                vnic_type=req.vnic_type,
                binding=decided_binding(req.binding or PortBinding()),
                tags=list(req.tags),
                created_at=now,
                updated_at=now,
            )
            lsp = txn.insert(t[LSP])
            lsp.name = port.id
            lsp.external_ids = {}
            self._write_port(lsp, port)
            ls.addvalue("ports", lsp)
            _follow_pairs(ls, lsp, frozenset(), virtual.pair_ips(lsp))
            return port

        return self._nb.write(work)

    def get_port(self, ctx: Context, port_id: str) -> Port:
        def work(_: Any, t: Tables) -> Port:
            lsp = self._port_row(t, ctx, port_id)
            network_id = xids(lsp).get(codec.PREFIX + "network_id", "")
            return to_port(lsp, self._subnets_of(t, network_id))

        return self._nb.read(work)

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        def work(_: Any, t: Tables) -> list[Port]:
            subnets: dict[str, list[Subnet]] = {}
            for row in subnet_rows(t):
                subnet = to_subnet(row)
                subnets.setdefault(subnet.network_id, []).append(subnet)
            out = []
            for lsp in port_rows(t):
                if not rules.owns(ctx, xids(lsp).get(codec.PREFIX + "project_id")):
                    continue
                network_id = xids(lsp).get(codec.PREFIX + "network_id", "")
                port = to_port(lsp, subnets.get(network_id, []))
                if matches(port, "port", filters):
                    out.append(port)
            return sorted(out, key=created_order)

        return self._nb.read(work)

    def update_port(
        self, ctx: Context, port_id: str, req: PortUpdate, *, if_revision: int | None = None
    ) -> Port:
        if req.allowed_address_pairs is not None:
            rules.check_pairs(req.allowed_address_pairs)

        def work(txn: Any, t: Tables) -> Port:
            lsp = self._port_row(t, ctx, port_id)
            current = to_port(lsp, self._subnets_of(t, xids(lsp)[codec.PREFIX + "network_id"]))
            # external_ids is verified below: a concurrent writer that bumped
            # the revision makes this transaction retry and see the new one.
            rules.check_revision("port", port_id, current.revision_number, if_revision)
            ls = find_switch(t, current.network_id)
            assert ls is not None
            values: dict[str, Any] = req.model_dump(
                exclude_unset=True, exclude_none=True, exclude={"fixed_ips", "mac_address"}
            )
            if req.binding is not None:
                values["binding"] = decided_binding(req.binding).model_dump()
            if "status" in values and lsp.up == [True]:
                values.pop("status")  # OVN says the port is up; that is the truth
            if req.mac_address is not None and req.mac_address != current.mac_address:
                bump_generation(ls)
                values["mac_address"] = self._mac(
                    ls_id(ls), req.mac_address, used_macs(ls, exclude_port=port_id)
                )
            if req.fixed_ips is not None:
                bump_generation(ls)
                values["fixed_ips"] = self._reallocate(t, ls, current, req.fixed_ips, values)
            lsp.verify("external_ids")
            lsp.verify("addresses")
            pairs_before = virtual.pair_ips(lsp)
            updated = Port.model_validate(
                {
                    **current.model_dump(),
                    **values,
                    "revision_number": current.revision_number + 1,
                    "updated_at": utc_now(),
                }
            )
            self._write_port(lsp, updated)
            _follow_pairs(ls, lsp, pairs_before, virtual.pair_ips(lsp))
            return updated

        return self._nb.write(work)

    def _reallocate(
        self,
        t: Tables,
        ls: Row,
        current: Port,
        requests: list[FixedIpRequest],
        values: dict[str, Any],
    ) -> list[FixedIp]:
        """Replace the port's addresses; a subnet-only request keeps the address
        the port already has on that subnet."""
        subnets = self._subnets_of(t, current.network_id)
        plan = rules.plan_fixed_ips(current.network_id, subnets, requests)
        claimed = {(s.id, str(ipaddress.ip_address(a))) for s, a in plan if a is not None}
        spare = [
            (f.subnet_id, f.ip_address)
            for f in current.fixed_ips
            if (f.subnet_id, f.ip_address) not in claimed
        ]
        resolved: list[tuple[Subnet, str | None]] = []
        for subnet, address in plan:
            if address is None:
                reuse = next((c for c in spare if c[0] == subnet.id), None)
                if reuse is not None:
                    spare.remove(reuse)
                    address = reuse[1]
            resolved.append((subnet, address))
        owner = values.get("device_owner", current.device_owner)
        return ipam.allocate(resolved, used_addresses(ls, exclude_port=current.id), owner)

    def set_ports_status(self, ctx: Context, port_ids: Sequence[str], status: str) -> None:
        set_status_one_by_one(self, ctx, port_ids, status)  # type: ignore[arg-type]

    def delete_port(self, ctx: Context, port_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            lsp = self._port_row(t, ctx, port_id)
            lsp.verify("external_ids")
            lsp.verify("parent_name")
            rules.check_port_deletable(port_id, trunk_id_of_parent(lsp), optional(lsp.parent_name))
            ls = find_switch(t, xids(lsp).get(codec.PREFIX + "network_id", ""))
            if ls is not None:
                virtual.refresh(ls, virtual.pair_ips(lsp), deleted=port_id)
                ls.delvalue("ports", lsp)
            lsp.delete()

        self._nb.write(work)


def _follow_pairs(ls: Row, lsp: Row, before: frozenset[str], after: frozenset[str]) -> None:
    """The ports whose addresses the port's pairs gained or lost follow, and
    the port itself may become (or stop being) a virtual port (virtual.py)."""
    changed = before ^ after
    if changed:
        virtual.refresh(ls, changed)
    if virtual.unbound(lsp) or virtual.is_virtual(lsp):
        virtual.apply(lsp, virtual.parents_by_ip(ls))
