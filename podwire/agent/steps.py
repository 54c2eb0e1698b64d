"""ADD as recorded steps, each with its undo.

An attachment's record holds its steps (podwire.agent.types.Step). Before a
step acts, its intent is written to the record with everything its undo
needs (ids, names, the kind's allocation); after it acted, it is marked
done with what it learned (the port's id). DEL, GC and the start-up
reconcile undo the steps in reverse order from the record alone: without
the netns, without rebuilding names from ids, idempotently (a step already
undone, or only intended, is fine).

The steps, in ADD order:

========================  ============================================  =======================
step                      acts                                          undo
========================  ============================================  =======================
``port.create``           create the port, tagged with its owner        delete it (by id, else by
                                                                        its attachment tag)
``port.adopt``            bind the caller's port (by id)                unbind it, give it back
``port.pool``             take a ready port from the agent's pool hook  give it back to the pool
``port.reserved``         bind a port a door reserved (Docker's IPAM)   delete it
``kind.allocate``         the kind's host allocation (VF, VLAN, dir)    the kind's ``release``
``kind.backend``          the kind's backend side effects               the kind's ``undo_backend``
``plug``                  the kind's driver plugs the VIF               the driver unplugs it
========================  ============================================  =======================

The kind steps are recorded only for kinds that have those hooks. Fault
points (podwire.faults): ``step.<name>:before`` once the intent is written,
``step.<name>:after`` once it acted (before "done" is written: the undo
must then work from the intent), and ``step.<name>.undo:before|:after``
around each undo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from podwire import faults
from podwire.agent.ownership import attachment_tag, port_name
from podwire.agent.store import AttachmentStore
from podwire.agent.types import Attachment, Step
from podwire.errors import NotFound
from podwire.model import PortBinding, PortUpdate

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

PORT_CREATE = "port.create"
PORT_ADOPT = "port.adopt"
PORT_POOL = "port.pool"
PORT_RESERVED = "port.reserved"
KIND_ALLOCATE = "kind.allocate"
KIND_BACKEND = "kind.backend"
PLUG = "plug"
PORT_STEPS = (PORT_CREATE, PORT_ADOPT, PORT_POOL, PORT_RESERVED)
ALL_STEPS = (*PORT_STEPS, KIND_ALLOCATE, KIND_BACKEND, PLUG)


class StepLog:
    """The steps of one attachment while it is added. ``begin`` writes the
    step's intent (with the "done" of the step before, and any record
    fields such as the VIF) in one write; ``finish`` marks it done, written
    with the next intent or at ``commit``."""

    def __init__(self, store: AttachmentStore, record: Attachment) -> None:
        self._store = store
        self.record_id = record.id
        self.steps = list(record.steps)

    def started(self) -> Step:
        """The first step, whose intent was written with the record."""
        step = self.steps[-1]
        faults.hit(f"step.{step.name}:before")
        return step

    def begin(self, name: str, data: dict[str, Any], **fields: Any) -> Step:
        step = Step(name=name, data=data)
        self.steps.append(step)
        self._store.update(self.record_id, steps=self.steps, **fields)
        faults.hit(f"step.{name}:before")
        return step

    def finish(self, step: Step, **learned: Any) -> Step:
        faults.hit(f"step.{step.name}:after")
        done = step.model_copy(update={"state": "done", "data": {**step.data, **learned}})
        self.steps[self.steps.index(step)] = done
        return done

    def commit(self, **fields: Any) -> None:
        self._store.update(self.record_id, steps=self.steps, **fields)


# --- undo ---------------------------------------------------------------------------

Undo = Callable[["Agent", Attachment, Step, "str | None"], None]


def undo_steps(agent: Agent, record: Attachment, netns: str | None) -> None:
    """Undo every step of ``record``, newest first. Raises the first
    failure (the record then stays, for the next DEL or reconcile)."""
    for step in reversed(steps_of(record)):
        faults.hit(f"step.{step.name}.undo:before")
        _UNDO[step.name](agent, record, step, netns)
        faults.hit(f"step.{step.name}.undo:after")


def steps_of(record: Attachment) -> list[Step]:
    """The record's steps; for a record written before steps were recorded,
    the steps its port and VIF imply."""
    if record.steps:
        return record.steps
    steps: list[Step] = []
    if record.port_id is not None:
        name = PORT_CREATE if record.owns_port else PORT_ADOPT
        steps.append(Step(name=name, state="done", data={"port_id": record.port_id}))
    else:
        # Died between creating the port and recording it: find it by name.
        legacy = {"legacy_name": port_name(record.container_id, record.ifname)}
        steps.append(Step(name=PORT_CREATE, data=legacy))
    if record.vif is not None:
        steps.append(Step(name=PLUG, state="done", data={"kind": record.vif.kind}))
    return steps


def delete_port(agent: Agent, port_id: str) -> None:
    agent.activator.settle(port_id)  # no ACTIVE mark lands after the delete
    with suppress(NotFound):
        agent.backend.delete_port(agent.ctx, port_id)


def release_port(agent: Agent, port_id: str, container_id: str) -> None:
    """Give a caller's port back as it came: unbound, no device, its own
    binding profile (what kinds wrote into it they have taken out by then).
    Not when someone else has taken it since."""
    agent.activator.settle(port_id)
    with suppress(NotFound):
        port = agent.backend.get_port(agent.ctx, port_id)
        if port.device_id not in ("", container_id):
            return
        agent.backend.update_port(
            agent.ctx,
            port_id,
            PortUpdate(
                device_id="",
                device_owner="",
                binding=PortBinding(profile=dict(port.binding.profile)),
                status="DOWN",
            ),
        )


def _undo_port_create(agent: Agent, record: Attachment, step: Step, _netns: str | None) -> None:
    port_id = step.data.get("port_id")
    if port_id:
        delete_port(agent, port_id)
        return
    # Only intended: the port, if the backend made it, carries this tag.
    filters: dict[str, list[str]] = {"tags": [attachment_tag(record.id)]}
    if "legacy_name" in step.data:
        filters = {"device_id": [record.container_id], "name": [step.data["legacy_name"]]}
    for port in agent.backend.list_ports(agent.ctx, filters):
        if port.binding.host_id in ("", agent.config.host_id):
            delete_port(agent, port.id)


def _undo_port_adopt(agent: Agent, record: Attachment, step: Step, _netns: str | None) -> None:
    release_port(agent, step.data["port_id"], record.container_id)


def _undo_port_pool(agent: Agent, record: Attachment, step: Step, _netns: str | None) -> None:
    port_id = step.data.get("port_id")
    if not port_id:
        return  # the pool's take is one call: not taken, or the pool's to find
    if agent.port_pool is not None:
        agent.port_pool.give_back(port_id)
    else:
        delete_port(agent, port_id)


def _undo_port_reserved(agent: Agent, record: Attachment, step: Step, _netns: str | None) -> None:
    delete_port(agent, step.data["port_id"])


def _undo_kind_allocate(agent: Agent, record: Attachment, step: Step, _netns: str | None) -> None:
    agent.kinds.get(step.data["kind"]).release(step.data)


def _undo_kind_backend(agent: Agent, record: Attachment, step: Step, _netns: str | None) -> None:
    agent.kinds.get(step.data["kind"]).undo_backend(step.data)


def _undo_plug(agent: Agent, record: Attachment, step: Step, netns: str | None) -> None:
    if record.vif is None:
        return  # the VIF is written with the plug's intent: nothing was plugged
    driver = agent.kinds.get(record.vif.kind).driver()
    driver.unplug(record.vif, netns or record.netns, record.ifname)


_UNDO: dict[str, Undo] = {
    PORT_CREATE: _undo_port_create,
    PORT_ADOPT: _undo_port_adopt,
    PORT_POOL: _undo_port_pool,
    PORT_RESERVED: _undo_port_reserved,
    KIND_ALLOCATE: _undo_kind_allocate,
    KIND_BACKEND: _undo_kind_backend,
    PLUG: _undo_plug,
}
