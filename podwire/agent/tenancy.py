"""The tenant check of an agent that acts for one project.

Inside a VM (node mode ``nested``) the agent holds a token of the VM owner's
project and attaches containers only through its own VM's port, to networks
that project may use. The backend hides other projects' objects (a 404, as
Neutron's API does for objects a project cannot see), so to this agent a
network or port its token cannot see is another project's: the request is
refused as Forbidden, before anything is made, and says so. Which node
modes serve one project is the kinds' word (``KindPlugin.one_project``).

A network the token can see but that belongs to another project (an admin's
token) is the kinds' check (kinds/nested.py ``check_tenant``, against the VM
port's project: the agent's own context does not carry the token's project).

The API keeps Neutron's 404 for another project's object (docs/nested.md,
"Tenant check"); only the agent, which knows it serves one project, turns
"cannot see" into "may not use".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podwire.errors import Forbidden, NotFound
from podwire.kinds import registry

if TYPE_CHECKING:
    from podwire.agent.core import Agent


def one_project(agent: Agent) -> bool:
    return registry.unseen_is_forbidden(agent.config.agent.node_mode)


def unseen(agent: Agent, exc: NotFound, what: str, ref: str) -> Exception:
    """What to raise for a ``what`` (network, port) named ``ref`` that the
    agent's token cannot see: Forbidden for a one-project agent."""
    if not one_project(agent):
        return exc
    return Forbidden(
        f"forbidden: {what} {ref!r} is not one this agent's project may use"
        f" (this agent attaches only the VM owner's containers, through its own VM's port):"
        f" {exc.message}",
        kind=what,
        object_id=ref,
    )
