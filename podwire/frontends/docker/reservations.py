"""IPAM reservations: unbound backend ports that hold an address Docker was
given before any endpoint exists.

libnetwork's RequestAddress carries no endpoint id, so the address is held
by a port of its own (device_owner ``podwire:docker-ipam``, no device);
CreateEndpoint turns it into the endpoint's port (endpoints.py), and
ReleaseAddress or DeleteNetwork delete the ones no endpoint took.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from podwire.errors import NotFound
from podwire.model import FixedIpRequest, Network, Port, PortCreate, PortUpdate

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

IPAM_DEVICE_OWNER = "podwire:docker-ipam"
IPAM_PORT_NAME = "docker-ipam"


def is_reservation(port: Port) -> bool:
    """Reserved by this door and not (yet) any endpoint's."""
    return port.device_owner == IPAM_DEVICE_OWNER and not port.device_id


class Reservations:
    """The backend calls behind reservations, in the agent's project."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    @property
    def backend(self) -> Any:
        return self._agent.backend

    @property
    def ctx(self) -> Any:
        return self._agent.ctx

    def holder(self, network_id: str, ip: str) -> Port | None:
        """The port holding ``ip`` on the network, whoever made it."""
        ports = self.backend.list_ports(
            self.ctx, {"network_id": [network_id], "fixed_ips.ip_address": [ip]}
        )
        return ports[0] if ports else None

    def reserve(
        self,
        network: Network,
        fixed_ips: list[FixedIpRequest],
        mac: str | None = None,
    ) -> Port:
        return self.backend.create_port(
            self.ctx,
            PortCreate(
                network_id=network.id,
                project_id=network.project_id,
                name=IPAM_PORT_NAME,
                device_owner=IPAM_DEVICE_OWNER,
                mac_address=mac,
                fixed_ips=fixed_ips,
            ),
        )

    def drop_address(self, port: Port, ip: str) -> None:
        """Free one address of a reservation; the port goes with its last."""
        rest = [f for f in port.fixed_ips if f.ip_address != ip]
        try:
            if rest:
                self.backend.update_port(
                    self.ctx,
                    port.id,
                    PortUpdate(
                        fixed_ips=[
                            FixedIpRequest(subnet_id=f.subnet_id, ip_address=f.ip_address)
                            for f in rest
                        ]
                    ),
                )
            else:
                self.backend.delete_port(self.ctx, port.id)
        except NotFound:
            pass

    def delete_port(self, port_id: str) -> None:
        with suppress(NotFound):
            self.backend.delete_port(self.ctx, port_id)

    def delete_unused(self, network_id: str) -> list[str]:
        """Reservations no endpoint took on this network (Docker skipped a
        ReleaseAddress, or the agent stopped in between)."""
        ports = self.backend.list_ports(
            self.ctx, {"network_id": [network_id], "device_owner": [IPAM_DEVICE_OWNER]}
        )
        deleted = []
        for port in ports:
            if is_reservation(port):
                self.delete_port(port.id)
                deleted.append(port.id)
        return deleted


def quietly(what: str, fn: Any, *args: Any) -> None:
    """An undo step: a failure is logged, never hides the original error."""
    try:
        fn(*args)
    except Exception:
        log.exception("undo step %r failed", what)
