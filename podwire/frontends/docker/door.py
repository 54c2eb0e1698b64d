"""The Docker door: libnetwork's NetworkDriver and IpamDriver meaning over
the agent's narrow API, one object per agent (what app.py serves).

* pools.py      IpamDriver: pools in address spaces, addresses in pools
* networks.py   CreateNetwork / DeleteNetwork (created or adopted), reconcile
* endpoints.py  CreateEndpoint / DeleteEndpoint / Join / Leave, on attachments
* reservations.py  backend ports holding addresses before an endpoint exists
* records.py    the door's pool and network records; addresses.py its address
                checks over the shared IPAM (podwire.ipam)
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podwire.frontends.docker.endpoints import Endpoints, EndpointState
from podwire.frontends.docker.networks import Networks
from podwire.frontends.docker.pools import Pools
from podwire.frontends.docker.records import DockerRecords, NetworkRecord
from podwire.frontends.docker.reservations import Reservations
from podwire.frontends.docker.terms import EndpointInterface, JoinInfo, PoolData

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)


class DockerDoor:
    """Implements app.DockerService."""

    def __init__(self, agent: Agent, state_dir: Path | None = None) -> None:
        self.agent = agent
        self.root = (state_dir or agent.config.state_dir) / "docker"
        self.records = DockerRecords(self.root)
        reservations = Reservations(agent)
        self._endpoints = Endpoints(agent, self.records, reservations)
        self._networks = Networks(agent, self.records, reservations)
        self._pools = Pools(agent, self.records, reservations, self._endpoints)

    def reconcile(self) -> dict[str, list[str]]:
        """Run once at start, after the agent's own reconcile."""
        report = self._networks.reconcile()
        report["migrated_left"] = self._migrate_left()
        if any(report.values()):
            log.info("docker door: reconcile %s", report)
        return report

    def _migrate_left(self) -> list[str]:
        """Agents before frontend_state kept "left" endpoints in a directory
        of their own (state_dir/docker/left): move the mark onto the records."""
        old = self.root / "left"
        if not old.is_dir():
            return []
        moved = []
        for f in sorted(old.glob("*.json")):
            try:
                endpoint_id = str(json.loads(f.read_text())["endpoint_id"])
            except (OSError, ValueError, KeyError):
                continue
            record = self._endpoints.record(endpoint_id)
            if record is None:
                continue
            state = EndpointState.of(record)
            state.unplugged = True
            self.agent.set_frontend_state(endpoint_id, record.ifname, state.model_dump())
            moved.append(endpoint_id)
        shutil.rmtree(old, ignore_errors=True)
        return moved

    def networks(self) -> list[NetworkRecord]:
        return self.records.networks()

    # --- IpamDriver --------------------------------------------------------------------

    def request_pool(
        self, address_space: str, pool: str, sub_pool: str, v6: bool
    ) -> tuple[str, str]:
        return self._pools.request_pool(address_space, pool, sub_pool, v6)

    def release_pool(self, pool_id: str) -> None:
        self._pools.release_pool(pool_id)

    def request_address(self, pool_id: str, address: str, is_gateway: bool) -> str:
        return self._pools.request_address(pool_id, address, is_gateway)

    def release_address(self, pool_id: str, address: str) -> None:
        self._pools.release_address(pool_id, address)

    # --- NetworkDriver -----------------------------------------------------------------

    def create_network(
        self,
        docker_network_id: str,
        ipv4: list[PoolData],
        ipv6: list[PoolData],
        options: Mapping[str, str],
    ) -> None:
        self._networks.create_network(docker_network_id, ipv4, ipv6, options)

    def delete_network(self, docker_network_id: str) -> None:
        self._networks.delete_network(docker_network_id)

    def create_endpoint(
        self,
        docker_network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: Mapping[str, Any],
    ) -> EndpointInterface:
        return self._endpoints.create_endpoint(docker_network_id, endpoint_id, interface, options)

    def endpoint_info(self, docker_network_id: str, endpoint_id: str) -> dict[str, str]:
        return self._endpoints.endpoint_info(docker_network_id, endpoint_id)

    def delete_endpoint(self, docker_network_id: str, endpoint_id: str) -> None:
        self._endpoints.delete_endpoint(docker_network_id, endpoint_id)

    def join(self, docker_network_id: str, endpoint_id: str) -> JoinInfo:
        return self._endpoints.join(docker_network_id, endpoint_id)

    def leave(self, docker_network_id: str, endpoint_id: str) -> None:
        self._endpoints.leave(docker_network_id, endpoint_id)
