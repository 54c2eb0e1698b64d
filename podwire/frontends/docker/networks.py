"""Docker networks: CreateNetwork and DeleteNetwork, and the door's start-up
reconcile of its records.

A Docker network maps to one backend network: created by podwire (deleted
with the Docker network) or adopted (``-o podwire.network=NAME``, never
deleted). CreateNetwork links the pools IPAM handed out to the backend
subnets; DeleteNetwork unlinks them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import ExitStack, suppress
from typing import TYPE_CHECKING

from podwire.errors import Conflict, InvalidInput, NotFound, PodwireError
from podwire.frontends.docker.addresses import allocation_pools, gateway_in, parse_cidr
from podwire.frontends.docker.records import DockerRecords, NetworkRecord, PoolRecord
from podwire.frontends.docker.reservations import Reservations, quietly
from podwire.frontends.docker.terms import LOCAL_ADDRESS_SPACE, OPT_NAME, OPT_NETWORK, PoolData
from podwire.model import Network, NetworkCreate, Subnet, SubnetCreate

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)


class Networks:
    def __init__(self, agent: Agent, records: DockerRecords, reservations: Reservations) -> None:
        self._agent = agent
        self._records = records
        self._ports = reservations

    # --- CreateNetwork ---------------------------------------------------------------

    def create_network(
        self,
        docker_network_id: str,
        ipv4: list[PoolData],
        ipv6: list[PoolData],
        options: Mapping[str, str],
    ) -> None:
        if not docker_network_id:
            raise InvalidInput("NetworkID is empty", field="NetworkID")
        with self._records.lock:
            existing = self._records.network(docker_network_id)
            if existing is not None and existing.state == "ready":
                return  # libnetwork replays CreateNetwork after a restart
            if existing is not None:
                self._undo_creating(existing)  # one the start-up reconcile could not undo
            datas = [*ipv4, *ipv6]
            if not datas:
                raise InvalidInput("the network has no IPAM pool: give it a --subnet")
            # None: the pool comes from another IPAM driver (Docker's own);
            # Docker then assigns the addresses and podwire only records them.
            pools = [self._pool_for(data) for data in datas]
            with ExitStack() as undo:
                adopt = options.get(OPT_NETWORK)
                if adopt:
                    network = self._agent.resolve_network(adopt)
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
                    self._records.put_pool(pool)
                undo.callback(quietly, "unlink pools", self._unlink_pools, docker_network_id)
                self._records.put_network(
                    NetworkRecord(
                        docker_network_id=docker_network_id, network_id=network.id, created=created
                    )
                )
                undo.pop_all()

    def _pool_for(self, data: PoolData) -> PoolRecord | None:
        cidr = str(parse_cidr(data.pool, "Pool"))
        space = data.address_space or LOCAL_ADDRESS_SPACE
        found = [p for p in self._records.pools() if p.address_space == space and p.cidr == cidr]
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
        backend, ctx = self._agent.backend, self._agent.ctx
        name = options.get(OPT_NAME) or f"docker-{docker_network_id[:12]}"
        # Written before the backend acts: a crash from here on is undone at
        # start from this record (reconcile), by the network's id once the
        # backend has answered, else by its description.
        intent = NetworkRecord(
            docker_network_id=docker_network_id, network_id=None, created=True, state="creating"
        )
        self._records.put_network(intent)
        undo.callback(quietly, "forget network", self._records.delete_network, docker_network_id)
        network = backend.create_network(
            ctx, NetworkCreate(name=name, description=_description(docker_network_id))
        )
        undo.callback(quietly, "delete network", self._delete_backend_network, network.id)
        self._records.put_network(intent.model_copy(update={"network_id": network.id}))
        subnets = []
        for pool, data in zip(pools, datas, strict=True):
            cidr = parse_cidr(data.pool, "Pool")
            gateway = gateway_in(data.gateway, cidr)
            subnets.append(
                backend.create_subnet(
                    ctx,
                    SubnetCreate(
                        network_id=network.id,
                        cidr=str(cidr),
                        name=f"docker-{docker_network_id[:12]}-v{cidr.version}",
                        gateway_ip=gateway,
                        allocation_pools=(
                            allocation_pools(pool.cidr, pool.sub_pool, gateway) if pool else None
                        ),
                    ),
                )
            )
        return network, subnets

    def _adopted_subnets(self, network: Network, datas: list[PoolData]) -> list[Subnet]:
        subnets = self._agent.backend.list_subnets(self._agent.ctx, {"network_id": [network.id]})
        by_cidr = {s.cidr: s for s in subnets}
        out = []
        for data in datas:
            cidr = parse_cidr(data.pool, "Pool")
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
            docker_gw = gateway_in(data.gateway, cidr)
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

    # --- DeleteNetwork -----------------------------------------------------------------

    def delete_network(self, docker_network_id: str) -> None:
        with self._records.lock:
            record = self._records.network(docker_network_id)
            if record is None:
                return
            if record.network_id is None:
                pass  # a CreateNetwork that never reached the backend
            elif record.created:
                self._delete_backend_network(record.network_id)
            else:
                self._ports.delete_unused(record.network_id)
                with suppress(NotFound):
                    # The agent refuses (and logs) removing the host bridge
                    # while anything else is plugged; an ADD recreates it.
                    self._agent.network_deleted(
                        self._agent.backend.get_network(self._agent.ctx, record.network_id)
                    )
            self._unlink_pools(docker_network_id)
            self._records.delete_network(docker_network_id)

    def _delete_backend_network(self, network_id: str) -> None:
        backend, ctx = self._agent.backend, self._agent.ctx
        self._ports.delete_unused(network_id)
        try:
            network = backend.get_network(ctx, network_id)
        except NotFound:
            return
        for subnet in backend.list_subnets(ctx, {"network_id": [network_id]}):
            with suppress(NotFound):
                backend.delete_subnet(ctx, subnet.id)
        with suppress(NotFound):
            backend.delete_network(ctx, network_id)
        # The per-network bridge holds the gateway addresses: a deleted
        # network must not leave them on the host.
        self._agent.network_deleted(network)

    def _unlink_pools(self, docker_network_id: str) -> None:
        for pool in self._records.pools():
            if pool.docker_network_id == docker_network_id:
                pool.unlink()
                self._records.put_pool(pool)

    # --- start-up ----------------------------------------------------------------------

    def reconcile(self) -> dict[str, list[str]]:
        """Make the door's records agree with the backend before serving
        (the agent has reconciled its attachments already):

        * a network record whose backend network is gone (deleted behind
          Docker's back, or by a DeleteNetwork that crashed halfway) goes,
          and its pools are unlinked: an endpoint on it then fails with
          "not a podwire network" instead of a backend error, and a later
          DeleteNetwork or ReleasePool from Docker succeeds;
        * a record still "creating" is a CreateNetwork the agent died in:
          what the backend made goes, and the record (``_undo_creating``);
        * a pool linked to a Docker network with no record (a crash inside
          CreateNetwork) is unlinked, so Docker's next CreateNetwork can
          link it again;
        * reservations no endpoint took, on the networks of the records, are
          left alone: Docker holds them (RequestAddress answered) until its
          CreateEndpoint or ReleaseAddress.
        """
        dropped: list[str] = []
        unlinked: list[str] = []
        backend, ctx = self._agent.backend, self._agent.ctx
        with self._records.lock:
            for record in self._records.networks():
                try:
                    if record.state == "creating":
                        self._undo_creating(record)
                        dropped.append(record.docker_network_id)
                        continue
                    assert record.network_id is not None
                    backend.get_network(ctx, record.network_id)
                except NotFound:
                    log.warning(
                        "docker network %s: backend network %s is gone; forgetting it",
                        record.docker_network_id,
                        record.network_id,
                    )
                    self._records.delete_network(record.docker_network_id)
                    dropped.append(record.docker_network_id)
                except PodwireError as exc:
                    # Backend unreachable: keep everything; the next start retries.
                    log.warning("docker reconcile: cannot check networks: %s", exc)
                    return {"dropped_networks": dropped, "unlinked_pools": unlinked}
            known = {r.docker_network_id for r in self._records.networks()}
            for pool in self._records.pools():
                if pool.docker_network_id is not None and pool.docker_network_id not in known:
                    pool.unlink()
                    self._records.put_pool(pool)
                    unlinked.append(pool.id)
        return {"dropped_networks": dropped, "unlinked_pools": unlinked}

    def _undo_creating(self, record: NetworkRecord) -> None:
        """A CreateNetwork the agent died in: Docker got no answer, so it has
        no such network. Delete what the backend made (by id, or when the
        crash came before the id was written, by the description naming the
        Docker network id, unique to it) and forget the record."""
        log.warning(
            "docker network %s: undoing a CreateNetwork cut short", record.docker_network_id
        )
        if record.network_id is not None:
            ids = [record.network_id]
        else:
            description = _description(record.docker_network_id)
            ids = [
                n.id
                for n in self._agent.backend.list_networks(self._agent.ctx)
                if n.description == description
            ]
        for network_id in ids:
            self._delete_backend_network(network_id)
        self._records.delete_network(record.docker_network_id)


def _description(docker_network_id: str) -> str:
    """The backend network's description: names the Docker network, so a
    crash before its id was recorded can still find it."""
    return f"docker network {docker_network_id}"
