"""ADD: a container's interfaces, one per selected network, under the
container's one lock and one undo stack.

The undo stack is the records themselves: each interface's record is
written before its first step acts, and a failure anywhere undoes every
record this request wrote, newest first, from the records alone (so the
third network failing rolls back the first two, and a crash leaves records
the start-up reconcile undoes the same way).

Default-route rule: at most one selection may say ``default_route=True``
(else InvalidInput); if the container already has an attachment owning the
default route, a new one saying True is a Conflict and one saying None does
not get it; if none owns it yet and no selection says True, the request's
first selection not saying False owns it (False: never this one, so that a
runtime calling once per network in no fixed order, as podman does, can pin
the owner). Only the owner gets default routes and DNS.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from podwire.agent import device_info, ports, steps, teardown, tenancy
from podwire.agent.caches import Stages
from podwire.agent.types import (
    LABEL_NETWORK,
    AttachedInterface,
    Attachment,
    AttachRequest,
    AttachResult,
    NetworkSelection,
    Step,
)
from podwire.errors import Conflict, InvalidInput, NotFound
from podwire.kinds import registry
from podwire.kinds.base import AttachmentRef, BuildContext, KindChoice
from podwire.model import Network, Port, Subnet, new_id

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    selection: NetworkSelection
    ifname: str
    default_route: bool


def plan(req: AttachRequest, existing: list[Attachment]) -> list[Planned]:
    """Each selection's interface name and default-route ownership."""
    taken = {r.ifname for r in existing}
    for sel in req.networks:
        if sel.ifname is None:
            continue
        clash = next((r for r in existing if r.ifname == sel.ifname), None)
        if clash is not None:
            raise Conflict(
                f"container {req.container_id} already has an interface {sel.ifname} "
                f"(attachment {clash.id}, state {clash.state}); DEL it first",
                kind="attachment",
                object_id=req.container_id,
                field="ifname",
            )
        if sel.ifname in taken:
            raise InvalidInput(
                f"interface {sel.ifname} is named twice in one request",
                kind="attachment",
                object_id=req.container_id,
                field="ifname",
            )
        taken.add(sel.ifname)

    wanted = [i for i, sel in enumerate(req.networks) if sel.default_route]
    if len(wanted) > 1:
        raise InvalidInput(
            "at most one network may own the default route "
            f"({len(wanted)} selections say default_route)",
            kind="attachment",
            object_id=req.container_id,
            field="default_route",
        )
    owner = next((r for r in existing if r.default_route), None)
    if owner is not None and wanted:
        raise Conflict(
            f"container {req.container_id} has its default route on {owner.ifname} "
            f"(attachment {owner.id}); DEL it first",
            kind="attachment",
            object_id=req.container_id,
            field="default_route",
        )
    if owner is not None:
        owning = None
    elif wanted:
        owning = wanted[0]
    else:  # the first that does not refuse it (False: never this one)
        owning = next((i for i, s in enumerate(req.networks) if s.default_route is not False), None)

    out = []
    for i, sel in enumerate(req.networks):
        ifname = sel.ifname
        if ifname is None:
            n = 0
            while f"eth{n}" in taken:
                n += 1
            ifname = f"eth{n}"
            taken.add(ifname)
        out.append(Planned(sel, ifname, i == owning))
    return out


def attach(agent: Agent, req: AttachRequest) -> AttachResult:
    """Under the container's lock (the caller holds it)."""
    existing = agent.store.list(container_id=req.container_id)
    planned = plan(req, existing)
    written: list[str] = []  # record ids, the undo stack
    attached: list[AttachedInterface] = []
    detached: list[teardown.Notice] = []
    # ``held`` outlives the undo: a failed ADD is undone before a kind's
    # shared object (a network's bridge) is released to a removal.
    with ExitStack() as held:
        try:
            for item in planned:
                attached.append(_attach_one(agent, req, item, held, written))
        except BaseException:
            for record_id in reversed(written):
                detached += teardown.undo_written(agent, record_id, req.netns)
            raise
    for notice in detached:
        notice.send(agent)
    for done in attached:
        agent.activator.submit(done.port)
        agent.status_files.put(done.attachment)
        device_info.write(agent, done.attachment, done.interface)
    return AttachResult(interfaces=attached)


def _attach_one(
    agent: Agent, req: AttachRequest, item: Planned, held: ExitStack, written: list[str]
) -> AttachedInterface:
    sel, ifname = item.selection, item.ifname
    stages = Stages("ADD")
    try:
        network, subnets = agent.networks.get(sel.network)
    except NotFound as exc:
        raise tenancy.unseen(agent, exc, "network", sel.network) from None
    stages.mark("network_lookup")
    source, intent = ports.source_of(agent, req, sel)
    record_id = new_id()
    if source == steps.PORT_CREATE:
        # The port's tags name this record: found again if it dies unrecorded.
        intent = ports.create_intent(agent, record_id, ifname)
    record = agent.store.create(
        attachment_id=record_id,
        container_id=req.container_id,
        ifname=ifname,
        netns=req.netns,
        network=network.id,
        frontend=req.frontend,
        labels={**req.labels, LABEL_NETWORK: sel.network},
        default_route=item.default_route,
        frontend_state=req.frontend_state,
        steps=[Step(name=source, data=intent)],
    )
    written.append(record.id)
    log_ = steps.StepLog(agent.store, record)
    stages.mark("record_pending")

    step = log_.started()
    port, network, subnets = _take_port(agent, req, item, source, step.data, network, subnets)
    if port is None:  # the pool had none: create one, as its own step
        log_.finish(step)
        step = log_.begin(steps.PORT_CREATE, ports.create_intent(agent, record.id, ifname))
        port, network, subnets = _take_port(
            agent, req, item, steps.PORT_CREATE, step.data, network, subnets
        )
        assert port is not None
    log_.finish(step, port_id=port.id)
    owns_port = source != steps.PORT_ADOPT
    if network.id != record.network_id:
        agent.store.update(record.id, network_id=network.id)
    if not {f.subnet_id for f in port.fixed_ips} <= {s.id for s in subnets}:
        # A subnet newer than the cache: the port is on it.
        subnets = agent.networks.refresh_subnets(sel.network, network)
    stages.mark("port")

    # The one decision of the kind, now that the backend has answered.
    kind = registry.decide(
        KindChoice.of(port, network, agent.config.agent.node_mode, agent.config.agent.default_kind)
    )
    plugin = agent.kinds.get(kind)
    ref = AttachmentRef(
        record.id, req.container_id, ifname, network.id, port.id, numa_node=sel.numa_node
    )
    allocation: dict[str, object] = {}
    if plugin.has_hook("allocate"):
        step = log_.begin(
            steps.KIND_ALLOCATE,
            {"kind": kind, "attachment_id": record.id},
            port_id=port.id,
            owns_port=owns_port,
        )
        allocation = plugin.allocate(ref, step.data)
        log_.finish(step, **allocation)
    vif = plugin.build(
        BuildContext(
            network=network,
            port=port,
            subnets=subnets,
            config=agent.config,
            ifname=ifname,
            default_route=item.default_route,
            selection=sel,
            allocation=allocation,
        )
    )
    stages.mark("vif_build")
    held.enter_context(plugin.hold(vif))
    if plugin.has_hook("apply_backend"):
        step = log_.begin(
            steps.KIND_BACKEND,
            {"kind": kind, "attachment_id": record.id, "port_id": port.id},
            port_id=port.id,
            owns_port=owns_port,
        )
        log_.finish(step, **plugin.apply_backend(ref, vif))

    step = log_.begin(
        steps.PLUG,
        {"kind": kind, "ifname": ifname},
        port_id=port.id,
        owns_port=owns_port,
        vif=vif,
    )
    stages.mark("record_plug")
    interface = plugin.driver().plug(vif, req.netns, ifname)
    stages.mark("plug")
    log_.finish(step)
    log_.commit(state="ready")
    stages.mark("record_ready")
    stages.done()
    ready = record.model_copy(
        update={
            "network_id": network.id,
            "port_id": port.id,
            "owns_port": owns_port,
            "vif": vif,
            "state": "ready",
            "steps": log_.steps,
        }
    )
    return AttachedInterface(
        attachment=ready,
        interface=interface,
        port=port,
        subnets=[s for s in subnets if s.id in {f.subnet_id for f in port.fixed_ips}],
    )


def _take_port(
    agent: Agent,
    req: AttachRequest,
    item: Planned,
    source: str,
    intent: dict[str, object],
    network: Network,
    subnets: list[Subnet],
) -> tuple[Port | None, Network, list[Subnet]]:
    sel = item.selection
    try:
        port = ports.take(agent, source, dict(intent), req, sel, item.ifname, network)
    except NotFound as exc:
        if exc.kind != "network":
            raise
        # The cached network is gone (deleted, or its name now names another
        # one): never use it; look it up afresh. The record names the old
        # id only until the port is made: nothing was made on it.
        agent.networks.forget(sel.network)
        fresh, subnets = agent.networks.get(sel.network)
        if fresh.id == network.id:
            raise
        network = fresh
        port = ports.take(agent, source, dict(intent), req, sel, item.ifname, network)
    return port, network, subnets
