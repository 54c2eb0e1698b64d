"""Docker's door: the libnetwork remote network + IPAM driver.

app.py translates the protocol (JSON in and out); door.py and its modules
hold libnetwork's meaning over the agent's narrow API. The daemon
(podwire.daemon) serves ``plugin_app`` on the plugin socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podwire.frontends.docker.app import HANDLERS, DockerService, create_app
from podwire.frontends.docker.door import DockerDoor

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from podwire.agent.core import Agent

__all__ = ["HANDLERS", "DockerDoor", "DockerService", "create_app", "plugin_app"]


def plugin_app(agent: Agent, door: DockerDoor | None = None) -> Starlette:
    """The app served on config.agent.docker_plugin_socket."""
    return create_app(door or DockerDoor(agent))
