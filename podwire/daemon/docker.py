"""Serving the Docker plugin socket inside the agent process, beside its
local API.

dockerd finds the plugin by its socket, /run/docker/plugins/NAME.sock (NAME
is the driver name users pass to -d and --ipam-driver). The socket is bound
0600 like the agent's own: only root (dockerd) may talk to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from podwire.daemon.sockets import bind_unix_socket

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)


class _SecondServer(uvicorn.Server):
    """The agent's main server owns SIGTERM/SIGINT; this one stops with it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DockerPluginServer:
    def __init__(self, agent: Agent, path: Path) -> None:
        from podwire.frontends.docker import DockerDoor, plugin_app

        self.path = path
        door = DockerDoor(agent)
        # Before the socket is bound: dockerd reaches no record being mended.
        door.reconcile()
        self._sock = bind_unix_socket(path)
        self._server = _SecondServer(
            uvicorn.Config(
                plugin_app(agent, door),
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=30,
            )
        )

    async def run_beside(self, main: Awaitable[None]) -> None:
        """Serve until ``main`` (the agent's server) returns, then stop."""
        log.info("agent: serving the docker plugin on %s", self.path)
        task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        try:
            await main
        finally:
            self._server.should_exit = True
            await task

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
