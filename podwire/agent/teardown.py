"""DEL: undo one attachment from its record; or, with no record, remove the
ports this host made for that container and interface (found by their
ownership tags)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from podwire.agent import device_info, steps
from podwire.agent.caches import Stages
from podwire.agent.ownership import device_owner, ifname_tag, owned_tags, port_name
from podwire.agent.types import Attachment, DetachRequest
from podwire.datapath.vif import VifBase
from podwire.errors import NotFound
from podwire.model import Port

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """A kind's ``detached`` hook to call once the DEL's locks are released."""

    vif: VifBase
    network_id: str

    def send(self, agent: Agent) -> None:
        try:
            agent.kinds.get(self.vif.kind).detached(self.vif, self.network_id)
        except Exception:
            log.exception("kind %s: after-DEL hook failed", self.vif.kind)


def detach(agent: Agent, req: DetachRequest) -> list[str]:
    """The VIF kind of the attachment undone (none when no record was)."""
    stages = Stages("DEL")
    record = agent.store.find(req.container_id, req.ifname)
    stages.mark("record_find")
    if record is not None and req.network and not same_network(agent, record, req.network):
        # Same container and interface name, another network: not ours to
        # delete (CNI keys attachments by network too).
        record = None
    if record is not None:
        teardown(agent, record, req.netns, stages)
    else:
        teardown_unrecorded(agent, req)
        stages.mark("unrecorded")
    stages.done()
    return [record.vif.kind] if record is not None and record.vif is not None else []


def same_network(agent: Agent, record: Attachment, ref: str) -> bool:
    if ref in (record.network_id, record.network_ref):
        return True
    try:
        return agent.resolve_network(ref).id == record.network_id
    except NotFound:
        return False


def teardown(
    agent: Agent,
    record: Attachment,
    netns: str | None = None,
    stages: Stages | None = None,
    notify: bool = True,
) -> list[Notice]:
    """Undo one attachment from its record; every step tolerates "already
    gone". The record is deleted last, so a failed teardown is retried by
    the next DEL (or the start-up reconcile). With ``notify=False`` the
    kinds' after-DEL hooks are returned for the caller to send."""
    stages = stages or Stages("teardown")
    if record.state != "detaching":
        agent.store.update(record.id, state="detaching")
    stages.mark("record_detaching")
    steps.undo_steps(agent, record, netns)
    stages.mark("undo")
    device_info.remove(agent, record.id)
    agent.store.delete(record.id)
    agent.status_files.drop(record.container_id, record.ifname)
    stages.mark("record_delete")
    notices = [Notice(record.vif, record.network_id)] if record.vif is not None else []
    if not notify:
        return notices
    for notice in notices:
        notice.send(agent)
    return []


def undo_written(agent: Agent, record_id: str, netns: str | None) -> list[Notice]:
    """Undo a record the failing ADD wrote. A failure of the undo itself is
    logged (the ADD's own error is the one the caller sees) and the record
    stays, "detaching", for the next DEL or the start-up reconcile."""
    try:
        record = agent.store.get(record_id)
        return teardown(agent, record, netns, notify=False)
    except NotFound:
        return []
    except Exception:
        log.exception("undoing attachment %s failed; left for reconcile", record_id)
        return []


def teardown_unrecorded(agent: Agent, req: DetachRequest) -> None:
    """DEL with no record: delete the ports this host made for that
    container and interface (a lost record must not leak an address)."""
    network_id: str | None = None
    if req.network:
        try:
            network_id = agent.resolve_network(req.network).id
        except NotFound:
            return  # no such network: nothing of it can be ours
    for port in unrecorded_ports(agent, req.container_id, req.ifname, req.frontend, network_id):
        steps.delete_port(agent, port.id)


def unrecorded_ports(
    agent: Agent, container_id: str, ifname: str, frontend: str, network_id: str | None
) -> list[Port]:
    host = agent.config.host_id
    tagged: dict[str, list[str]] = {
        "device_id": [container_id],
        "tags": [*owned_tags(host), ifname_tag(ifname)],
    }
    # Ports of an agent from before the ownership mark: by name and binding.
    legacy: dict[str, list[str]] = {
        "device_id": [container_id],
        "device_owner": [device_owner(frontend)],
        "name": [port_name(container_id, ifname)],
    }
    return owned_ports(agent, tagged, legacy, network_id)


def owned_ports(
    agent: Agent,
    tagged: dict[str, list[str]],
    legacy: dict[str, list[str]],
    network_id: str | None,
    frontend: str | None = None,
) -> list[Port]:
    """Ports found by this host's ownership tags (``tagged`` filters), plus
    untagged ports of agents from before the mark (``legacy`` filters) that
    are bound to this host; of ``frontend``'s device owner when given."""
    host = agent.config.host_id
    found: dict[str, Port] = {}
    for filters in (tagged, legacy):
        if network_id is not None:
            filters["network_id"] = [network_id]
        for port in agent.backend.list_ports(agent.ctx, filters):
            if filters is legacy and (port.tags or port.binding.host_id != host):
                continue
            if frontend and port.device_owner != device_owner(frontend):
                continue
            found[port.id] = port
    return list(found.values())
