"""What the agent says about itself and its containers: STATUS (backend
health, whether an ADD on a network could succeed, the kinds' descriptions)
and the per-container network-status document in Multus's shape, served by
``Agent.network_status`` from the records and kept on disk by
podwire.agent.status_files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podwire.agent.types import AgentStatus, Attachment
from podwire.errors import PodwireError
from podwire.kinds import registry
from podwire.kinds.base import KindChoice

if TYPE_CHECKING:
    from podwire.agent.core import Agent


def backend_health(agent: Agent) -> tuple[bool, str]:
    """(ok, why not): one cheap backend call."""
    try:
        agent.backend.list_networks(agent.ctx, {"id": ["00000000-0000-0000-0000-000000000000"]})
    except PodwireError as exc:
        return False, f"backend {agent.backend.name}: {exc.message}"
    except Exception as exc:  # a backend failing in an unplanned way is not ok either
        return False, f"backend {agent.backend.name}: {exc}"
    return True, ""


def can_attach(agent: Agent, network_ref: str) -> tuple[bool, str]:
    """Could an ADD on this network succeed now? (ok, why not). Backend
    reachable, network exists and unambiguous, and the kind its ports would
    get not known to be unavailable on this host (from the cached
    descriptions: never waits for a slow probe)."""
    ok, reason = backend_health(agent)
    if not ok:
        return False, reason
    try:
        network = agent.resolve_network(network_ref)
        # What the decision will see once the backend answered a new port.
        choice = KindChoice(
            vif_type=agent.backend.bound_vif_type or "unbound",
            datapath_hint=network.datapath,
            node_mode=agent.config.agent.node_mode,
            network=network.name or network.id,
            default_kind=agent.config.agent.default_kind,
        )
        kind = registry.decide(choice)
    except PodwireError as exc:
        return False, exc.message
    for described in agent.descriptions.get():
        if kind in described.get("kinds", ()) and not described.get("available", True):
            return False, f"data path {kind} unavailable here: {described.get('reason', '')}"
    return True, ""


def status(agent: Agent) -> AgentStatus:
    backend_ok, reason = backend_health(agent)
    return AgentStatus(
        ready=backend_ok,
        backend=agent.backend.name,
        backend_ok=backend_ok,
        reason=reason,
        attachments=agent.store.count(),
        in_flight=agent.gate.admitted,
        drivers=agent.descriptions.get(),
        pools=_pool_levels(agent),
    )


def _pool_levels(agent: Agent) -> dict[str, int]:
    if agent.port_pool is None:
        return {}
    levels: dict[str, int] = {}
    for (_pool, _network, state), count in agent.port_pool.levels().items():
        levels[state] = levels.get(state, 0) + int(count)
    return levels


# --- network-status ------------------------------------------------------------------


def network_status(agent: Agent, records: list[Attachment]) -> list[dict[str, Any]]:
    """Multus ``network-status`` elements, one per plugged interface."""
    out = []
    for record in records:
        if record.vif is None or record.state != "ready":
            continue
        vif = record.vif
        element: dict[str, Any] = {
            "name": record.network_ref,
            "interface": record.ifname,
            "ips": [a.split("/")[0] for a in vif.addresses],
            "mac": vif.mac,
            "default": record.default_route,
            "dns": {"nameservers": list(vif.dns_nameservers)} if vif.dns_nameservers else {},
        }
        try:
            info = agent.kinds.get(vif.kind).device_info(vif, None)
        except PodwireError:
            info = {}
        if info:
            element["device-info"] = info
        out.append(element)
    return out
