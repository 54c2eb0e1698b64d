"""Docker's libnetwork remote network + IPAM driver (see app.py, and the
agent-side semantics in podwire.agent.docker_support)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podwire.frontends.docker.app import HANDLERS, DockerService, create_app

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from podwire.agent.core import Agent

__all__ = ["HANDLERS", "DockerService", "create_app", "plugin_app"]


def plugin_app(agent: Agent) -> Starlette:
    """The app the agent serves on config.agent.docker_plugin_socket."""
    from podwire.agent.docker_support import DockerSupport

    return create_app(DockerSupport(agent))
