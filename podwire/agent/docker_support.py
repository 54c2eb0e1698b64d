"""What Docker's libnetwork needs from the agent, in Docker's own terms.

The protocol code (podwire.frontends.docker) only translates JSON; this module
holds the meaning:

* Docker networks map to backend networks: created by podwire (deleted with
  the Docker network) or adopted (``-o podwire.network=NAME``, never deleted).
* IPAM pools are records here (``state_dir/docker/pools``); a pool is linked
  to its backend subnet when CreateNetwork arrives (libnetwork asks IPAM for
  the pool and the gateway *before* it creates the network).
* RequestAddress reserves an address by creating an unbound backend port
  (device_owner ``podwire:docker-ipam``), because libnetwork sends no endpoint
  id with it. CreateEndpoint then turns the reservation(s) holding the
  endpoint's addresses into the endpoint's one port (merging the IPv4 and
  IPv6 reservations when there are two) and hands it to ``Agent.attach`` with
  ``netns=None``: the data-path driver leaves the container end in the host
  namespace for dockerd to move. DeleteEndpoint detaches and deletes that
  port; ReleaseAddress deletes reservations no endpoint took (a failed
  CreateEndpoint), so nothing leaks whichever way Docker goes.
* An existing backend port (Zun's ``port=<uuid>``) is attached through the
  endpoint option ``podwire.port``: only when it is on the network, in the
  network's project and unused, and Docker asked for its addresses (``--ip``).

Docker network and pool records are small JSON files written atomically;
endpoints are the agent's attachment records (frontend "docker",
container_id = endpoint id), so an agent restart loses nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from podwire.agent.types import Attachment, AttachRequest, DetachRequest, NetworkSelection
from podwire.errors import Conflict, InvalidInput, NotFound
from podwire.model import (
    AllocationPool,
    FixedIpRequest,
    Network,
    NetworkCreate,
    Port,
    PortCreate,
    PortUpdate,
    Subnet,
    SubnetCreate,
)

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

FRONTEND = "docker"
IPAM_DEVICE_OWNER = "podwire:docker-ipam"
IPAM_PORT_NAME = "docker-ipam"

LOCAL_ADDRESS_SPACE = "PodwireLocal"
GLOBAL_ADDRESS_SPACE = "PodwireGlobal"

# Driver options (docker network create -o KEY=VALUE).
OPT_NETWORK = "podwire.network"  # adopt this backend network (name or id)
OPT_NAME = "podwire.name"  # name of the backend network podwire creates
# Endpoint option (docker network connect --driver-opt KEY=VALUE).
OPT_PORT = "podwire.port"  # attach this existing backend port

# Attachment labels.
LABEL_NETWORK = "docker.network"
LABEL_PORT_ORIGIN = "docker.port"  # "created": podwire made it; "existing": the user's

# The container end lives in the host namespace under this prefix until
# dockerd moves it. "-" never occurs in the hex names the agent gives host
# ends, so the two cannot collide.
_IFNAME_PREFIX = "pwd-"
_IFNAMSIZ = 15


def endpoint_ifname(endpoint_id: str) -> str:
    """The host-namespace name of an endpoint's container end: a function of
    the endpoint id alone, so DEL finds it even without a record."""
    return (_IFNAME_PREFIX + endpoint_id)[:_IFNAMSIZ]


# --- what the protocol layer passes in and gets back -----------------------------


@dataclass(frozen=True)
class PoolData:
    """One entry of CreateNetwork's IPv4Data / IPv6Data."""

    address_space: str
    pool: str  # CIDR
    gateway: str | None = None  # "198.18.0.1/24" as Docker sends it, or a bare IP
    aux_addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointInterface:
    """Docker's Interface object: addresses with prefix, MAC; empty = unset."""

    address: str = ""
    address_v6: str = ""
    mac: str = ""


@dataclass(frozen=True)
class StaticRoute:
    destination: str
    next_hop: str | None  # None: a connected route


@dataclass(frozen=True)
class JoinInfo:
    src_name: str
    gateway: str | None
    gateway_v6: str | None
    static_routes: tuple[StaticRoute, ...]


# --- durable records -----------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolRecord(_Record):
    id: str
    address_space: str
    cidr: str
    sub_pool: str | None = None
    v6: bool = False
    refs: int = 1
    # Set by CreateNetwork, cleared by DeleteNetwork.
    docker_network_id: str | None = None
    network_id: str | None = None
    subnet_id: str | None = None


class NetworkRecord(_Record):
    docker_network_id: str
    network_id: str
    # True: podwire created the backend network and deletes it with the
    # Docker network. False: adopted, left as found.
    created: bool


class _JsonDir:
    """One JSON file per record, written atomically (rename), so a crash
    leaves either the old or the new record, never half of one."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path

    def _file(self, key: str) -> Path:
        return self.path / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._file(key).read_text())
            return data
        except FileNotFoundError:
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        target = self._file(key)
        tmp = target.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as fh:
            json.dump(value, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            self._file(key).unlink()

    def all(self) -> list[dict[str, Any]]:
        out = []
        for f in sorted(self.path.glob("*.json")):
            with suppress(FileNotFoundError, ValueError):
                out.append(json.loads(f.read_text()))
        return out


# --- the service -----------------------------------------------------------------------


class DockerSupport:
    """libnetwork's NetworkDriver and IpamDriver semantics over one Agent."""

    def __init__(self, agent: Agent, state_dir: Path | None = None) -> None:
        self.agent = agent
        root = (state_dir or agent.config.state_dir) / "docker"
        self._pools = _JsonDir(root / "pools")
        self._networks = _JsonDir(root / "networks")
        # Endpoints whose interface Leave removed (a Join may follow).
        self._left = _JsonDir(root / "left")
        # Pool and network records change together (link, unlink, refcount).
        self._lock = threading.RLock()

    @property
    def _backend(self) -> Any:
        return self.agent.backend

    @property
    def _ctx(self) -> Any:
        return self.agent.ctx

    # --- IPAM: pools ----------------------------------------------------------------

    def request_pool(
        self, address_space: str, pool: str, sub_pool: str, v6: bool
    ) -> tuple[str, str]:
        """Returns (pool id, CIDR). The same request gives the same id (with a
        reference count); a pool overlapping another of the space is refused."""
        space = address_space or LOCAL_ADDRESS_SPACE
        if not pool:
            if sub_pool:
                raise InvalidInput("SubPool without Pool: give --subnet with --ip-range")
            family = "IPv6" if v6 else "IPv4"
            raise InvalidInput(
                f"podwire IPAM does not choose {family} pools: give the network a --subnet "
                f"(libnetwork always asks for an IPv4 pool, so an IPv6 network needs an IPv4 "
                f"--subnet too)",
                field="Pool",
            )
        cidr = _network(pool, "Pool")
        sub = None
        if sub_pool:
            sub_net = _network(sub_pool, "SubPool")
            if sub_net.version != cidr.version or not sub_net.subnet_of(cidr):  # type: ignore[arg-type]
                raise InvalidInput(f"SubPool {sub_pool} is not inside Pool {pool}", field="SubPool")
            sub = str(sub_net)
        pool_id = f"{space}/{cidr}" + (f"/{sub}" if sub else "")
        with self._lock:
            existing = self._get_pool(pool_id)
            if existing is not None:
                existing.refs += 1
                self._put_pool(existing)
                return pool_id, str(cidr)
            for other in self._all_pools():
                if other.address_space != space:
                    continue
                if ipaddress.ip_network(other.cidr).overlaps(cidr):
                    raise Conflict(
                        f"pool {cidr} overlaps pool {other.cidr} in address space {space}"
                        + (
                            f" (docker network {other.docker_network_id})"
                            if other.docker_network_id
                            else ""
                        ),
                        kind="pool",
                        object_id=pool_id,
                    )
            self._put_pool(
                PoolRecord(
                    id=pool_id,
                    address_space=space,
                    cidr=str(cidr),
                    sub_pool=sub,
                    v6=cidr.version == 6,
                )
            )
        return pool_id, str(cidr)

    def release_pool(self, pool_id: str) -> None:
        with self._lock:
            record = self._get_pool(pool_id)
            if record is None:
                return  # released already: DEL is idempotent
            record.refs -= 1
            if record.refs > 0:
                self._put_pool(record)
                return
            if record.network_id is not None:
                # The network still exists; its subnet remains the source of
                # truth. Forget the pool; the network keeps working.
                log.info("pool %s released while linked to %s", pool_id, record.docker_network_id)
            self._pools.delete(pool_id)

    # --- IPAM: addresses -------------------------------------------------------------

    def request_address(self, pool_id: str, address: str, is_gateway: bool) -> str:
        """Returns the address with the pool's prefix, "198.18.0.5/24"."""
        pool = self._require_pool(pool_id)
        cidr = ipaddress.ip_network(pool.cidr)
        wanted = _address_in(address, cidr, "Address") if address else None
        if pool.subnet_id is None or is_gateway:
            # Before CreateNetwork (gateway, --aux-address): there is no
            # backend subnet yet; the gateway becomes the subnet's gateway_ip.
            if wanted is None:
                if not is_gateway:
                    raise InvalidInput(
                        f"pool {pool.cidr} is not on a network yet; only a given address "
                        "can be requested",
                        field="Address",
                    )
                if pool.subnet_id is not None:
                    subnet = self._backend.get_subnet(self._ctx, pool.subnet_id)
                    if subnet.gateway_ip:
                        return f"{subnet.gateway_ip}/{cidr.prefixlen}"
                wanted = cidr[1] if cidr.num_addresses > 2 else cidr[0]
            return f"{wanted}/{cidr.prefixlen}"

        assert pool.network_id is not None
        if wanted is not None:
            holder = self._port_with_address(pool.network_id, str(wanted))
            if holder is not None:
                if holder.device_owner == IPAM_DEVICE_OWNER or holder.device_id:
                    raise Conflict(
                        f"address {wanted} is in use by port {holder.id}"
                        + (f" (device {holder.device_id})" if holder.device_id else ""),
                        kind="address",
                        object_id=str(wanted),
                    )
                # An unused port of the user's holds it: the endpoint must
                # bring that port (podwire.port); CreateEndpoint checks.
                return f"{wanted}/{cidr.prefixlen}"
        network = self._backend.get_network(self._ctx, pool.network_id)
        port = self._backend.create_port(
            self._ctx,
            PortCreate(
                network_id=network.id,
                project_id=network.project_id,
                name=IPAM_PORT_NAME,
                device_owner=IPAM_DEVICE_OWNER,
                fixed_ips=[
                    FixedIpRequest(
                        subnet_id=pool.subnet_id,
                        ip_address=str(wanted) if wanted is not None else None,
                    )
                ],
            ),
        )
        ip = next(f.ip_address for f in port.fixed_ips if f.subnet_id == pool.subnet_id)
        return f"{ip}/{cidr.prefixlen}"

    def release_address(self, pool_id: str, address: str) -> None:
        pool = self._get_pool(pool_id)
        if pool is None or pool.network_id is None:
            return  # gateway/aux of a network gone or never made: nothing reserved
        ip = str(_address_in(address, ipaddress.ip_network(pool.cidr), "Address"))
        holder = self._port_with_address(pool.network_id, ip)
        if holder is None:
            return
        if holder.device_owner == IPAM_DEVICE_OWNER and not holder.device_id:
            self._drop_address(holder, ip)
            return
        if holder.device_owner == f"podwire:{FRONTEND}" and holder.device_id:
            # Docker forgot the endpoint without DeleteEndpoint reaching us
            # (or it failed): finish it, so the address is really free.
            record = self._record(holder.device_id)
            if record is not None and record.port_id == holder.id:
                log.warning("ReleaseAddress %s: deleting endpoint %s first", ip, holder.device_id)
                self.delete_endpoint(record.labels.get(LABEL_NETWORK, ""), holder.device_id)
        # Any other holder is a port podwire did not reserve: not ours to free.

    def _drop_address(self, port: Port, ip: str) -> None:
        rest = [f for f in port.fixed_ips if f.ip_address != ip]
        try:
            if rest:
                self._backend.update_port(
                    self._ctx,
                    port.id,
                    PortUpdate(
                        fixed_ips=[
                            FixedIpRequest(subnet_id=f.subnet_id, ip_address=f.ip_address)
                            for f in rest
                        ]
                    ),
                )
            else:
                self._backend.delete_port(self._ctx, port.id)
        except NotFound:
            pass

    # --- networks --------------------------------------------------------------------------

    def create_network(
        self,
        docker_network_id: str,
        ipv4: list[PoolData],
        ipv6: list[PoolData],
        options: Mapping[str, str],
    ) -> None:
        if not docker_network_id:
            raise InvalidInput("NetworkID is empty", field="NetworkID")
        with self._lock:
            existing = self._get_network(docker_network_id)
            if existing is not None:
                return  # libnetwork replays CreateNetwork after a restart
            datas = [*ipv4, *ipv6]
            if not datas:
                raise InvalidInput("the network has no IPAM pool: give it a --subnet")
            # None: the pool comes from another IPAM driver (Docker's own);
            # Docker then assigns the addresses and podwire only records them.
            pools = [self._pool_for(data) for data in datas]
            with ExitStack() as undo:
                adopt = options.get(OPT_NETWORK)
                if adopt:
                    network = self.agent.resolve_network(adopt)
                    subnets = self._adopted_subnets(network, datas)
                    created = False
                else:
                    network, subnets = self._create_backend_network(
                        docker_network_id, pools, datas, options, undo
                    )
                    created = True
                for pool, subnet in zip(pools, subnets, strict=True):
                    if pool is None:
                        continue
                    pool.docker_network_id = docker_network_id
                    pool.network_id = network.id
                    pool.subnet_id = subnet.id
                    self._put_pool(pool)
                self._networks.put(
                    docker_network_id,
                    NetworkRecord(
                        docker_network_id=docker_network_id, network_id=network.id, created=created
                    ).model_dump(),
                )
                undo.pop_all()

    def _pool_for(self, data: PoolData) -> PoolRecord | None:
        cidr = str(_network(data.pool, "Pool"))
        space = data.address_space or LOCAL_ADDRESS_SPACE
        found = [p for p in self._all_pools() if p.address_space == space and p.cidr == cidr]
        if not found:
            return None
        pool = found[0]
        if pool.docker_network_id is not None:
            raise Conflict(
                f"pool {cidr} already belongs to docker network {pool.docker_network_id}",
                kind="pool",
                object_id=pool.id,
            )
        return pool

    def _create_backend_network(
        self,
        docker_network_id: str,
        pools: list[PoolRecord | None],
        datas: list[PoolData],
        options: Mapping[str, str],
        undo: ExitStack,
    ) -> tuple[Network, list[Subnet]]:
        name = options.get(OPT_NAME) or f"docker-{docker_network_id[:12]}"
        network = self._backend.create_network(
            self._ctx,
            NetworkCreate(name=name, description=f"docker network {docker_network_id}"),
        )
        undo.callback(_quietly, "delete network", self._delete_backend_network, network.id)
        subnets = []
        for pool, data in zip(pools, datas, strict=True):
            cidr = _network(data.pool, "Pool")
            gateway = _gateway(data.gateway, cidr)
            subnets.append(
                self._backend.create_subnet(
                    self._ctx,
                    SubnetCreate(
                        network_id=network.id,
                        cidr=str(cidr),
                        name=f"docker-{docker_network_id[:12]}-v{cidr.version}",
                        gateway_ip=gateway,
                        allocation_pools=_allocation_pools(pool, gateway) if pool else None,
                    ),
                )
            )
        return network, subnets

    def _adopted_subnets(self, network: Network, datas: list[PoolData]) -> list[Subnet]:
        subnets = self._backend.list_subnets(self._ctx, {"network_id": [network.id]})
        by_cidr = {s.cidr: s for s in subnets}
        out = []
        for data in datas:
            cidr = _network(data.pool, "Pool")
            subnet = by_cidr.get(str(cidr))
            if subnet is None:
                have = ", ".join(sorted(by_cidr)) or "none"
                raise InvalidInput(
                    f"backend network {network.name or network.id} has no subnet {cidr} "
                    f"(its subnets: {have}); give --subnet accordingly",
                    kind="network",
                    object_id=network.id,
                    field="Pool",
                )
            docker_gw = _gateway(data.gateway, cidr)
            if docker_gw is not None and subnet.gateway_ip and docker_gw != subnet.gateway_ip:
                raise InvalidInput(
                    f"subnet {subnet.cidr} of backend network {network.name or network.id} has "
                    f"gateway {subnet.gateway_ip}, not {docker_gw}: pass --gateway "
                    f"{subnet.gateway_ip}",
                    kind="subnet",
                    object_id=subnet.id,
                    field="Gateway",
                )
            out.append(subnet)
        return out

    def delete_network(self, docker_network_id: str) -> None:
        with self._lock:
            record = self._get_network(docker_network_id)
            if record is None:
                return
            if record.created:
                self._delete_backend_network(record.network_id)
            else:
                self._delete_reservations(record.network_id)
                with suppress(NotFound):
                    # Refused (and logged) while anything else is plugged;
                    # an ADD on the network recreates it.
                    self._remove_host_bridge(
                        self._backend.get_network(self._ctx, record.network_id)
                    )
            for pool in self._all_pools():
                if pool.docker_network_id == docker_network_id:
                    pool.docker_network_id = pool.network_id = pool.subnet_id = None
                    self._put_pool(pool)
            self._networks.delete(docker_network_id)

    def _delete_backend_network(self, network_id: str) -> None:
        self._delete_reservations(network_id)
        try:
            network = self._backend.get_network(self._ctx, network_id)
        except NotFound:
            return
        for subnet in self._backend.list_subnets(self._ctx, {"network_id": [network_id]}):
            with suppress(NotFound):
                self._backend.delete_subnet(self._ctx, subnet.id)
        with suppress(NotFound):
            self._backend.delete_network(self._ctx, network_id)
        self._remove_host_bridge(network)

    def _remove_host_bridge(self, network: Network) -> None:
        """The per-network bridge holds the gateway addresses: a deleted
        network must not leave them on the host (the agent's one mechanism,
        refused and logged while anything is plugged)."""
        self.agent.remove_network_bridge(network)

    def _delete_reservations(self, network_id: str) -> None:
        """Reservations no endpoint took (Docker skipped a ReleaseAddress)."""
        ports = self._backend.list_ports(
            self._ctx, {"network_id": [network_id], "device_owner": [IPAM_DEVICE_OWNER]}
        )
        for port in ports:
            if not port.device_id:
                with suppress(NotFound):
                    self._backend.delete_port(self._ctx, port.id)

    # --- endpoints -------------------------------------------------------------------------

    def create_endpoint(
        self,
        docker_network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: Mapping[str, Any],
    ) -> EndpointInterface:
        """Returns what Docker did not give: the MAC and, without podwire
        IPAM, nothing else (Docker then owns the addresses)."""
        if not endpoint_id:
            raise InvalidInput("EndpointID is empty", field="EndpointID")
        net_record = self._require_network(docker_network_id)
        network = self._backend.get_network(self._ctx, net_record.network_id)
        subnets = self._backend.list_subnets(self._ctx, {"network_id": [network.id]})
        wanted = _interface_addresses(interface, subnets)
        mac = interface.mac or None
        existing_port = options.get(OPT_PORT)

        with ExitStack() as undo:
            if existing_port:
                port = self._existing_port(str(existing_port), network, wanted, mac)
                origin = "existing"
            else:
                port = self._endpoint_port(network, wanted, mac, undo)
                origin = "created"
            result = self.agent.attach(
                AttachRequest(
                    container_id=endpoint_id,
                    netns=None,
                    networks=[
                        NetworkSelection(
                            network=network.id,
                            ifname=endpoint_ifname(endpoint_id),
                            port_id=port.id,
                        )
                    ],
                    frontend=FRONTEND,
                    labels={LABEL_NETWORK: docker_network_id, LABEL_PORT_ORIGIN: origin},
                )
            ).interfaces[0]
            undo.pop_all()

        bound = result.port
        by_subnet = {s.id: s for s in result.subnets}
        out_v4 = out_v6 = ""
        for fip in bound.fixed_ips:
            subnet = by_subnet.get(fip.subnet_id)
            if subnet is None:
                continue
            text = f"{fip.ip_address}/{ipaddress.ip_network(subnet.cidr).prefixlen}"
            if subnet.ip_version == 4 and not out_v4:
                out_v4 = text
            elif subnet.ip_version == 6 and not out_v6:
                out_v6 = text
        return EndpointInterface(
            address="" if interface.address else out_v4,
            address_v6="" if interface.address_v6 else out_v6,
            mac="" if interface.mac else bound.mac_address,
        )

    def _existing_port(
        self, port_id: str, network: Network, wanted: list[tuple[Subnet, str]], mac: str | None
    ) -> Port:
        port = self._backend.get_port(self._ctx, port_id)
        if port.network_id != network.id:
            raise InvalidInput(
                f"port {port.id} is on network {port.network_id}, not on {network.id}",
                kind="port",
                object_id=port.id,
                field=OPT_PORT,
            )
        if port.project_id != network.project_id:
            raise InvalidInput(
                f"port {port.id} belongs to project {port.project_id}, not to the network's "
                f"project {network.project_id}",
                kind="port",
                object_id=port.id,
                field=OPT_PORT,
            )
        if port.device_id or port.device_owner == IPAM_DEVICE_OWNER:
            raise Conflict(
                f"port {port.id} is in use"
                + (f" by device {port.device_id}" if port.device_id else " (a docker reservation)"),
                kind="port",
                object_id=port.id,
            )
        have = sorted(f.ip_address for f in port.fixed_ips)
        asked = sorted(ip for _, ip in wanted)
        if have != asked:
            flags = " ".join(
                f"--ip6 {ip}" if ipaddress.ip_address(ip).version == 6 else f"--ip {ip}"
                for ip in have
            )
            raise InvalidInput(
                f"port {port.id} has addresses {have or 'none'} but Docker asked for "
                f"{asked or 'none'}: connect with {flags or 'no address'}",
                kind="port",
                object_id=port.id,
                field="Address",
            )
        if mac and mac != port.mac_address:
            raise InvalidInput(
                f"port {port.id} has MAC {port.mac_address}, not {mac}",
                kind="port",
                object_id=port.id,
                field="MacAddress",
            )
        return port

    def _endpoint_port(
        self,
        network: Network,
        wanted: list[tuple[Subnet, str]],
        mac: str | None,
        undo: ExitStack,
    ) -> Port:
        """One port holding every address Docker assigned: the reservation
        port, the two reservations merged, or (other IPAM) a new port."""
        reservations: list[Port] = []
        missing: list[tuple[Subnet, str]] = []
        for subnet, ip in wanted:
            holder = self._port_with_address(network.id, ip)
            if holder is None:
                missing.append((subnet, ip))
            elif holder.device_owner == IPAM_DEVICE_OWNER and not holder.device_id:
                if all(r.id != holder.id for r in reservations):
                    reservations.append(holder)
            elif not holder.device_id:
                raise Conflict(
                    f"address {ip} belongs to port {holder.id}: attach that port with "
                    f"--driver-opt {OPT_PORT}={holder.id}",
                    kind="address",
                    object_id=ip,
                )
            else:
                raise Conflict(
                    f"address {ip} is in use by port {holder.id} (device {holder.device_id})",
                    kind="address",
                    object_id=ip,
                )
        fixed = [FixedIpRequest(subnet_id=s.id, ip_address=ip) for s, ip in wanted]
        if not reservations:
            port = self._backend.create_port(
                self._ctx,
                PortCreate(
                    network_id=network.id,
                    project_id=network.project_id,
                    name=IPAM_PORT_NAME,
                    device_owner=IPAM_DEVICE_OWNER,
                    mac_address=mac,
                    fixed_ips=fixed,
                ),
            )
            undo.callback(_quietly, "delete port", self._delete_port, port.id)
            return port
        # From here the reservations become the endpoint's port: if anything
        # fails, delete it (ReleaseAddress then finds nothing to do).
        keep, *others = reservations
        undo.callback(_quietly, "delete port", self._delete_port, keep.id)
        for other in others:
            # The IPv6 reservation gives its address to the IPv4 one. Between
            # the two calls another allocator could take it: the endpoint
            # then fails cleanly with a Conflict (no address is lost).
            undo.callback(_quietly, "delete port", self._delete_port, other.id)
            self._backend.update_port(self._ctx, other.id, PortUpdate(fixed_ips=[]))
        update = PortUpdate()
        if missing or others:
            update.fixed_ips = fixed
        if mac and mac != keep.mac_address:
            update.mac_address = mac
        if update.model_dump(exclude_unset=True):
            keep = self._backend.update_port(self._ctx, keep.id, update)
        for other in others:
            self._delete_port(other.id)
        return keep

    def endpoint_info(self, docker_network_id: str, endpoint_id: str) -> dict[str, str]:
        record = self._require_record(endpoint_id)
        info = {"podwire.network": record.network_id, "podwire.state": record.state}
        if record.port_id:
            info["podwire.port"] = record.port_id
        if record.vif is not None:
            info["podwire.vif"] = record.vif.kind
        return info

    def delete_endpoint(self, docker_network_id: str, endpoint_id: str) -> None:
        record = self._record(endpoint_id)
        self.agent.detach(
            DetachRequest(
                container_id=endpoint_id, ifname=endpoint_ifname(endpoint_id), frontend=FRONTEND
            )
        )
        if (
            record is not None
            and record.port_id
            and record.labels.get(LABEL_PORT_ORIGIN) == "created"
        ):
            self._delete_port(record.port_id)
        self._left.delete(endpoint_id)

    def join(self, docker_network_id: str, endpoint_id: str) -> JoinInfo:
        record = self._require_record(endpoint_id)
        if record.vif is None or record.state != "ready":
            raise Conflict(
                f"endpoint {endpoint_id} is not ready (state {record.state})",
                kind="endpoint",
                object_id=endpoint_id,
            )
        if self._left.get(endpoint_id) is not None:
            self._replug(record)
            self._left.delete(endpoint_id)
        gateway = gateway_v6 = None
        routes = []
        for route in record.vif.routes:
            if route.destination == "0.0.0.0/0" and gateway is None:
                gateway = route.gateway
            elif route.destination == "::/0" and gateway_v6 is None:
                gateway_v6 = route.gateway
            else:
                routes.append(StaticRoute(route.destination, route.gateway))
        return JoinInfo(record.ifname, gateway, gateway_v6, tuple(routes))

    def leave(self, docker_network_id: str, endpoint_id: str) -> None:
        """Docker has moved the interface back to the host (or the sandbox is
        gone): remove what is left. The port and the record stay until
        DeleteEndpoint."""
        record = self._record(endpoint_id)
        if record is None or record.vif is None:
            return
        # Marked first: a crash after it only costs the next Join a re-plug.
        self._left.put(endpoint_id, {"endpoint_id": endpoint_id})
        self.agent.drivers(record.vif.kind).unplug(record.vif, None, record.ifname)

    def _replug(self, record: Attachment) -> None:
        """Join after Leave (same endpoint) needs the interface again; what
        is left of the old one goes first (unplug is idempotent)."""
        assert record.vif is not None
        driver = self.agent.drivers(record.vif.kind)
        driver.unplug(record.vif, None, record.ifname)
        driver.plug(record.vif, None, record.ifname)

    # --- lookups ------------------------------------------------------------------------------

    def _record(self, endpoint_id: str) -> Attachment | None:
        found = self.agent.store.list(frontend=FRONTEND, container_id=endpoint_id)
        return found[0] if found else None

    def _require_record(self, endpoint_id: str) -> Attachment:
        record = self._record(endpoint_id)
        if record is None:
            raise NotFound(
                f"endpoint {endpoint_id} is not known to podwire",
                kind="endpoint",
                object_id=endpoint_id,
            )
        return record

    def _require_network(self, docker_network_id: str) -> NetworkRecord:
        record = self._get_network(docker_network_id)
        if record is None:
            raise NotFound(
                f"docker network {docker_network_id} is not a podwire network (not created "
                "through this agent)",
                kind="network",
                object_id=docker_network_id,
            )
        return record

    def _require_pool(self, pool_id: str) -> PoolRecord:
        pool = self._get_pool(pool_id)
        if pool is None:
            raise NotFound(
                f"pool {pool_id!r} is not known to podwire IPAM", kind="pool", object_id=pool_id
            )
        return pool

    def _port_with_address(self, network_id: str, ip: str) -> Port | None:
        ports = self._backend.list_ports(
            self._ctx, {"network_id": [network_id], "fixed_ips.ip_address": [ip]}
        )
        return ports[0] if ports else None

    def _delete_port(self, port_id: str) -> None:
        with suppress(NotFound):
            self._backend.delete_port(self._ctx, port_id)

    def _get_pool(self, pool_id: str) -> PoolRecord | None:
        data = self._pools.get(pool_id)
        return PoolRecord.model_validate(data) if data else None

    def _put_pool(self, pool: PoolRecord) -> None:
        self._pools.put(pool.id, pool.model_dump())

    def _all_pools(self) -> list[PoolRecord]:
        return [PoolRecord.model_validate(d) for d in self._pools.all()]

    def _get_network(self, docker_network_id: str) -> NetworkRecord | None:
        data = self._networks.get(docker_network_id)
        return NetworkRecord.model_validate(data) if data else None

    def networks(self) -> list[NetworkRecord]:
        return [NetworkRecord.model_validate(d) for d in self._networks.all()]


# --- pure helpers ------------------------------------------------------------------------------


def _network(text: str, field_name: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidInput(
            f"{field_name} {text!r} is not a CIDR: {exc}", field=field_name
        ) from None


def _address_in(
    text: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network, field_name: str
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_interface(text).ip if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(
            f"{field_name} {text!r} is not an IP address", field=field_name
        ) from None
    if ip not in cidr:
        raise InvalidInput(f"{field_name} {ip} is outside pool {cidr}", field=field_name)
    return ip


def _gateway(text: str | None, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    if not text:
        return None
    return str(_address_in(text, cidr, "Gateway"))


def _allocation_pools(pool: PoolRecord, gateway: str | None) -> list[AllocationPool] | None:
    """--ip-range becomes the subnet's allocation pool (minus the gateway)."""
    if pool.sub_pool is None:
        return None
    sub = ipaddress.ip_network(pool.sub_pool)
    hosts = list(_host_bounds(sub, ipaddress.ip_network(pool.cidr)))
    start, end = hosts
    gw = ipaddress.ip_address(gateway) if gateway else None
    if gw is not None and start <= gw <= end:
        pools = []
        if start < gw:
            pools.append(AllocationPool(start=str(start), end=str(gw - 1)))
        if gw < end:
            pools.append(AllocationPool(start=str(gw + 1), end=str(end)))
        return pools
    return [AllocationPool(start=str(start), end=str(end))]


def _host_bounds(
    sub: ipaddress.IPv4Network | ipaddress.IPv6Network,
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> Iterable[Any]:
    first, last = sub[0], sub[-1]
    # The network's own network and broadcast addresses are never a host's.
    if first == cidr[0]:
        first = first + 1
    if cidr.version == 4 and last == cidr[-1]:
        last = last - 1
    return first, last


def _interface_addresses(
    interface: EndpointInterface, subnets: list[Subnet]
) -> list[tuple[Subnet, str]]:
    """Docker's addresses, each with the backend subnet that holds it."""
    out = []
    for text, version, name in (
        (interface.address, 4, "Address"),
        (interface.address_v6, 6, "AddressIPv6"),
    ):
        if not text:
            continue
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise InvalidInput(f"Interface.{name} {text!r} is not an address", field=name) from None
        if iface.version != version:
            raise InvalidInput(f"Interface.{name} {text} is not IPv{version}", field=name)
        match = [s for s in subnets if iface.ip in ipaddress.ip_network(s.cidr)]
        if not match:
            raise InvalidInput(
                f"Interface.{name} {text} is on no subnet of the backend network",
                field=name,
            )
        out.append((match[0], str(iface.ip)))
    return out


def _quietly(what: str, fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("undo step %r failed", what)
