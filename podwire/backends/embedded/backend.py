"""The embedded backend: networks, subnets, ports and trunks in one SQL
database (SQLite by default, PostgreSQL with the same code), with its own IPAM.

Every public call is one transaction: it either commits everything or
nothing, so a refused request leaves no half-made row and no allocated
address behind. Writers on SQLite take the database's write lock up front
(BEGIN IMMEDIATE); on PostgreSQL they lock the rows they depend on (the
network, the subnets they allocate from) in a fixed order. The unique
constraints in schema.py are the final guard against duplicates.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from podwire.backends import rules
from podwire.backends.base import Filters
from podwire.config import DEFAULT_MAC_PREFIX, Config
from podwire.errors import (
    Conflict,
    Exhausted,
    InvalidInput,
    Unavailable,
)
from podwire.model import (
    AllowedAddressPair,
    Context,
    FixedIp,
    FixedIpRequest,
    Network,
    NetworkCreate,
    NetworkUpdate,
    Port,
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

from . import convert, ipam, macs
from .db import WRITE, is_memory_sqlite, make_engine
from .filters import where
from .schema import (
    SCHEMA_VERSION,
    allocations,
    meta,
    metadata,
    networks,
    ports,
    subnets,
    subports,
    trunks,
)

T = TypeVar("T")

# PostgreSQL's "try again" states: serialization failure, deadlock.
_RETRY_SQLSTATES = {"40001", "40P01"}
_MAX_TRIES = 5
_MAC_TRIES = 16


class _Retry(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


# The port columns plus its trunk membership, as convert.port expects them.
_PORT_COLUMNS = select(
    ports,
    trunks.c.port_id.label("parent_port_id"),
    subports.c.segmentation_id.label("sub_vlan"),
).select_from(
    ports.outerjoin(subports, subports.c.port_id == ports.c.id).outerjoin(
        trunks, trunks.c.id == subports.c.trunk_id
    )
)


# The statements of the hot path (port create), built once: building a
# statement costs more than running it on SQLite.
_NETWORK_BY_ID = select(networks).where(networks.c.id == bindparam("b_id"))
_NETWORK_BY_ID_LOCKED = _NETWORK_BY_ID.with_for_update()
_SUBNETS_OF_NETWORK = (
    select(subnets).where(subnets.c.network_id == bindparam("b_network")).order_by(subnets.c.id)
)
_SUBNETS_OF_NETWORK_LOCKED = _SUBNETS_OF_NETWORK.with_for_update()
_MAC_USED = select(ports.c.id).where(
    ports.c.network_id == bindparam("b_network"), ports.c.mac_address == bindparam("b_mac")
)
_TAKEN = select(allocations.c.ip_address).where(
    allocations.c.subnet_id == bindparam("b_subnet"),
    allocations.c.ip_address.in_(bindparam("b_addresses", expanding=True)),
)
_HOLDER = select(allocations.c.port_id).where(
    allocations.c.subnet_id == bindparam("b_subnet"),
    allocations.c.ip_address == bindparam("b_address"),
)
_INSERT_PORT = insert(ports)
_INSERT_ALLOCATION = insert(allocations)
_SET_IPAM_LAST = (
    update(subnets)
    .where(subnets.c.id == bindparam("b_subnet"))
    .values(ipam_last=bindparam("b_last"))
)


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, db_url: str, *, mac_prefix: str = DEFAULT_MAC_PREFIX) -> None:
        self.db_url = db_url
        self._mac_prefix = mac_prefix
        try:
            self._engine = make_engine(db_url)
        except OSError as exc:
            raise Unavailable(f"cannot prepare the database {db_url}: {exc}") from None
        self._writer = self._engine.execution_options(**{WRITE: True})
        self._postgres = self._engine.dialect.name == "postgresql"
        # An in-memory SQLite database is one connection: one user at a time.
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if is_memory_sqlite(self._engine) else contextlib.nullcontext()
        )
        # SQLite has one writer at a time anyway; threads of this process
        # queue on a lock instead of polling the file lock with the busy
        # handler's growing sleeps. Other processes still meet that handler:
        # an flock queue across processes was tried and measured worse (fair
        # hand-offs between processes cost more throughput than the busy
        # handler's occasional long sleep costs in tail latency).
        self._writers: contextlib.AbstractContextManager[Any] = (
            threading.Lock()
            if self._engine.dialect.name == "sqlite" and not is_memory_sqlite(self._engine)
            else contextlib.nullcontext()
        )
        try:
            self._write(self._create_schema)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_config(cls, config: Config) -> EmbeddedBackend:
        return cls(config.embedded_db_url(), mac_prefix=config.embedded.mac_prefix)

    def close(self) -> None:
        self._engine.dispose()

    # --- transactions -----------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Connection]:
        engine = self._writer if write else self._engine
        writers = self._writers if write else contextlib.nullcontext()
        try:
            with self._serial, writers, engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            # Our checks run before every write; a constraint firing means a
            # concurrent writer won a race the checks could not see.
            raise Conflict(f"the change collides with another one: {exc.orig}") from None
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES:
                raise _Retry() from exc
            raise Unavailable(f"database {self._where()} is unavailable: {exc.orig}") from None
        except DBAPIError as exc:
            raise Unavailable(f"database {self._where()} failed: {exc.orig}") from None

    def _where(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def _write(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(_MAX_TRIES):
            try:
                with self._transaction(write=True) as conn:
                    return work(conn)
            except _Retry:
                if attempt == _MAX_TRIES - 1:
                    raise Unavailable(
                        f"database {self._where()} kept aborting the transaction"
                    ) from None
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self._transaction(write=False) as conn:
            return work(conn)

    def _create_schema(self, conn: Connection) -> None:
        if self._postgres:
            # Several processes may start at once on an empty database.
            conn.execute(text("SELECT pg_advisory_xact_lock(7170707)"))
        metadata.create_all(conn)
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        if version is None:
            conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif version != str(SCHEMA_VERSION):
            raise Unavailable(
                f"database {self._where()} has schema version {version};"
                f" this podwire needs {SCHEMA_VERSION}"
            )

    # --- scoping ------------------------------------------------------------------

    @staticmethod
    def _owns(ctx: Context, row: Row[Any]) -> bool:
        return rules.owns(ctx, row.project_id)

    def _lock(self, query: Select[Any], lock: bool) -> Select[Any]:
        return query.with_for_update() if lock and self._postgres else query

    def _network_row(
        self,
        conn: Connection,
        ctx: Context,
        network_id: str,
        *,
        field: str | None = None,
        owner: bool = False,
        lock: bool = False,
    ) -> Row[Any]:
        """The network if the caller may see it (and change it, with ``owner``)."""
        query = _NETWORK_BY_ID_LOCKED if lock and self._postgres else _NETWORK_BY_ID
        row = conn.execute(query, {"b_id": network_id}).first()
        rules.check_network_access(
            ctx,
            network_id,
            row.project_id if row is not None else None,
            row is not None and bool(row.shared),
            found=row is not None,
            owner=owner,
            field=field,
        )
        assert row is not None
        return row

    def _subnet_row(
        self, conn: Connection, ctx: Context, subnet_id: str, *, owner: bool = False
    ) -> Row[Any]:
        row = conn.execute(
            self._lock(select(subnets).where(subnets.c.id == subnet_id), owner)
        ).first()

        def network_shared() -> bool:
            assert row is not None
            return bool(
                conn.execute(
                    select(networks.c.shared).where(networks.c.id == row.network_id)
                ).scalar()
            )

        rules.check_subnet_access(
            ctx,
            subnet_id,
            row.project_id if row is not None else None,
            network_shared,
            found=row is not None,
            owner=owner,
        )
        assert row is not None
        return row

    def _port_row(
        self,
        conn: Connection,
        ctx: Context,
        port_id: str,
        *,
        field: str | None = None,
        kind: str = "port",
        lock: bool = False,
    ) -> Row[Any]:
        query = _PORT_COLUMNS.where(ports.c.id == port_id)
        if lock and self._postgres:
            # FOR UPDATE cannot lock the nullable side of an outer join.
            query = query.with_for_update(of=ports)
        row = conn.execute(query).first()
        rules.check_visible(
            ctx,
            kind,
            port_id,
            row.project_id if row is not None else None,
            found=row is not None,
            field=field,
        )
        assert row is not None
        return row

    def _trunk_row(self, conn: Connection, ctx: Context, trunk_id: str) -> Row[Any]:
        row = conn.execute(self._lock(select(trunks).where(trunks.c.id == trunk_id), True)).first()
        rules.check_visible(
            ctx,
            "trunk",
            trunk_id,
            row.project_id if row is not None else None,
            found=row is not None,
        )
        assert row is not None
        return row

    # --- networks -------------------------------------------------------------------

    def _network_scope(self, ctx: Context) -> list[Any]:
        if ctx.is_admin:
            return []
        return [or_(networks.c.project_id == ctx.project_id, networks.c.shared.is_(True))]

    def _networks(self, conn: Connection, clauses: Sequence[Any]) -> list[Network]:
        rows = conn.execute(
            select(networks).where(*clauses).order_by(networks.c.created_at, networks.c.id)
        ).all()
        if not rows:
            return []
        ids = select(networks.c.id).where(*clauses)
        subnet_ids: dict[str, list[str]] = defaultdict(list)
        for sid, nid in conn.execute(
            select(subnets.c.id, subnets.c.network_id)
            .where(subnets.c.network_id.in_(ids))
            .order_by(subnets.c.created_at, subnets.c.id)
        ):
            subnet_ids[nid].append(sid)
        return [convert.network(row, subnet_ids.get(row.id, [])) for row in rows]

    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        project = rules.project_for(ctx, req.project_id, "network")

        def work(conn: Connection) -> Network:
            self._check_segment(conn, req)
            network_id, now = new_id(), _now()
            conn.execute(
                insert(networks).values(
                    id=network_id,
                    **rules.network_fields(req, project),
                    status="ACTIVE",
                    created_at=now,
                    updated_at=now,
                )
            )
            return self._networks(conn, [networks.c.id == network_id])[0]

        return self._write(work)

    def _check_segment(self, conn: Connection, req: NetworkCreate) -> None:
        """Neutron's rule: one network per segment (a VLAN on a physical
        network, a VNI of a tunnel type, a flat physical network); two
        networks on one segment would be one L2 domain under two names."""
        kind = req.network_type
        if kind == "vlan" and req.segmentation_id is not None:
            same = [
                networks.c.network_type == "vlan",
                networks.c.segmentation_id == req.segmentation_id,
                networks.c.physical_network.is_(None)
                if req.physical_network is None
                else networks.c.physical_network == req.physical_network,
            ]
            what = f"VLAN {req.segmentation_id} on physical network {req.physical_network}"
            field = "segmentation_id"
        elif kind in ("vxlan", "geneve") and req.segmentation_id is not None:
            same = [
                networks.c.network_type == kind,
                networks.c.segmentation_id == req.segmentation_id,
            ]
            what = f"{kind} id {req.segmentation_id}"
            field = "segmentation_id"
        elif kind == "flat" and req.physical_network is not None:
            same = [
                networks.c.network_type == "flat",
                networks.c.physical_network == req.physical_network,
            ]
            what = f"flat physical network {req.physical_network}"
            field = "physical_network"
        else:
            return
        if self._postgres:
            # no row to lock for a segment not yet taken: serialise its takers
            conn.execute(text("SELECT pg_advisory_xact_lock(7170708)"))
        holder = conn.execute(select(networks.c.id).where(*same)).scalar()
        if holder is not None:
            raise Conflict(
                f"{what} is already used by network {holder}",
                kind="network",
                object_id=holder,
                field=field,
            )

    def get_network(self, ctx: Context, network_id: str) -> Network:
        def work(conn: Connection) -> Network:
            row = self._network_row(conn, ctx, network_id)
            return self._networks(conn, [networks.c.id == row.id])[0]

        return self._read(work)

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        clauses = [*self._network_scope(ctx), *where(networks, "network", filters)]
        return self._read(lambda conn: self._networks(conn, clauses))

    def update_network(self, ctx: Context, network_id: str, req: NetworkUpdate) -> Network:
        def work(conn: Connection) -> Network:
            row = self._network_row(conn, ctx, network_id, owner=True, lock=True)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            if values.get("shared") is False and row.shared:
                foreign = conn.execute(
                    select(func.count())
                    .select_from(ports)
                    .where(ports.c.network_id == network_id, ports.c.project_id != row.project_id)
                ).scalar_one()
                rules.check_unshare(network_id, foreign)
            conn.execute(
                update(networks)
                .where(networks.c.id == network_id)
                .values(**values, updated_at=_now())
            )
            return self._networks(conn, [networks.c.id == network_id])[0]

        return self._write(work)

    def delete_network(self, ctx: Context, network_id: str) -> None:
        def work(conn: Connection) -> None:
            self._network_row(conn, ctx, network_id, owner=True, lock=True)
            in_use = conn.execute(
                select(func.count()).select_from(ports).where(ports.c.network_id == network_id)
            ).scalar_one()
            rules.check_network_deletable(network_id, in_use)
            conn.execute(delete(subnets).where(subnets.c.network_id == network_id))
            conn.execute(delete(networks).where(networks.c.id == network_id))

        self._write(work)

    # --- subnets --------------------------------------------------------------------

    def _subnet_scope(self, ctx: Context) -> list[Any]:
        if ctx.is_admin:
            return []
        shared = select(networks.c.id).where(networks.c.shared.is_(True))
        return [or_(subnets.c.project_id == ctx.project_id, subnets.c.network_id.in_(shared))]

    def _subnets(self, conn: Connection, clauses: Sequence[Any]) -> list[Subnet]:
        rows = conn.execute(
            select(subnets).where(*clauses).order_by(subnets.c.created_at, subnets.c.id)
        ).all()
        return [convert.subnet(row) for row in rows]

    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        project = rules.project_for(ctx, req.project_id, "subnet")
        cidr = ipam.network(req.cidr)
        gateway = ipam.default_gateway(cidr) if req.gateway_ip == "auto" else req.gateway_ip
        if gateway is not None and req.gateway_ip != "auto":
            self._check_gateway(cidr, gateway)
        if req.allocation_pools is None:
            ranges = ipam.default_pools(cidr, gateway)
        else:
            ranges = ipam.check_pools(cidr, ipam.parse_pools(req.allocation_pools), gateway)
        rules.check_host_routes(req.host_routes, cidr.version)

        def work(conn: Connection) -> Subnet:
            net = self._network_row(
                conn, ctx, req.network_id, field="network_id", owner=True, lock=True
            )
            others = conn.execute(
                select(subnets.c.id, subnets.c.cidr).where(subnets.c.network_id == net.id)
            ).all()
            rules.check_no_overlap(req.cidr, net.id, others)
            subnet_id, now = new_id(), _now()
            conn.execute(
                insert(subnets).values(
                    id=subnet_id,
                    network_id=net.id,
                    project_id=project,
                    name=req.name,
                    description=req.description,
                    ip_version=cidr.version,
                    cidr=str(cidr),
                    gateway_ip=gateway,
                    allocation_pools=ipam.pools_as_dicts(ranges, cidr.version),
                    dns_nameservers=list(req.dns_nameservers),
                    host_routes=[r.model_dump() for r in req.host_routes],
                    enable_dhcp=req.enable_dhcp,
                    ipam_last=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            return self._subnets(conn, [subnets.c.id == subnet_id])[0]

        return self._write(work)

    @staticmethod
    def _check_gateway(cidr: ipam.IpNetwork, gateway: str) -> None:
        value = ipam.to_int(gateway)
        reserved = {int(cidr.network_address)}
        if cidr.version == 4 and cidr.prefixlen < 31:
            reserved.add(int(cidr.broadcast_address))
        if cidr.prefixlen < cidr.max_prefixlen - 1 and value in reserved:
            raise InvalidInput(
                f"gateway_ip {gateway} is the network or broadcast address of {cidr}",
                kind="subnet",
                field="gateway_ip",
            )

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        return self._read(lambda conn: convert.subnet(self._subnet_row(conn, ctx, subnet_id)))

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        clauses = [*self._subnet_scope(ctx), *where(subnets, "subnet", filters)]
        return self._read(lambda conn: self._subnets(conn, clauses))

    def update_subnet(self, ctx: Context, subnet_id: str, req: SubnetUpdate) -> Subnet:
        def work(conn: Connection) -> Subnet:
            row = self._subnet_row(conn, ctx, subnet_id, owner=True)
            values: dict[str, Any] = {}
            for key in ("name", "description"):
                if getattr(req, key) is not None:
                    values[key] = getattr(req, key)
            if req.dns_nameservers is not None:
                rules.check_dns_nameservers(subnet_id, row.ip_version, req.dns_nameservers)
                values["dns_nameservers"] = list(req.dns_nameservers)
            if req.host_routes is not None:
                values["host_routes"] = [r.model_dump() for r in req.host_routes]
            conn.execute(
                update(subnets).where(subnets.c.id == subnet_id).values(**values, updated_at=_now())
            )
            return self._subnets(conn, [subnets.c.id == subnet_id])[0]

        return self._write(work)

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        def work(conn: Connection) -> None:
            self._subnet_row(conn, ctx, subnet_id, owner=True)
            used = conn.execute(
                select(func.count())
                .select_from(allocations)
                .where(allocations.c.subnet_id == subnet_id)
            ).scalar_one()
            rules.check_subnet_deletable(subnet_id, used)
            conn.execute(delete(subnets).where(subnets.c.id == subnet_id))

        self._write(work)

    # --- IPAM -----------------------------------------------------------------------

    def _locked_subnets(self, conn: Connection, network_id: str) -> list[Row[Any]]:
        """The network's subnets, oldest first; on PostgreSQL locked (in id
        order, so two writers never wait on each other crosswise) so that
        allocations on one subnet happen one at a time."""
        query = _SUBNETS_OF_NETWORK_LOCKED if self._postgres else _SUBNETS_OF_NETWORK
        rows = conn.execute(query, {"b_network": network_id}).all()
        return sorted(rows, key=lambda r: (r.created_at, r.id))

    @staticmethod
    def _plan(
        network_id: str, subnet_rows: list[Row[Any]], requests: list[FixedIpRequest] | None
    ) -> list[tuple[Row[Any], str | None]]:
        """Which subnet each requested address comes from (None: any free one),
        addresses in canonical form."""
        plan = rules.plan_fixed_ips(network_id, subnet_rows, requests)
        return [(row, str(ipam.ipaddress.ip_address(a)) if a else None) for row, a in plan]

    def _allocate(
        self,
        conn: Connection,
        port_id: str,
        plan: list[tuple[Row[Any], str | None]],
        device_owner: str,
    ) -> list[FixedIp]:
        """Allocate every planned address for the port: the named ones first
        (so that "any free address" never takes one named later in the list)."""
        result: list[FixedIp | None] = [None] * len(plan)
        named: set[tuple[str, str]] = set()
        rows_out: list[dict[str, Any]] = []
        for position, (row, address) in enumerate(plan):
            if address is None:
                continue
            self._check_named(conn, row, address, device_owner, named)
            named.add((row.id, address))
            rows_out.append(
                {
                    "subnet_id": row.id,
                    "ip_address": address,
                    "port_id": port_id,
                    "position": position,
                }
            )
            result[position] = convert.fixed_ip(row.id, address)
        if rows_out:
            conn.execute(_INSERT_ALLOCATION, rows_out)

        last_seen: dict[str, int | None] = {}
        for position, (row, address) in enumerate(plan):
            if address is not None:
                continue
            chosen = self._pick(conn, row, last_seen)
            conn.execute(
                _INSERT_ALLOCATION,
                {
                    "subnet_id": row.id,
                    "ip_address": chosen,
                    "port_id": port_id,
                    "position": position,
                },
            )
            result[position] = convert.fixed_ip(row.id, chosen)
        versions = {row.id: row.ip_version for row, _ in plan}
        for subnet_id, last in last_seen.items():
            if last is not None:
                conn.execute(
                    _SET_IPAM_LAST,
                    {"b_subnet": subnet_id, "b_last": ipam.to_text(last, versions[subnet_id])},
                )
        return [ip for ip in result if ip is not None]

    @staticmethod
    def _check_named(
        conn: Connection,
        row: Row[Any],
        address: str,
        device_owner: str,
        named: set[tuple[str, str]],
    ) -> None:
        cidr = ipam.network(row.cidr)
        value = ipam.to_int(address)
        if (
            cidr.version == 4
            and cidr.prefixlen < 31
            and value
            in (
                int(cidr.network_address),
                int(cidr.broadcast_address),
            )
        ):
            raise InvalidInput(
                f"fixed_ips: {address} is the network or broadcast address of {cidr}",
                kind="port",
                field="fixed_ips",
            )
        # Only router-like owners (network:router_interface, ...) hold the gateway.
        if address == row.gateway_ip and not device_owner.startswith("network:"):
            raise Conflict(
                f"fixed_ips: {address} is the gateway of subnet {row.id}",
                kind="port",
                field="fixed_ips",
            )
        if (row.id, address) in named:
            raise rules.requested_twice(address)
        holder = conn.execute(_HOLDER, {"b_subnet": row.id, "b_address": address}).scalar()
        if holder is not None:
            raise Conflict(
                f"fixed_ips: ip_address {address} is already allocated on subnet {row.id}",
                kind="port",
                field="fixed_ips",
            )

    @staticmethod
    def _pick(conn: Connection, row: Row[Any], last_seen: dict[str, int | None]) -> str:
        version = row.ip_version
        ranges = ipam.parse_pools(row.allocation_pools)
        if row.id not in last_seen:
            last_seen[row.id] = ipam.to_int(row.ipam_last) if row.ipam_last else None

        def taken(candidates: list[int]) -> set[int]:
            texts = [ipam.to_text(c, version) for c in candidates]
            found = conn.execute(_TAKEN, {"b_subnet": row.id, "b_addresses": texts}).scalars()
            return {ipam.to_int(t) for t in found}

        value = ipam.pick_free(ranges, last_seen[row.id], taken)
        if value is None:
            raise Exhausted(
                f"subnet {row.id} ({row.cidr}) has no free address left",
                kind="subnet",
                object_id=row.id,
                field="fixed_ips",
            )
        if ipam.size(ranges) <= ipam.SEQUENTIAL_LIMIT:
            last_seen[row.id] = value
        return ipam.to_text(value, version)

    # --- ports ----------------------------------------------------------------------

    def _ports(self, conn: Connection, clauses: Sequence[Any]) -> list[Port]:
        rows = conn.execute(
            _PORT_COLUMNS.where(*clauses).order_by(ports.c.created_at, ports.c.id)
        ).all()
        if not rows:
            return []
        fixed: dict[str, list[FixedIp]] = defaultdict(list)
        if len(rows) == 1:
            owners: Any = allocations.c.port_id == rows[0].id
        else:
            owners = allocations.c.port_id.in_(select(ports.c.id).where(*clauses))
        for port_id, subnet_id, ip_address in conn.execute(
            select(allocations.c.port_id, allocations.c.subnet_id, allocations.c.ip_address)
            .where(owners)
            .order_by(allocations.c.port_id, allocations.c.position)
        ):
            fixed[port_id].append(convert.fixed_ip(subnet_id, ip_address))
        names = convert.PORT_FIELDS
        return [
            convert.port(dict(zip(names, row, strict=True)), fixed.get(row[0], [])) for row in rows
        ]

    def _port_scope(self, ctx: Context) -> list[Any]:
        return [] if ctx.is_admin else [ports.c.project_id == ctx.project_id]

    @staticmethod
    def _pairs(pairs: list[AllowedAddressPair]) -> list[dict[str, Any]]:
        rules.check_pairs(pairs)
        return [pair.model_dump() for pair in pairs]

    def _mac(self, conn: Connection, network_id: str, requested: str | None) -> str:
        def used(mac: str) -> bool:
            return (
                conn.execute(_MAC_USED, {"b_network": network_id, "b_mac": mac}).first() is not None
            )

        if requested is not None:
            return rules.requested_mac(network_id, requested, used(requested))
        for _ in range(_MAC_TRIES):
            mac = macs.random_mac(self._mac_prefix)
            if not used(mac):
                return mac
        raise rules.no_free_mac(network_id, self._mac_prefix)

    def _insert_port(self, conn: Connection, values: dict[str, Any], mac: str | None) -> None:
        """Insert the port with the requested MAC or a free random one. On
        SQLite writers take turns, so the check in _mac is final; on
        PostgreSQL two writers may draw the same random MAC at once, and the
        unique constraint decides: the loser draws again (in a savepoint)."""
        for _ in range(_MAC_TRIES):
            values["mac_address"] = self._mac(conn, values["network_id"], mac)
            if not self._postgres:
                conn.execute(_INSERT_PORT, values)
                return
            try:
                with conn.begin_nested():
                    conn.execute(_INSERT_PORT, values)
                return
            except IntegrityError:
                if mac is not None:
                    raise Conflict(
                        f"mac_address {mac} is already used on network {values['network_id']}",
                        kind="port",
                        field="mac_address",
                    ) from None
        raise Exhausted(
            f"no free MAC address with prefix {self._mac_prefix} on network {values['network_id']}",
            kind="network",
            object_id=values["network_id"],
            field="mac_address",
        )

    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        project = rules.project_for(ctx, req.project_id, "port")
        pairs = self._pairs(req.allowed_address_pairs)
        binding = req.binding.model_dump() if req.binding is not None else None

        def work(conn: Connection) -> Port:
            net = self._network_row(conn, ctx, req.network_id, field="network_id")
            subnet_rows = self._locked_subnets(conn, net.id)
            plan = self._plan(net.id, subnet_rows, req.fixed_ips)
            port_id, now = new_id(), _now()
            security = (
                req.port_security_enabled
                if req.port_security_enabled is not None
                else net.port_security_enabled
            )
            values = {
                "id": port_id,
                "network_id": net.id,
                "project_id": project,
                "name": req.name,
                "description": req.description,
                "mac_address": "",
                "device_id": req.device_id,
                "device_owner": req.device_owner,
                "status": "DOWN",
                "admin_state_up": req.admin_state_up,
                "port_security_enabled": security,
                "security_groups": list(req.security_groups or []),
                "allowed_address_pairs": pairs,
                "vnic_type": req.vnic_type,
                "binding_host_id": binding["host_id"] if binding else "",
                "binding_profile": binding["profile"] if binding else {},
                "binding_vif_type": binding["vif_type"] if binding else "unbound",
                "binding_vif_details": binding["vif_details"] if binding else {},
                "created_at": now,
                "updated_at": now,
            }
            self._insert_port(conn, values, req.mac_address)
            fixed_ips = self._allocate(conn, port_id, plan, req.device_owner)
            return convert.port(dict(values, parent_port_id=None, sub_vlan=None), fixed_ips)

        return self._write(work)

    def get_port(self, ctx: Context, port_id: str) -> Port:
        def work(conn: Connection) -> Port:
            self._port_row(conn, ctx, port_id)
            return self._ports(conn, [ports.c.id == port_id])[0]

        return self._read(work)

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        clauses = [*self._port_scope(ctx), *where(ports, "port", filters)]
        return self._read(lambda conn: self._ports(conn, clauses))

    def update_port(self, ctx: Context, port_id: str, req: PortUpdate) -> Port:
        def work(conn: Connection) -> Port:
            row = self._port_row(conn, ctx, port_id, lock=True)
            values: dict[str, Any] = {}
            for key in (
                "name",
                "description",
                "device_id",
                "device_owner",
                "status",
                "admin_state_up",
                "port_security_enabled",
                "vnic_type",
            ):
                value = getattr(req, key)
                if value is not None:
                    values[key] = value
            if req.security_groups is not None:
                values["security_groups"] = list(req.security_groups)
            if req.allowed_address_pairs is not None:
                values["allowed_address_pairs"] = self._pairs(req.allowed_address_pairs)
            if req.binding is not None:
                values.update(
                    binding_host_id=req.binding.host_id,
                    binding_profile=req.binding.profile,
                    binding_vif_type=req.binding.vif_type,
                    binding_vif_details=req.binding.vif_details,
                )
            if req.mac_address is not None and req.mac_address != row.mac_address:
                values["mac_address"] = self._mac(conn, row.network_id, req.mac_address)
            if req.fixed_ips is not None:
                self._reallocate(
                    conn, row, req.fixed_ips, values.get("device_owner", row.device_owner)
                )
            conn.execute(
                update(ports).where(ports.c.id == port_id).values(**values, updated_at=_now())
            )
            return self._ports(conn, [ports.c.id == port_id])[0]

        return self._write(work)

    def _reallocate(
        self, conn: Connection, row: Row[Any], requests: list[FixedIpRequest], device_owner: str
    ) -> None:
        """Replace the port's addresses. Addresses it keeps stay allocated
        throughout; a subnet-only request keeps an address the port already
        has on that subnet rather than trading it for a new one."""
        subnet_rows = self._locked_subnets(conn, row.network_id)
        plan = self._plan(row.network_id, subnet_rows, requests)
        current = [
            (subnet_id, address)
            for subnet_id, address in conn.execute(
                select(allocations.c.subnet_id, allocations.c.ip_address)
                .where(allocations.c.port_id == row.id)
                .order_by(allocations.c.position)
            )
        ]
        claimed = {(r.id, a) for r, a in plan if a is not None}
        spare = [c for c in current if c not in claimed]
        resolved: list[tuple[Row[Any], str | None]] = []
        for subnet_row, address in plan:
            if address is None:
                reuse = next((c for c in spare if c[0] == subnet_row.id), None)
                if reuse is not None:
                    spare.remove(reuse)
                    address = reuse[1]
            resolved.append((subnet_row, address))
        # Free everything, then take back what is kept: the named-address
        # checks then see only other ports' allocations.
        conn.execute(delete(allocations).where(allocations.c.port_id == row.id))
        self._allocate(conn, row.id, resolved, device_owner)

    def delete_port(self, ctx: Context, port_id: str) -> None:
        def work(conn: Connection) -> None:
            row = self._port_row(conn, ctx, port_id, lock=True)
            trunk_id = conn.execute(select(trunks.c.id).where(trunks.c.port_id == port_id)).scalar()
            rules.check_port_deletable(port_id, trunk_id, row.parent_port_id)
            conn.execute(delete(allocations).where(allocations.c.port_id == port_id))
            conn.execute(delete(ports).where(ports.c.id == port_id))

        self._write(work)

    # --- trunks ---------------------------------------------------------------------

    def _trunks(self, conn: Connection, clauses: Sequence[Any]) -> list[Trunk]:
        rows = conn.execute(
            select(trunks).where(*clauses).order_by(trunks.c.created_at, trunks.c.id)
        ).all()
        if not rows:
            return []
        subs: dict[str, list[SubPort]] = defaultdict(list)
        for sub in conn.execute(
            select(subports)
            .where(subports.c.trunk_id.in_(select(trunks.c.id).where(*clauses)))
            .order_by(subports.c.trunk_id, subports.c.segmentation_id)
        ):
            subs[sub.trunk_id].append(convert.subport(sub))
        return [convert.trunk(row, subs.get(row.id, [])) for row in rows]

    def _trunk_scope(self, ctx: Context) -> list[Any]:
        return [] if ctx.is_admin else [trunks.c.project_id == ctx.project_id]

    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        project = rules.project_for(ctx, req.project_id, "trunk")

        def work(conn: Connection) -> Trunk:
            parent = self._port_row(conn, ctx, req.port_id, field="port_id", lock=True)
            other = conn.execute(
                select(trunks.c.id).where(trunks.c.port_id == req.port_id)
            ).scalar()
            rules.check_trunk_parent(req.port_id, parent.parent_port_id, other)
            trunk_id, now = new_id(), _now()
            conn.execute(
                insert(trunks).values(
                    id=trunk_id,
                    project_id=project,
                    name=req.name,
                    description=req.description,
                    port_id=req.port_id,
                    status="ACTIVE",
                    admin_state_up=req.admin_state_up,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._add_subports(conn, ctx, trunk_id, req.port_id, req.sub_ports)
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)

    def _add_subports(
        self,
        conn: Connection,
        ctx: Context,
        trunk_id: str,
        parent_id: str,
        sub_ports: Iterable[SubPort],
    ) -> None:
        sub_ports = list(sub_ports)
        rules.check_new_subports(sub_ports)
        vlans = {
            vlan: port_id
            for vlan, port_id in conn.execute(
                select(subports.c.segmentation_id, subports.c.port_id).where(
                    subports.c.trunk_id == trunk_id
                )
            )
        }
        now = _now()
        for sp in sub_ports:
            if not 1 <= sp.segmentation_id <= 4094:
                raise InvalidInput(
                    f"sub_ports: segmentation_id {sp.segmentation_id} is outside 1-4094",
                    kind="trunk",
                    field="sub_ports",
                )
            port = self._port_row(conn, ctx, sp.port_id, field="sub_ports", lock=True)
            parent_of = conn.execute(
                select(trunks.c.id).where(trunks.c.port_id == sp.port_id)
            ).scalar()
            rules.check_subport(
                trunk_id,
                parent_id,
                sp,
                parent_port=port.parent_port_id,
                trunk_of=parent_of,
                vlans=vlans,
            )
            vlans[sp.segmentation_id] = sp.port_id
            conn.execute(
                insert(subports).values(
                    port_id=sp.port_id,
                    trunk_id=trunk_id,
                    segmentation_type=sp.segmentation_type,
                    segmentation_id=sp.segmentation_id,
                )
            )
            conn.execute(update(ports).where(ports.c.id == sp.port_id).values(updated_at=now))

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        def work(conn: Connection) -> Trunk:
            self._trunk_row(conn, ctx, trunk_id)
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._read(work)

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        clauses = [*self._trunk_scope(ctx), *where(trunks, "trunk", filters)]
        return self._read(lambda conn: self._trunks(conn, clauses))

    def update_trunk(self, ctx: Context, trunk_id: str, req: TrunkUpdate) -> Trunk:
        def work(conn: Connection) -> Trunk:
            self._trunk_row(conn, ctx, trunk_id)
            values = req.model_dump(exclude_unset=True, exclude_none=True)
            conn.execute(
                update(trunks).where(trunks.c.id == trunk_id).values(**values, updated_at=_now())
            )
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        def work(conn: Connection) -> None:
            self._trunk_row(conn, ctx, trunk_id)
            conn.execute(delete(subports).where(subports.c.trunk_id == trunk_id))
            conn.execute(delete(trunks).where(trunks.c.id == trunk_id))

        self._write(work)

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        def work(conn: Connection) -> Trunk:
            row = self._trunk_row(conn, ctx, trunk_id)
            self._add_subports(conn, ctx, trunk_id, row.port_id, sub_ports)
            conn.execute(update(trunks).where(trunks.c.id == trunk_id).values(updated_at=_now()))
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        def work(conn: Connection) -> Trunk:
            self._trunk_row(conn, ctx, trunk_id)
            members = set(
                conn.execute(
                    select(subports.c.port_id).where(subports.c.trunk_id == trunk_id)
                ).scalars()
            )
            rules.check_members(trunk_id, members, port_ids)
            now = _now()
            unique_ids = list(dict.fromkeys(port_ids))
            if unique_ids:
                conn.execute(
                    delete(subports).where(
                        subports.c.trunk_id == trunk_id, subports.c.port_id.in_(unique_ids)
                    )
                )
                conn.execute(update(ports).where(ports.c.id.in_(unique_ids)).values(updated_at=now))
            conn.execute(update(trunks).where(trunks.c.id == trunk_id).values(updated_at=now))
            return self._trunks(conn, [trunks.c.id == trunk_id])[0]

        return self._write(work)
