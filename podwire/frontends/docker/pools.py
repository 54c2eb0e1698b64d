"""libnetwork's IpamDriver: pools in address spaces, and addresses in pools.

A pool is a door record (records.py) until CreateNetwork links it to the
backend subnet made for it: libnetwork asks IPAM for the pool and the
gateway *before* it creates the network. Once linked, RequestAddress
reserves the address in the backend (reservations.py); before, it only
answers the address asked for (the gateway, --aux-address).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from podwire.errors import Conflict, InvalidInput
from podwire.frontends.docker.addresses import address_in, default_gateway, parse_cidr
from podwire.frontends.docker.endpoints import Endpoints, EndpointState
from podwire.frontends.docker.records import DockerRecords, PoolRecord
from podwire.frontends.docker.reservations import Reservations, is_reservation
from podwire.frontends.docker.terms import FRONTEND, LOCAL_ADDRESS_SPACE
from podwire.model import FixedIpRequest

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)


class Pools:
    def __init__(
        self,
        agent: Agent,
        records: DockerRecords,
        reservations: Reservations,
        endpoints: Endpoints,
    ) -> None:
        self._agent = agent
        self._records = records
        self._ports = reservations
        self._endpoints = endpoints

    # --- pools -----------------------------------------------------------------------

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
        cidr = parse_cidr(pool, "Pool")
        sub = None
        if sub_pool:
            sub_net = parse_cidr(sub_pool, "SubPool")
            if sub_net.version != cidr.version or not sub_net.subnet_of(cidr):  # type: ignore[arg-type]
                raise InvalidInput(f"SubPool {sub_pool} is not inside Pool {pool}", field="SubPool")
            sub = str(sub_net)
        pool_id = f"{space}/{cidr}" + (f"/{sub}" if sub else "")
        with self._records.lock:
            existing = self._records.pool(pool_id)
            if existing is not None:
                existing.refs += 1
                self._records.put_pool(existing)
                return pool_id, str(cidr)
            for other in self._records.pools():
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
            self._records.put_pool(
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
        with self._records.lock:
            record = self._records.pool(pool_id)
            if record is None:
                return  # released already: DEL is idempotent
            record.refs -= 1
            if record.refs > 0:
                self._records.put_pool(record)
                return
            if record.network_id is not None:
                # The network still exists; its subnet remains the source of
                # truth. Forget the pool; the network keeps working.
                log.info("pool %s released while linked to %s", pool_id, record.docker_network_id)
            self._records.delete_pool(pool_id)

    # --- addresses -------------------------------------------------------------------

    def request_address(self, pool_id: str, address: str, is_gateway: bool) -> str:
        """Returns the address with the pool's prefix, "198.18.0.5/24"."""
        pool = self._records.require_pool(pool_id)
        cidr = ipaddress.ip_network(pool.cidr)
        wanted = address_in(address, cidr, "Address") if address else None
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
                    subnet = self._agent.backend.get_subnet(self._agent.ctx, pool.subnet_id)
                    if subnet.gateway_ip:
                        return f"{subnet.gateway_ip}/{cidr.prefixlen}"
                return f"{default_gateway(cidr)}/{cidr.prefixlen}"
            return f"{wanted}/{cidr.prefixlen}"

        assert pool.network_id is not None
        if wanted is not None:
            holder = self._ports.holder(pool.network_id, str(wanted))
            if holder is not None:
                if is_reservation(holder) or holder.device_id:
                    raise Conflict(
                        f"address {wanted} is in use by port {holder.id}"
                        + (f" (device {holder.device_id})" if holder.device_id else ""),
                        kind="address",
                        object_id=str(wanted),
                    )
                # An unused port of the user's holds it: the endpoint must
                # bring that port (podwire.port); CreateEndpoint checks.
                return f"{wanted}/{cidr.prefixlen}"
        network = self._agent.backend.get_network(self._agent.ctx, pool.network_id)
        port = self._ports.reserve(
            network,
            [
                FixedIpRequest(
                    subnet_id=pool.subnet_id,
                    ip_address=str(wanted) if wanted is not None else None,
                )
            ],
        )
        ip = next(f.ip_address for f in port.fixed_ips if f.subnet_id == pool.subnet_id)
        return f"{ip}/{cidr.prefixlen}"

    def release_address(self, pool_id: str, address: str) -> None:
        pool = self._records.pool(pool_id)
        if pool is None or pool.network_id is None:
            return  # gateway/aux of a network gone or never made: nothing reserved
        ip = str(address_in(address, ipaddress.ip_network(pool.cidr), "Address"))
        holder = self._ports.holder(pool.network_id, ip)
        if holder is None:
            return
        if is_reservation(holder):
            self._ports.drop_address(holder, ip)
            return
        if holder.device_owner == f"podwire:{FRONTEND}" and holder.device_id:
            # Docker forgot the endpoint without DeleteEndpoint reaching us
            # (or it failed): finish it, so the address is really free.
            record = self._endpoints.record(holder.device_id)
            if record is not None and record.port_id == holder.id:
                log.warning("ReleaseAddress %s: deleting endpoint %s first", ip, holder.device_id)
                self._endpoints.delete_endpoint(
                    EndpointState.of(record).docker_network_id, holder.device_id
                )
        # Any other holder is a port podwire did not reserve: not ours to free.
