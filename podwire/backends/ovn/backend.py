"""The ``ovn`` backend: networks, subnets, ports and trunks in the OVN
northbound database, through ovsdbapp (see codec.py for the mapping).

IPAM is podwire's own allocator run against the northbound database: the
addresses of every port are the ``addresses`` column of its
Logical_Switch_Port, and each transaction that takes or frees an address
verifies and bumps a generation counter on the network's Logical_Switch, so
two clients (or agents on two hosts) that pick the same address cannot both
commit: OVSDB tells the second to try again, and it re-reads. OVN's own
dynamic addressing was not chosen because it answers asynchronously (northd
fills ``dynamic_addresses`` later; a CNI ADD needs its address now), it
cannot honour allocation pools, and it is IPv4-only with a single subnet per
switch.

Project isolation is enforced here from external_ids, with the same rules as
the embedded backend: a non-admin sees its own objects and shared networks
(and their subnets); another project's object is NotFound.
"""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import UTC, datetime
from typing import Any

from ovsdbapp.backend.ovs_idl import idlutils

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.backends.ovn import codec, ipam, rows
from podwire.backends.ovn.connection import NbConnection, SslFiles
from podwire.backends.ovn.filters import matches
from podwire.config import DEFAULT_MAC_PREFIX, Config
from podwire.model import (
    Context,
    FixedIp,
    FixedIpRequest,
    Network,
    NetworkCreate,
    NetworkUpdate,
    Port,
    PortBinding,
    PortCreate,
    PortUpdate,
    Subnet,
    SubnetCreate,
    SubnetUpdate,
    SubPort,
    Trunk,
    TrunkCreate,
    TrunkUpdate,
    new_id,
)

Row = Any  # an ovs.db.idl.Row
Tables = Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LS = "Logical_Switch"
LSP = "Logical_Switch_Port"
DHCP = "DHCP_Options"

_MAC_TRIES = 16
_rng = random.SystemRandom()

# Port fields that live in native columns or are derived, never in external_ids.
_PORT_NATIVE = frozenset(
    {"mac_address", "fixed_ips", "admin_state_up", "port_security_enabled"}
    | {"parent_port_id", "segmentation_id"}
)


def _ids(row: Row) -> dict[str, str]:
    """A private copy of the row's external_ids, to modify and write back."""
    return dict(rows.col(row, "external_ids"))


def _xids(row: Row) -> dict[str, str]:
    """The row's external_ids, read-only (shared, memoized)."""
    ids: dict[str, str] = rows.col(row, "external_ids")
    return ids


def _pid(row: Row) -> str:
    return str(_xids(row).get(codec.PREFIX + "id", ""))


def _name(row: Row) -> str:
    return str(rows.col(row, "name"))


def _optional(value: list[Any]) -> Any:
    return value[0] if value else None


# --- reading rows ----------------------------------------------------------------


def _switches(t: Tables) -> list[Row]:
    return [r for r in t[LS].rows.values() if codec.PREFIX + "id" in _xids(r)]


def _switch(t: Tables, network_id: str) -> Row | None:
    for row in idlutils.index_lookup_all(t[LS], name=codec.switch_name(network_id)):
        if _pid(row) == network_id:
            return row
    return None


def _subnet_rows(t: Tables, network_id: str | None = None) -> list[Row]:
    found = [r for r in t[DHCP].rows.values() if codec.PREFIX + "id" in _xids(r)]
    if network_id is not None:
        found = [r for r in found if _xids(r).get(codec.PREFIX + "network_id") == network_id]
    return sorted(found, key=_row_created)


def _row_created(row: Row) -> tuple[datetime, str]:
    """Creation order (microseconds, like the embedded backend), then id."""
    raw = _xids(row).get(codec.PREFIX + "created_at")
    when = datetime.fromisoformat(json.loads(raw)) if raw else _EPOCH
    return (when, _pid(row))


def _subnet_row(t: Tables, subnet_id: str) -> Row | None:
    for row in t[DHCP].rows.values():
        if _pid(row) == subnet_id:
            return row
    return None


def _port_rows(t: Tables) -> list[Row]:
    return [r for r in t[LSP].rows.values() if codec.PREFIX + "id" in _xids(r)]


def _port_row(t: Tables, port_id: str) -> Row | None:
    for row in idlutils.index_lookup_all(t[LSP], name=port_id):
        if _pid(row) == port_id:
            return row
    return None


def _created(obj: Any) -> tuple[datetime, str]:
    return (obj.created_at or _EPOCH, obj.id)


def _now() -> datetime:
    # Microseconds kept: list order is creation order, as in the embedded backend.
    return datetime.now(UTC)


# --- rows to objects ---------------------------------------------------------------


def _network(ls: Row, subnet_ids: list[str]) -> Network:
    return codec.decode(Network, _xids(ls), subnets=subnet_ids)


def _subnet(row: Row) -> Subnet:
    subnet: Subnet = rows.derived(
        row, "external_ids", "subnet", lambda ids: codec.decode(Subnet, ids, cidr=row.cidr)
    )
    return subnet


def _addresses(lsp: Row) -> tuple[str | None, tuple[str, ...]]:
    """(MAC, canonical IPs) from the addresses column."""

    def parse(addresses: list[str]) -> tuple[str | None, tuple[str, ...]]:
        mac, ips = codec.parse_lsp_addresses(list(addresses))
        return mac, tuple(str(ipaddress.ip_address(ip)) for ip in ips)

    parsed: tuple[str | None, tuple[str, ...]] = rows.derived(lsp, "addresses", "parsed", parse)
    return parsed


def _port(lsp: Row, subnets: list[Subnet]) -> Port:
    mac, ips = _addresses(lsp)
    fixed_ips = []
    for ip in ips:
        subnet = ipam.subnet_of(ip, subnets)
        if subnet is not None:
            fixed_ips.append(FixedIp(subnet_id=subnet.id, ip_address=ip))
    ids = _xids(lsp)
    status = ids.get(codec.PREFIX + "status", "DOWN")
    if rows.col(lsp, "up") == [True]:
        status = "ACTIVE"
    tag = _optional(rows.col(lsp, "tag")) or _optional(rows.col(lsp, "tag_request"))
    return codec.decode(
        Port,
        ids,
        mac_address=mac,
        fixed_ips=fixed_ips,
        status=status,
        admin_state_up=_optional(rows.col(lsp, "enabled")) is not False,
        port_security_enabled=bool(rows.col(lsp, "port_security")),
        parent_port_id=_optional(rows.col(lsp, "parent_name")),
        segmentation_id=tag,
    )


def _trunk(parent: Row, ports: list[Row]) -> Trunk:
    data = json.loads(_xids(parent)[codec.TRUNK_KEY])
    parent_name = _name(parent)
    subs = [
        SubPort(
            port_id=_name(p),
            segmentation_id=_optional(rows.col(p, "tag_request")) or _optional(rows.col(p, "tag")),
        )
        for p in ports
        if _optional(rows.col(p, "parent_name")) == parent_name
        and _xids(p).get(codec.TRUNK_ID_KEY) == data["id"]
    ]
    subs.sort(key=lambda s: s.segmentation_id)
    return Trunk.model_validate({**data, "port_id": parent_name, "sub_ports": subs})


def _trunk_parent(t: Tables, trunk_id: str) -> Row | None:
    for row in _port_rows(t):
        raw = _xids(row).get(codec.TRUNK_KEY)
        if raw is not None and json.loads(raw)["id"] == trunk_id:
            return row
    return None


def _trunk_id_of_parent(row: Row) -> str | None:
    raw = _xids(row).get(codec.TRUNK_KEY)
    return json.loads(raw)["id"] if raw is not None else None


def _bump_generation(ls: Row) -> None:
    """Verify-then-bump: the conflict detector for every address change."""
    ls.verify("external_ids")
    ids = _ids(ls)
    ids[codec.IPAM_GENERATION] = str(int(ids.get(codec.IPAM_GENERATION, "0")) + 1)
    ls.external_ids = ids


def _usage(ls: Row, exclude_port: str | None = None) -> tuple[set[str], set[str]]:
    """The IPs and MACs the network's ports hold (one pass over its ports)."""
    ips: set[str] = set()
    macs: set[str] = set()
    for lsp in ls.ports:
        if _name(lsp) == exclude_port:
            continue
        mac, addresses = _addresses(lsp)
        ips.update(addresses)
        if mac is not None:
            macs.add(mac.lower())
    return ips, macs


def _used_addresses(ls: Row, exclude_port: str | None = None) -> set[str]:
    return _usage(ls, exclude_port)[0]


def _used_macs(ls: Row, exclude_port: str | None = None) -> set[str]:
    return _usage(ls, exclude_port)[1]


class OvnBackend:
    """The Backend protocol over the OVN northbound database."""

    name = "ovn"

    def __init__(
        self,
        nb_remotes: list[str],
        timeout: float = 10.0,
        *,
        mac_prefix: str = DEFAULT_MAC_PREFIX,
        ssl: SslFiles | None = None,
    ) -> None:
        self._nb = NbConnection(list(nb_remotes), timeout, ssl)
        self._mac_prefix = mac_prefix.lower()

    @classmethod
    def from_config(cls, config: Config) -> OvnBackend:
        ovn = config.ovn
        ssl = None
        if ovn.ssl_private_key and ovn.ssl_certificate and ovn.ssl_ca_cert:
            ssl = SslFiles(str(ovn.ssl_private_key), str(ovn.ssl_certificate), str(ovn.ssl_ca_cert))
        return cls(
            ovn.nb_remotes,
            timeout=ovn.timeout,
            mac_prefix=config.embedded.mac_prefix,
            ssl=ssl,
        )

    def close(self) -> None:
        self._nb.close()

    # --- scoped lookups (inside a transaction or a read) -------------------------

    def _network_row(
        self,
        t: Tables,
        ctx: Context,
        network_id: str,
        *,
        field: str | None = None,
        owner: bool = False,
    ) -> Row:
        ls = _switch(t, network_id)
        ids = _ids(ls) if ls is not None else {}
        shared = ids.get(codec.PREFIX + "shared") == "true"
        project = ids.get(codec.PREFIX + "project_id")
        rules.check_network_access(
            ctx, network_id, project, shared, found=ls is not None, owner=owner, field=field
        )
        assert ls is not None
        return ls

    def _subnet_row(self, t: Tables, ctx: Context, subnet_id: str, *, owner: bool = False) -> Row:
        row = _subnet_row(t, subnet_id)
        ids = _xids(row) if row is not None else {}

        def network_shared() -> bool:
            ls = _switch(t, ids.get(codec.PREFIX + "network_id", ""))
            return ls is not None and _xids(ls).get(codec.PREFIX + "shared") == "true"

        rules.check_subnet_access(
            ctx,
            subnet_id,
            ids.get(codec.PREFIX + "project_id"),
            network_shared,
            found=row is not None,
            owner=owner,
        )
        assert row is not None
        return row

    def _port_row(
        self, t: Tables, ctx: Context, port_id: str, *, field: str | None = None, kind: str = "port"
    ) -> Row:
        row = _port_row(t, port_id)
        project = _xids(row).get(codec.PREFIX + "project_id") if row is not None else None
        rules.check_visible(ctx, kind, port_id, project, found=row is not None, field=field)
        assert row is not None
        return row

    def _trunk_parent(self, t: Tables, ctx: Context, trunk_id: str) -> Row:
        parent = _trunk_parent(t, trunk_id)
        project = (
            json.loads(_xids(parent)[codec.TRUNK_KEY]).get("project_id")
            if parent is not None
            else None
        )
        rules.check_visible(ctx, "trunk", trunk_id, project, found=parent is not None)
        assert parent is not None
        return parent

    @staticmethod
    def _subnets_of(t: Tables, network_id: str) -> list[Subnet]:
        return [_subnet(r) for r in _subnet_rows(t, network_id)]

    # --- networks -------------------------------------------------------------

    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        project = rules.project_for(ctx, req.project_id, "network")
        now = _now()
        net = Network(
            id=new_id(),
            **rules.network_fields(req, project),
            created_at=now,
            updated_at=now,
        )

        def work(txn: Any, t: Tables) -> Network:
            ls = txn.insert(t[LS])
            ls.name = codec.switch_name(net.id)
            ls.external_ids = codec.encode(net, exclude={"subnets"})
            return net

        return self._nb.write(work)

    def get_network(self, ctx: Context, network_id: str) -> Network:
        def work(_: Any, t: Tables) -> Network:
            ls = self._network_row(t, ctx, network_id)
            return _network(ls, [_pid(r) for r in _subnet_rows(t, network_id)])

        return self._nb.read(work)

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        def work(_: Any, t: Tables) -> list[Network]:
            subnet_ids: dict[str, list[str]] = {}
            for row in _subnet_rows(t):
                nid = _xids(row).get(codec.PREFIX + "network_id", "")
                subnet_ids.setdefault(nid, []).append(_pid(row))
            out = []
            for ls in _switches(t):
                net = _network(ls, subnet_ids.get(_pid(ls), []))
                visible = rules.owns(ctx, net.project_id) or net.shared
                if visible and matches(net, "network", filters):
                    out.append(net)
            return sorted(out, key=_created)

        return self._nb.read(work)

    def update_network(self, ctx: Context, network_id: str, req: NetworkUpdate) -> Network:
        def work(txn: Any, t: Tables) -> Network:
            ls = self._network_row(t, ctx, network_id, owner=True)
            ls.verify("external_ids")
            current = _network(ls, [_pid(r) for r in _subnet_rows(t, network_id)])
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            if values.get("shared") is False and current.shared:
                foreign = [
                    p
                    for p in ls.ports
                    if _xids(p).get(codec.PREFIX + "project_id") != current.project_id
                ]
                rules.check_unshare(network_id, len(foreign))
            updated = current.model_copy(update={**values, "updated_at": _now()})
            updated = Network.model_validate(updated.model_dump())
            ids = _ids(ls)
            ids.update(codec.encode(updated, exclude={"subnets"}))
            ls.external_ids = ids
            return updated

        return self._nb.write(work)

    def delete_network(self, ctx: Context, network_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            ls = self._network_row(t, ctx, network_id, owner=True)
            ls.verify("ports")
            rules.check_network_deletable(network_id, len(ls.ports))
            for row in _subnet_rows(t, network_id):
                row.delete()
            ls.delete()

        self._nb.write(work)

    # --- subnets ----------------------------------------------------------------

    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        project = rules.project_for(ctx, req.project_id, "subnet")
        if req.gateway_ip == "auto":
            gateway = ipam.default_gateway(req.cidr)
        else:
            gateway = req.gateway_ip
            if gateway is not None:
                ipam.check_gateway(req.cidr, gateway)
        if req.allocation_pools is None:
            pools = ipam.default_pools(req.cidr, gateway)
        else:
            pools = sorted(req.allocation_pools, key=lambda p: int(ipaddress.ip_address(p.start)))
            ipam.check_pools(req.cidr, pools, gateway)
        version = ipaddress.ip_network(req.cidr).version
        rules.check_host_routes(req.host_routes, version)

        def work(txn: Any, t: Tables) -> Subnet:
            ls = self._network_row(t, ctx, req.network_id, field="network_id", owner=True)
            _bump_generation(ls)
            rules.check_no_overlap(req.cidr, req.network_id, self._subnets_of(t, req.network_id))
            now = _now()
            subnet = Subnet(
                id=new_id(),
                name=req.name,
                project_id=project,
                network_id=req.network_id,
                description=req.description,
                ip_version=version,
                cidr=req.cidr,
                gateway_ip=gateway,
                allocation_pools=pools,
                dns_nameservers=list(req.dns_nameservers),
                host_routes=list(req.host_routes),
                enable_dhcp=req.enable_dhcp,
                created_at=now,
                updated_at=now,
            )
            row = txn.insert(t[DHCP])
            row.cidr = subnet.cidr
            row.external_ids = codec.encode(subnet, exclude={"cidr"})
            return subnet

        return self._nb.write(work)

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        return self._nb.read(lambda _, t: _subnet(self._subnet_row(t, ctx, subnet_id)))

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        def work(_: Any, t: Tables) -> list[Subnet]:
            shared = {
                _pid(ls) for ls in _switches(t) if _xids(ls).get(codec.PREFIX + "shared") == "true"
            }
            out = []
            for row in _subnet_rows(t):
                subnet = _subnet(row)
                visible = rules.owns(ctx, subnet.project_id) or subnet.network_id in shared
                if visible and matches(subnet, "subnet", filters):
                    out.append(subnet)
            return out

        return self._nb.read(work)

    def update_subnet(self, ctx: Context, subnet_id: str, req: SubnetUpdate) -> Subnet:
        def work(txn: Any, t: Tables) -> Subnet:
            row = self._subnet_row(t, ctx, subnet_id, owner=True)
            row.verify("external_ids")
            current = _subnet(row)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            rules.check_dns_nameservers(subnet_id, current.ip_version, req.dns_nameservers or [])
            updated = Subnet.model_validate(
                {**current.model_dump(), **values, "updated_at": _now()}
            )
            ids = _ids(row)
            ids.update(codec.encode(updated, exclude={"cidr"}))
            row.external_ids = ids
            return updated

        return self._nb.write(work)

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            row = self._subnet_row(t, ctx, subnet_id, owner=True)
            subnet = _subnet(row)
            ls = _switch(t, subnet.network_id)
            if ls is not None:
                _bump_generation(ls)
                net = ipaddress.ip_network(subnet.cidr)
                used = [ip for ip in _used_addresses(ls) if ipaddress.ip_address(ip) in net]
                rules.check_subnet_deletable(subnet_id, len(used))
            row.delete()

        self._nb.write(work)

    # --- ports ------------------------------------------------------------------

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
    def _allocate(
        plan: list[tuple[Subnet, str | None]], used: set[str], device_owner: str
    ) -> list[FixedIp]:
        """Named addresses first, so "any free address" never takes one named later."""
        result: list[FixedIp | None] = [None] * len(plan)
        taken = set(used)
        named: set[str] = set()
        for i, (subnet, address) in enumerate(plan):
            if address is None:
                continue
            canonical = str(ipaddress.ip_address(address))
            if canonical in named:
                raise rules.requested_twice(address)
            ip = ipam.check_requested(
                subnet, canonical, taken, may_be_gateway=device_owner.startswith("network:")
            )
            named.add(ip)
            taken.add(ip)
            result[i] = FixedIp(subnet_id=subnet.id, ip_address=ip)
        for i, (subnet, address) in enumerate(plan):
            if address is not None:
                continue
            ip = ipam.allocate(subnet, taken)
            taken.add(ip)
            result[i] = FixedIp(subnet_id=subnet.id, ip_address=ip)
        return [r for r in result if r is not None]

    @staticmethod
    def _write_port(lsp: Row, port: Port) -> None:
        """Every column of the port's row from the Port object."""
        ips = [f.ip_address for f in port.fixed_ips]
        lsp.addresses = codec.lsp_addresses(
            port.mac_address, ips, port_security=port.port_security_enabled
        )
        lsp.port_security = codec.lsp_port_security(
            port.mac_address, ips, port.allowed_address_pairs, enabled=port.port_security_enabled
        )
        lsp.enabled = [port.admin_state_up]
        ids = {k: v for k, v in _xids(lsp).items() if not k.startswith(codec.PREFIX)}
        for key in (codec.TRUNK_KEY, codec.TRUNK_ID_KEY):
            if key in _xids(lsp):
                ids[key] = _xids(lsp)[key]
        ids.update(codec.encode(port, exclude=_PORT_NATIVE))
        # What ovn-controller and humans look for on a bound port.
        ids["podwire:host_id"] = port.binding.host_id
        lsp.external_ids = ids

    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        project = rules.project_for(ctx, req.project_id, "port")
        rules.check_pairs(req.allowed_address_pairs)

        def work(txn: Any, t: Tables) -> Port:
            ls = self._network_row(t, ctx, req.network_id, field="network_id")
            _bump_generation(ls)
            network = _network(ls, [])
            subnets = self._subnets_of(t, req.network_id)
            plan = rules.plan_fixed_ips(req.network_id, subnets, req.fixed_ips)
            used_ips, used_macs = _usage(ls)
            fixed_ips = self._allocate(plan, used_ips, req.device_owner)
            now = _now()
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
                binding=req.binding or PortBinding(),
                created_at=now,
                updated_at=now,
            )
            lsp = txn.insert(t[LSP])
            lsp.name = port.id
            lsp.external_ids = {}
            self._write_port(lsp, port)
            ls.addvalue("ports", lsp)
            return port

        return self._nb.write(work)

    def get_port(self, ctx: Context, port_id: str) -> Port:
        def work(_: Any, t: Tables) -> Port:
            lsp = self._port_row(t, ctx, port_id)
            network_id = _xids(lsp).get(codec.PREFIX + "network_id", "")
            return _port(lsp, self._subnets_of(t, network_id))

        return self._nb.read(work)

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        def work(_: Any, t: Tables) -> list[Port]:
            subnets: dict[str, list[Subnet]] = {}
            for row in _subnet_rows(t):
                subnet = _subnet(row)
                subnets.setdefault(subnet.network_id, []).append(subnet)
            out = []
            for lsp in _port_rows(t):
                if not rules.owns(ctx, _xids(lsp).get(codec.PREFIX + "project_id")):
                    continue
                network_id = _xids(lsp).get(codec.PREFIX + "network_id", "")
                port = _port(lsp, subnets.get(network_id, []))
                if matches(port, "port", filters):
                    out.append(port)
            return sorted(out, key=_created)

        return self._nb.read(work)

    def update_port(self, ctx: Context, port_id: str, req: PortUpdate) -> Port:
        if req.allowed_address_pairs is not None:
            rules.check_pairs(req.allowed_address_pairs)

        def work(txn: Any, t: Tables) -> Port:
            lsp = self._port_row(t, ctx, port_id)
            current = _port(lsp, self._subnets_of(t, _xids(lsp)[codec.PREFIX + "network_id"]))
            ls = _switch(t, current.network_id)
            assert ls is not None
            values: dict[str, Any] = req.model_dump(
                exclude_unset=True, exclude_none=True, exclude={"fixed_ips", "mac_address"}
            )
            if "status" in values and lsp.up == [True]:
                values.pop("status")  # OVN says the port is up; that is the truth
            if req.mac_address is not None and req.mac_address != current.mac_address:
                _bump_generation(ls)
                values["mac_address"] = self._mac(
                    ls_id(ls), req.mac_address, _used_macs(ls, exclude_port=port_id)
                )
            if req.fixed_ips is not None:
                _bump_generation(ls)
                values["fixed_ips"] = self._reallocate(t, ls, current, req.fixed_ips, values)
            lsp.verify("external_ids")
            lsp.verify("addresses")
            updated = Port.model_validate({**current.model_dump(), **values, "updated_at": _now()})
            self._write_port(lsp, updated)
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
        return self._allocate(resolved, _used_addresses(ls, exclude_port=current.id), owner)

    def delete_port(self, ctx: Context, port_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            lsp = self._port_row(t, ctx, port_id)
            lsp.verify("external_ids")
            lsp.verify("parent_name")
            rules.check_port_deletable(
                port_id, _trunk_id_of_parent(lsp), _optional(lsp.parent_name)
            )
            ls = _switch(t, _xids(lsp).get(codec.PREFIX + "network_id", ""))
            if ls is not None:
                ls.delvalue("ports", lsp)
            lsp.delete()

        self._nb.write(work)

    # --- trunks -----------------------------------------------------------------

    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        project = rules.project_for(ctx, req.project_id, "trunk")

        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._port_row(t, ctx, req.port_id, field="port_id")
            parent.verify("external_ids")
            parent.verify("parent_name")
            rules.check_trunk_parent(
                req.port_id, _optional(parent.parent_name), _trunk_id_of_parent(parent)
            )
            now = _now()
            trunk = Trunk(
                id=new_id(),
                name=req.name,
                project_id=project,
                description=req.description,
                port_id=req.port_id,
                admin_state_up=req.admin_state_up,
                created_at=now,
                updated_at=now,
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, _trunk_json(trunk))
            self._add_subports(t, ctx, trunk.id, parent, [], req.sub_ports)
            return trunk.model_copy(
                update={"sub_ports": sorted(req.sub_ports, key=lambda s: s.segmentation_id)}
            )

        return self._nb.write(work)

    def _add_subports(
        self,
        t: Tables,
        ctx: Context,
        trunk_id: str,
        parent: Row,
        existing: list[SubPort],
        sub_ports: list[SubPort],
    ) -> None:
        rules.check_new_subports(sub_ports)
        vlans = {sp.segmentation_id: sp.port_id for sp in existing}
        for sp in sub_ports:
            lsp = self._port_row(t, ctx, sp.port_id, field="sub_ports")
            lsp.verify("parent_name")
            lsp.verify("external_ids")
            rules.check_subport(
                trunk_id,
                _name(parent),
                sp,
                parent_port=_optional(lsp.parent_name),
                trunk_of=_trunk_id_of_parent(lsp),
                vlans=vlans,
            )
            vlans[sp.segmentation_id] = sp.port_id
            # OVN's containers-in-VMs model: parent_name + tag. tag_request is
            # what northd honours; tag is written too so the row is complete
            # before northd runs (northd keeps tag == tag_request).
            lsp.parent_name = [_name(parent)]
            lsp.tag_request = [sp.segmentation_id]
            lsp.tag = [sp.segmentation_id]
            lsp.setkey("external_ids", codec.TRUNK_ID_KEY, trunk_id)

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        def work(_: Any, t: Tables) -> Trunk:
            return _trunk(self._trunk_parent(t, ctx, trunk_id), _port_rows(t))

        return self._nb.read(work)

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        def work(_: Any, t: Tables) -> list[Trunk]:
            ports = _port_rows(t)
            out = []
            for row in ports:
                if codec.TRUNK_KEY not in _xids(row):
                    continue
                trunk = _trunk(row, ports)
                if rules.owns(ctx, trunk.project_id) and matches(trunk, "trunk", filters):
                    out.append(trunk)
            return sorted(out, key=_created)

        return self._nb.read(work)

    def update_trunk(self, ctx: Context, trunk_id: str, req: TrunkUpdate) -> Trunk:
        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            current = _trunk(parent, _port_rows(t))
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            updated = Trunk.model_validate({**current.model_dump(), **values, "updated_at": _now()})
            parent.setkey("external_ids", codec.TRUNK_KEY, _trunk_json(updated))
            return updated

        return self._nb.write(work)

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        def work(txn: Any, t: Tables) -> None:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            for lsp in _port_rows(t):
                if _xids(lsp).get(codec.TRUNK_ID_KEY) == trunk_id:
                    _clear_subport(lsp)
            parent.delkey("external_ids", codec.TRUNK_KEY)

        self._nb.write(work)

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            current = _trunk(parent, _port_rows(t))
            self._add_subports(t, ctx, trunk_id, parent, current.sub_ports, sub_ports)
            updated = current.model_copy(
                update={
                    "sub_ports": sorted(
                        [*current.sub_ports, *sub_ports], key=lambda s: s.segmentation_id
                    ),
                    "updated_at": _now(),
                }
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, _trunk_json(updated))
            return updated

        return self._nb.write(work)

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        def work(txn: Any, t: Tables) -> Trunk:
            parent = self._trunk_parent(t, ctx, trunk_id)
            parent.verify("external_ids")
            current = _trunk(parent, _port_rows(t))
            members = {sp.port_id for sp in current.sub_ports}
            rules.check_members(trunk_id, members, port_ids)
            gone = set(port_ids)
            for lsp in _port_rows(t):
                if _name(lsp) in gone:
                    lsp.verify("parent_name")
                    _clear_subport(lsp)
            updated = current.model_copy(
                update={
                    "sub_ports": [sp for sp in current.sub_ports if sp.port_id not in gone],
                    "updated_at": _now(),
                }
            )
            parent.setkey("external_ids", codec.TRUNK_KEY, _trunk_json(updated))
            return updated

        return self._nb.write(work)


def ls_id(ls: Row) -> str:
    return _pid(ls)


def _trunk_json(trunk: Trunk) -> str:
    data = trunk.model_dump(mode="json", exclude={"sub_ports", "port_id"})
    return json.dumps(data, sort_keys=True)


def _clear_subport(lsp: Row) -> None:
    lsp.parent_name = []
    lsp.tag_request = []
    lsp.tag = []
    lsp.delkey("external_ids", codec.TRUNK_ID_KEY)


__all__ = ["OvnBackend"]
