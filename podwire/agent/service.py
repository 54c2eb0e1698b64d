"""``podwire agent``: the agent's HTTP API on its unix socket.

Routes:
  POST /v1/cni           the CNI shim transport (see TEAM.md's wire contract)
  GET  /v1/status        AgentStatus
  GET  /v1/attachments[/{container_id}], /v1/containers/{id}/network-status
                         attachment records and Multus network-status
                         (podwire.daemon.attachments)
  /v2.0/...              the Neutron v2.0 subset (podwire.api), caller = admin:
                         the socket is root-only (mode 0600), that is the auth.

The socket is bound here, not by uvicorn, so that it is created with mode
0600 from the first instant (uvicorn would chmod it 0666).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from podwire.agent.core import Agent
from podwire.config import Config
from podwire.errors import Unavailable

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_app(agent: Agent) -> ASGIApp:
    """The whole local API as one ASGI app."""
    from podwire.daemon.attachments import routes as attachment_routes
    from podwire.frontends.cni.handler import handle as handle_cni

    async def cni(request: Request) -> Response:
        body = await request.body()
        code, out = await handle_cni(agent, request.headers, body)
        return Response(out, headers={"X-CNI-Exit": str(code)}, media_type="application/json")

    async def status(_request: Request) -> Response:
        loop = asyncio.get_running_loop()
        state = await loop.run_in_executor(None, agent.status)
        return JSONResponse(state.model_dump(mode="json"))

    local = Starlette(
        routes=[
            Route("/v1/cni", cni, methods=["POST"]),
            Route("/v1/status", status, methods=["GET"]),
            *attachment_routes(agent),
        ]
    )
    neutron = _neutron_app(agent)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if neutron is not None and scope["type"] == "http" and not path.startswith("/v1/"):
            await neutron(scope, receive, send)
        else:
            await local(scope, receive, send)

    return app


def _neutron_app(agent: Agent) -> ASGIApp | None:
    import importlib

    try:
        api = importlib.import_module("podwire.api")
        create_app, trust_all = api.create_app, api.TrustAllAuth
    except (ImportError, AttributeError):  # no API app in this build: serve /v1 only
        return None
    app: ASGIApp = create_app(_RemovesBridges(agent), trust_all(agent.config.agent.project_id))
    return app


class _RemovesBridges:
    """The agent's backend for its /v2.0 API: a network deleted through the
    agent also loses this host's bridge for it (``Agent.remove_network_bridge``)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent.backend, name)

    def delete_network(self, ctx: Any, network_id: str) -> None:
        network = self._agent.backend.get_network(ctx, network_id)
        self._agent.backend.delete_network(ctx, network_id)
        self._agent.remove_network_bridge(network)


# --- the socket -----------------------------------------------------------------


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind ``path`` with mode 0600 (parent directory created, 0755). A stale
    socket file nobody listens on is replaced; a live one is an error (another
    agent serves it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise Unavailable(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
            path.unlink(missing_ok=True)
        else:
            raise Unavailable(f"another agent is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# --- run -------------------------------------------------------------------------


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


def lock_state_dir(state_dir: Path) -> int:
    """One agent per state dir: its records are only consistent with one
    writer reconciling them."""
    import fcntl

    fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Unavailable(f"another agent is already using state dir {state_dir}") from None
    return fd


def _serve(config: Config) -> None:
    import uvicorn

    agent = Agent.from_config(config)
    socket_path = config.agent.socket
    sock: socket.socket | None = None
    plugin: Any = None  # the docker plugin server, when config.agent.serve_docker
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
        report = agent.reconcile()
        log.info("agent: reconcile %s", report)
        log.info("agent: serving %s (backend %s)", socket_path, agent.backend.name)
        if config.agent.serve_docker:
            from podwire.frontends.docker.serve import DockerPluginServer

            plugin = DockerPluginServer(agent, config.agent.docker_plugin_socket)
            asyncio.run(plugin.run_beside(server.serve(sockets=[sock])))
        else:
            asyncio.run(server.serve(sockets=[sock]))
    finally:
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
