"""Run the agent process: the agent, its API on its socket, and the Docker
plugin beside it when configured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

from podwire.agent.core import Agent
from podwire.config import Config
from podwire.daemon.app import build_app
from podwire.daemon.door import CniDoor
from podwire.daemon.sockets import bind_unix_socket, lock_state_dir
from podwire.errors import Unavailable

log = logging.getLogger(__name__)


def run_agent(config: Config) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, finish the requests
    in flight, close the backend and the store, and remove the socket."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config.state_dir.mkdir(parents=True, exist_ok=True)
    state_lock = lock_state_dir(config.state_dir)
    try:
        _serve(config)
    finally:
        os.close(state_lock)


def _serve(config: Config) -> None:
    import uvicorn

    agent = Agent.from_config(config)
    socket_path = config.agent.socket
    sock: socket.socket | None = None
    door: Any = None  # the CNI door on the agent's socket (podwire/daemon/door.py)
    plugin: Any = None  # the docker plugin server, when config.agent.serve_docker
    metrics_server: Any = None  # the TCP /metrics server, when config.metrics.address
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(agent),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=30,
        )
    )

    # Before uvicorn installs its handlers (reconcile, bind) a signal must
    # still stop us; and uvicorn re-raises the signal it caught once it has
    # shut down, which with this handler lands here instead of killing the
    # process before the cleanup below.
    def stop(_sig: int, _frame: object) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # Bound first: a second agent on this socket stops here, before its
        # reconcile could roll back the first one's ADDs in flight.
        sock = bind_unix_socket(socket_path)
        agent.prestart_workers()  # no thread start delays a request (issue 14)
        report = agent.reconcile()
        log.info("agent: reconcile %s", report)
        metrics_server = _serve_metrics(config, agent)
        log.info("agent: serving %s (backend %s)", socket_path, agent.backend.name)
        if config.agent.serve_docker:
            from podwire.daemon.docker import DockerPluginServer

            # The door reconciles its own records after the agent's.
            plugin = DockerPluginServer(agent, config.agent.docker_plugin_socket)
        hand_off = _HandOff(server)
        door = CniDoor(agent, sock, hand_off)

        async def serve() -> None:
            # uvicorn listens on nothing itself: the door accepts every
            # connection and hands it what is not a CNI call.
            hand_off.bind(asyncio.get_running_loop())
            door.start()
            main = server.serve(sockets=[])
            await (plugin.run_beside(main) if plugin is not None else main)

        asyncio.run(serve())
    finally:
        if door is not None:
            door.close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        if plugin is not None:
            plugin.close()
        if sock is not None:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
        agent.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("agent: stopped")


def _serve_metrics(config: Config, agent: Agent) -> Any:
    """The metrics on TCP (prometheus_client's own server, on a thread of its
    own), when configured; None otherwise."""
    where = config.metrics.host_port()
    if where is None:
        return None
    from prometheus_client import start_wsgi_server

    host, port = where
    try:
        server, _thread = start_wsgi_server(port, host, registry=agent.metrics.registry)
    except OSError as exc:
        raise Unavailable(f"cannot serve metrics on {config.metrics.address}: {exc}") from exc
    log.info("agent: metrics on http://%s/metrics", config.metrics.address)
    return server


class _HandOff:
    """A connection the door accepted that is not a CNI call, given to
    uvicorn as if its own listener had accepted it (uvicorn's HTTP protocol
    on the event loop)."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, conn: socket.socket) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            conn.close()
            return
        loop.call_soon_threadsafe(self._start, conn)

    def _start(self, conn: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(self._adopt(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        server = self._server
        while not server.started:  # its protocol needs the server's state
            if server.should_exit:
                conn.close()
                return
            await asyncio.sleep(0.005)
        config = server.config

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = config.http_protocol_class(
                config=config, server_state=server.server_state, app_state=server.lifespan.state
            )
            return made

        try:
            await asyncio.get_running_loop().connect_accepted_socket(protocol, conn)
        except OSError:
            conn.close()
