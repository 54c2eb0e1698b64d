"""Docker endpoints: CreateEndpoint, EndpointOperInfo, DeleteEndpoint, Join, Leave.

An endpoint is one agent attachment (frontend "docker", container_id = the
endpoint id, ifname = ``endpoint_ifname``), made with ``netns=None``: the
data-path driver leaves the container end in the host namespace for dockerd
to move. What only Docker means is kept on that record's frontend_state
(``EndpointState``), so the door needs no store of its own for endpoints:

* CreateEndpoint turns the reservation(s) holding the endpoint's addresses
  into its one port (merging the IPv4 and IPv6 reservations when there are
  two), or takes an existing backend port (``--driver-opt podwire.port``),
  and attaches it through ``Agent.attach``.
* Leave marks the endpoint unplugged, then ``Agent.suspend``s it (port and
  record stay); a Join after it ``Agent.resume``s it.
* DeleteEndpoint detaches, and deletes the port when podwire created it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from podwire.agent.types import Attachment, AttachRequest, DetachRequest, NetworkSelection
from podwire.errors import Conflict, InvalidInput, NotFound
from podwire.frontends.docker.addresses import interface_addresses
from podwire.frontends.docker.records import DockerRecords
from podwire.frontends.docker.reservations import Reservations, is_reservation, quietly
from podwire.frontends.docker.terms import (
    FRONTEND,
    OPT_NUMA_NODE,
    OPT_PORT,
    EndpointInterface,
    JoinInfo,
    StaticRoute,
    endpoint_ifname,
)
from podwire.model import FixedIpRequest, Network, Port, PortUpdate, Subnet

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

# Labels of records written before frontend_state existed (read, never written).
_OLD_LABEL_NETWORK = "docker.network"
_OLD_LABEL_PORT_ORIGIN = "docker.port"


class EndpointState(BaseModel):
    """Docker's part of an endpoint's attachment record."""

    model_config = ConfigDict(extra="ignore")

    docker_network_id: str = ""
    # "created": podwire made the port (DeleteEndpoint deletes it);
    # "existing": the user's (podwire.port), given back unbound.
    port_origin: Literal["created", "existing"] = "created"
    # True between Leave and the next Join: the interface is unplugged.
    unplugged: bool = False

    @classmethod
    def of(cls, record: Attachment) -> EndpointState:
        if record.frontend_state:
            return cls.model_validate(record.frontend_state)
        origin = record.labels.get(_OLD_LABEL_PORT_ORIGIN, "created")
        return cls(
            docker_network_id=record.labels.get(_OLD_LABEL_NETWORK, ""),
            port_origin="existing" if origin == "existing" else "created",
        )


class Endpoints:
    def __init__(self, agent: Agent, records: DockerRecords, reservations: Reservations) -> None:
        self._agent = agent
        self._records = records
        self._ports = reservations

    # --- CreateEndpoint ----------------------------------------------------------------

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
        backend, ctx = self._agent.backend, self._agent.ctx
        network = backend.get_network(ctx, self._records.backend_network_id(docker_network_id))
        subnets = backend.list_subnets(ctx, {"network_id": [network.id]})
        wanted = interface_addresses(interface.address, interface.address_v6, subnets)
        mac = interface.mac or None
        existing_port = options.get(OPT_PORT)
        numa_node = numa_option(options.get(OPT_NUMA_NODE))

        with ExitStack() as undo:
            if existing_port:
                port = self._existing_port(str(existing_port), network, wanted, mac)
                origin: Literal["created", "existing"] = "existing"
            else:
                port = self._endpoint_port(network, wanted, mac, undo)
                origin = "created"
            state = EndpointState(docker_network_id=docker_network_id, port_origin=origin)
            result = self._agent.attach(
                AttachRequest(
                    container_id=endpoint_id,
                    netns=None,
                    frontend=FRONTEND,
                    networks=[
                        NetworkSelection(
                            network=network.id,
                            ifname=endpoint_ifname(endpoint_id),
                            port_id=port.id,
                            # A port made from Docker's reservations is the
                            # endpoint's own: the agent deletes it at DEL
                            # (and after a crash), the user's is given back.
                            port_reserved=origin == "created",
                            numa_node=numa_node,
                        )
                    ],
                    frontend_state=state.model_dump(),
                )
            )
            undo.pop_all()

        attached = result.interfaces[0]
        bound = attached.port
        by_subnet = {s.id: s for s in attached.subnets}
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
        port: Port = self._agent.backend.get_port(self._agent.ctx, port_id)
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
        if port.device_id or is_reservation(port):
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
        backend, ctx = self._agent.backend, self._agent.ctx
        reservations: list[Port] = []
        missing: list[str] = []  # addresses no port holds (Docker's own IPAM)
        for _subnet, ip in wanted:
            holder = self._ports.holder(network.id, ip)
            if holder is None:
                missing.append(ip)
                continue
            if is_reservation(holder):
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
            port = self._ports.reserve(network, fixed, mac)
            undo.callback(quietly, "delete port", self._ports.delete_port, port.id)
            return port
        # From here the reservations become the endpoint's port: if anything
        # fails, delete it (ReleaseAddress then finds nothing to do).
        keep, *others = reservations
        undo.callback(quietly, "delete port", self._ports.delete_port, keep.id)
        for other in others:
            # The IPv6 reservation gives its address to the IPv4 one. Between
            # the two calls another allocator could take it: the endpoint
            # then fails cleanly with a Conflict (no address is lost).
            undo.callback(quietly, "delete port", self._ports.delete_port, other.id)
            backend.update_port(ctx, other.id, PortUpdate(fixed_ips=[]))
        update = PortUpdate()
        if missing or others:
            update.fixed_ips = fixed
        if mac and mac != keep.mac_address:
            update.mac_address = mac
        if update.model_dump(exclude_unset=True):
            keep = backend.update_port(ctx, keep.id, update)
        for other in others:
            self._ports.delete_port(other.id)
        return keep

    # --- the rest of an endpoint's life ------------------------------------------------

    def endpoint_info(self, docker_network_id: str, endpoint_id: str) -> dict[str, str]:
        record = self._require_record(endpoint_id)
        info = {"podwire.network": record.network_id, "podwire.state": record.state}
        if record.port_id:
            info["podwire.port"] = record.port_id
        if record.vif is not None:
            info["podwire.vif"] = record.vif.kind
        return info

    def delete_endpoint(self, docker_network_id: str, endpoint_id: str) -> None:
        # The agent deletes a port made from reservations (its step
        # port.reserved) and gives a user's port back.
        self._agent.detach(
            DetachRequest(
                container_id=endpoint_id, ifname=endpoint_ifname(endpoint_id), frontend=FRONTEND
            )
        )

    def join(self, docker_network_id: str, endpoint_id: str) -> JoinInfo:
        record = self._require_record(endpoint_id)
        if record.vif is None or record.state != "ready":
            raise Conflict(
                f"endpoint {endpoint_id} is not ready (state {record.state})",
                kind="endpoint",
                object_id=endpoint_id,
            )
        state = EndpointState.of(record)
        if state.unplugged:
            self._agent.resume(endpoint_id, record.ifname)
            state.unplugged = False
            self._agent.set_frontend_state(endpoint_id, record.ifname, state.model_dump())
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
        record = self.record(endpoint_id)
        if record is None or record.vif is None or record.state != "ready":
            return
        state = EndpointState.of(record)
        if not state.unplugged:
            # Marked first: a crash after it only costs the next Join a re-plug.
            state.unplugged = True
            self._agent.set_frontend_state(endpoint_id, record.ifname, state.model_dump())
        self._agent.suspend(endpoint_id, record.ifname)

    # --- lookups -----------------------------------------------------------------------

    def record(self, endpoint_id: str) -> Attachment | None:
        found = self._agent.list_attachments(container_id=endpoint_id, frontend=FRONTEND)
        return found[0] if found else None

    def _require_record(self, endpoint_id: str) -> Attachment:
        record = self.record(endpoint_id)
        if record is None:
            raise NotFound(
                f"endpoint {endpoint_id} is not known to podwire",
                kind="endpoint",
                object_id=endpoint_id,
            )
        return record


def numa_option(value: Any) -> int | None:
    """``--driver-opt podwire.numa_node=N``: the NUMA node the container runs
    on, for kinds with a host device (SR-IOV VFs)."""
    if value is None or value == "":
        return None
    try:
        node = int(str(value))
    except ValueError:
        node = -1
    if not 0 <= node <= 1023:
        raise InvalidInput(
            f"{OPT_NUMA_NODE} {value!r} is not a NUMA node number 0-1023", field=OPT_NUMA_NODE
        )
    return node
