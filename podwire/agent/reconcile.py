"""GC and the start-up reconcile: undo what no caller will DEL.

- GC tears down a frontend's attachments the caller no longer keeps;
- reconcile (before serving, after a crash) undoes every record left
  "pending" or "detaching" from its recorded steps, lets each kind remove
  what it left on the host that no record holds, and deletes the ports this
  host made (found by their ownership tags) that no record knows, and
  removes the probe links of drivers' describe() whose process was killed
  mid-probe (podwire.datapath.probes: never a live process's probe).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from podwire.agent import device_info, steps
from podwire.agent.ownership import device_owner, owned_tags, port_name, tag_value
from podwire.agent.teardown import owned_ports, teardown
from podwire.agent.types import Attachment, GcRequest
from podwire.datapath import probes
from podwire.errors import NotFound, PodwireError
from podwire.model import Port

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

FRONTENDS = ("cni", "docker", "cli")


def gc(agent: Agent, req: GcRequest) -> list[Attachment]:
    """Tear down every attachment of the frontend (and labels) not kept;
    then delete this host's ports of the network that no record knows.
    Continues past failures and raises the first at the end."""
    keep = {(cid, ifname) for cid, ifname in req.keep}
    removed: list[Attachment] = []
    errors: list[PodwireError] = []
    for record in agent.store.list(frontend=req.frontend):
        if any(record.labels.get(k) != v for k, v in req.labels.items()):
            continue
        if (record.container_id, record.ifname) in keep:
            continue
        with agent.gate.container(record.container_id), agent.gate.slot():
            current = agent.store.find(record.container_id, record.ifname)
            if current is None or current.id != record.id:
                continue
            try:
                teardown(agent, current)
                removed.append(current)
            except PodwireError as exc:
                errors.append(exc)
    if req.network:
        try:
            delete_orphan_ports(agent, req.frontend, req.network, keep)
        except PodwireError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    return removed


def _candidates(agent: Agent, frontend: str | None, network_id: str | None) -> list[Port]:
    """Ports carrying this host's ownership mark; plus, from agents before
    the mark, podwire-owned ports bound to this host."""
    host = agent.config.host_id
    tagged: dict[str, list[str]] = {"tags": owned_tags(host)}
    legacy: dict[str, list[str]] = {
        "device_owner": [device_owner(f) for f in ([frontend] if frontend else FRONTENDS)]
    }
    return owned_ports(agent, tagged, legacy, network_id, frontend)


def delete_orphan_ports(
    agent: Agent,
    frontend: str | None,
    network_ref: str | None,
    keep: set[tuple[str, str]] | None = None,
) -> list[str]:
    """Ports this host made that no record knows: leaked by a crash or a
    lost record."""
    network_id = None
    if network_ref is not None:
        try:
            network_id = agent.resolve_network(network_ref).id
        except NotFound:
            return []
    known_records = {r.id for r in agent.store.list()}
    known = {r.container_id for r in agent.store.list()}
    kept = {port_name(cid, ifname) for cid, ifname in keep or set()}
    deleted = []
    for port in _candidates(agent, frontend, network_id):
        if tag_value(port.tags, "attachment") in known_records:
            continue
        if port.device_id in known or port.name in kept:
            continue
        with agent.gate.container(port.device_id or port.id):
            # Re-read under the container's lock: an ADD may have just
            # recorded it.
            if port.device_id and agent.store.list(container_id=port.device_id):
                continue
            steps.delete_port(agent, port.id)
        deleted.append(port.id)
    return deleted


def reconcile(agent: Agent) -> dict[str, list[str]]:
    """After a crash: roll back every ADD or DEL that did not finish, and
    delete this host's podwire ports that no record knows. Run before
    serving requests."""
    rolled_back: list[str] = []
    failed: list[str] = []
    for record in agent.store.list(states=("pending", "detaching")):
        try:
            teardown(agent, record)
            rolled_back.append(record.id)
        except PodwireError as exc:
            log.warning("reconcile: cannot roll back attachment %s: %s", record.id, exc)
            failed.append(record.id)
    # Rolled back means gone: let background deletions finish first.
    agent.flush_kinds()
    recorded = [r.vif for r in agent.store.list() if r.vif is not None]
    swept: list[str] = []
    for plugin in agent.kinds.all():
        try:
            swept += plugin.reconcile(recorded)
        except PodwireError as exc:
            log.warning("reconcile: kind %s: %s", plugin.name, exc.message)
    try:
        orphans = delete_orphan_ports(agent, None, None)
    except PodwireError as exc:
        log.warning("reconcile: cannot list this host's ports: %s", exc)
        orphans = []
    stale_probes = _sweep_probes()
    if rolled_back or orphans or swept or stale_probes:
        log.info(
            "reconcile: rolled back %s, deleted orphan ports %s, removed from the host %s,"
            " stale probe links %s",
            rolled_back,
            orphans,
            swept,
            stale_probes,
        )
    ready = agent.store.list(states=("ready",))
    device_info.sweep(agent, {r.id for r in ready})
    for record in ready:  # a crash between "ready" and its file
        device_info.ensure(agent, record)
    agent.status_files.load(ready)
    agent.status_files.write_all()
    return {
        "rolled_back": rolled_back,
        "failed": failed,
        "orphan_ports": orphans,
        "retired_pairs": swept,
        "stale_probes": stale_probes,
    }


def _sweep_probes() -> list[str]:
    """Probe links left by a process killed mid-describe(): no record holds
    them, so nothing else would ever delete them."""
    try:
        return probes.sweep_stale()
    except OSError as exc:  # NetlinkError included: e.g. not root
        log.warning("reconcile: cannot sweep stale probe links: %s", exc)
        return []
