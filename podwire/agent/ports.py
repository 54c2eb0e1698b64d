"""Where an attachment's port comes from: the first recorded step of ADD.

- ``port.create``: the agent creates it, tagged with its ownership mark and
  the attachment it is for (podwire.agent.ownership);
- ``port.adopt``: the caller named an existing port (Zun's ``port=<uuid>``);
- ``port.reserved``: a door reserved it for this attachment (Docker's IPAM
  made it at CreateEndpoint; ``NetworkSelection.port_reserved``); undone
  by deleting it;
- ``port.pool``: the agent's pool hook (``Agent.port_pool``) hands out a
  ready port; undone by giving it back.

The binding the agent writes: its host, and, only for backends that do not
decide it themselves (``Backend.bound_vif_type``), the kind it would
choose, so the binding says how the port is plugged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from podwire.agent import steps, tenancy
from podwire.agent.ownership import attachment_port_tags, device_owner, port_name
from podwire.agent.types import AttachRequest, NetworkSelection
from podwire.errors import Conflict, InvalidInput, NotFound
from podwire.kinds import registry
from podwire.kinds.base import UNDECIDED_VIF_TYPES, KindChoice
from podwire.model import Network, Port, PortBinding, PortCreate, PortUpdate, parse

if TYPE_CHECKING:
    from podwire.agent.core import Agent


class PortPool(Protocol):
    """A source of ready ports (pre-created, pre-bound), for fast ADDs
    (podwire.agent.pools.PortPools; docs/pools.md)."""

    def take(
        self, network: Network, selection: NetworkSelection, device_id: str = ""
    ) -> Port | None: ...

    def give_back(self, port_id: str) -> None: ...

    # The agent's own calls: start-up sweep and start, network deletes,
    # what the API shows and drains, metrics levels.
    def sweep(self, startup: bool = False) -> dict[str, list[str]]: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def network_deleted(self, network_id: str) -> None: ...

    def describe(self) -> list[dict[str, Any]]: ...

    def drain(self, network_id: str | None = None) -> list[str]: ...

    def levels(self) -> dict[tuple[str, ...], float]: ...


def source_of(
    agent: Agent, req: AttachRequest, sel: NetworkSelection
) -> tuple[str, dict[str, Any]]:
    """(the port step's name, its intent), decided before anything acts."""
    if sel.port_id:
        if sel.port_reserved:
            return steps.PORT_RESERVED, {"port_id": sel.port_id}
        return steps.PORT_ADOPT, {"port_id": sel.port_id}
    if agent.port_pool is not None and not sel.ips and not sel.mac:
        return steps.PORT_POOL, {}
    return steps.PORT_CREATE, {}


def create_intent(agent: Agent, attachment_id: str, ifname: str) -> dict[str, Any]:
    return {"tags": attachment_port_tags(agent.config.host_id, attachment_id, ifname)}


def take(
    agent: Agent,
    source: str,
    intent: dict[str, Any],
    req: AttachRequest,
    sel: NetworkSelection,
    ifname: str,
    network: Network,
) -> Port | None:
    """Run the port step ``source``; None when the pool had nothing (the
    caller then creates one)."""
    if source == steps.PORT_CREATE:
        return _create(agent, req, sel, ifname, network, intent["tags"])
    if source == steps.PORT_POOL:
        assert agent.port_pool is not None
        return agent.port_pool.take(network, sel, req.container_id)
    return _adopt(agent, req, network, intent["port_id"])


def binding(agent: Agent, network: Network, vnic_type: str) -> PortBinding:
    guess = registry.decide(
        KindChoice(
            vnic_type=vnic_type,
            datapath_hint=network.datapath,
            node_mode=agent.config.agent.node_mode,
            network=network.name or network.id,
            default_kind=agent.config.agent.default_kind,
        )
    )
    if not registry.plugin_class(guess).binds_port:
        return PortBinding()  # no host plugs it (a container's port inside a VM)
    if agent.backend.bound_vif_type is not None:
        return PortBinding(host_id=agent.config.host_id)
    return PortBinding(host_id=agent.config.host_id, vif_type=guess)


def _create(
    agent: Agent,
    req: AttachRequest,
    sel: NetworkSelection,
    ifname: str,
    network: Network,
    tags: list[str],
) -> Port:
    fixed_ips = [{"ip_address": ip} for ip in sel.ips] if sel.ips else None
    request = parse(
        PortCreate,
        {
            "network_id": network.id,
            "project_id": network.project_id,
            "name": port_name(req.container_id, ifname),
            "mac_address": sel.mac,
            "fixed_ips": fixed_ips,
            "device_id": req.container_id,
            "device_owner": device_owner(req.frontend),
            "binding": binding(agent, network, "normal"),
            "tags": tags,
        },
        kind="port",
    )
    return agent.backend.create_port(agent.ctx, request)


def _adopt(agent: Agent, req: AttachRequest, network: Network, port_id: str) -> Port:
    try:
        port = agent.backend.get_port(agent.ctx, port_id)
    except NotFound as exc:
        raise tenancy.unseen(agent, exc, "port", port_id) from None
    if port.network_id != network.id:
        raise InvalidInput(
            f"port {port.id} is on network {port.network_id}, not {network.id}",
            kind="port",
            object_id=port.id,
            field="port_id",
        )
    if port.device_id and port.device_id != req.container_id:
        raise Conflict(
            f"port {port.id} is in use by device {port.device_id}",
            kind="port",
            object_id=port.id,
        )
    # The caller's binding profile is theirs (an SR-IOV port's max_tx_rate,
    # trust, link_state, numa_node): kept, as Neutron keeps it across binds.
    bind = binding(agent, network, port.vnic_type).model_copy(
        update={"profile": dict(port.binding.profile)}
    )
    if port.binding.vif_type not in UNDECIDED_VIF_TYPES:
        # The caller's port already says how it is plugged (vif_type
        # "vhostuser" with its vhostuser_mode): kept, not guessed again.
        bind = bind.model_copy(
            update={
                "vif_type": port.binding.vif_type,
                "vif_details": port.binding.vif_details,
                "profile": port.binding.profile,
            }
        )
    return agent.backend.update_port(
        agent.ctx,
        port.id,
        PortUpdate(
            device_id=req.container_id,
            device_owner=device_owner(req.frontend),
            binding=bind,
        ),
    )
