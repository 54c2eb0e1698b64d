"""The agent's HTTP API on its unix socket, as one ASGI app.

Routes:
  POST /v1/cni           the CNI shim transport (docs/cni.md, "The shim and the agent")
  GET  /v1/status        AgentStatus
  GET  /v1/pools, POST /v1/pools/drain[?network=N]
                         the port pools (podwire.agent.pools), and emptying them
  GET  /metrics          Prometheus metrics (podwire.agent.metrics)
  GET  /v1/attachments[/{container_id}], /v1/containers/{id}/network-status
                         attachment records and network-status documents
                         (podwire.daemon.attachments)
  /v2.0/...              the Neutron v2.0 subset (podwire.api), caller = admin:
                         the socket is root-only (mode 0600), that is the auth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from podwire.agent.core import Agent
from podwire.daemon.attachments import routes as attachment_routes
from podwire.daemon.pools import routes as pool_routes

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_app(agent: Agent) -> ASGIApp:
    """The whole local API as one ASGI app."""
    from podwire.frontends.cni.handler import cni_code
    from podwire.frontends.cni.handler import handle as handle_cni
    from podwire.frontends.cni.handler import oversized as cni_oversized
    from podwire.frontends.cni.handler import verb_label as cni_verb

    async def cni(request: Request) -> Response:
        # The agent's socket answers POST /v1/cni in its door
        # (podwire/daemon/door.py) and never hands it here; this route serves
        # an app mounted elsewhere, with the same limits, off the event loop.
        body = b""
        refused = cni_oversized(request.headers, int(request.headers.get("content-length") or 0))
        if refused is None:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                refused = cni_oversized(request.headers, size)
                if refused is not None:
                    break
                chunks.append(chunk)
            body = b"".join(chunks)
        if refused is not None:
            code, out = refused
        else:
            loop = asyncio.get_running_loop()
            code, out = await loop.run_in_executor(None, handle_cni, agent, request.headers, body)
        agent.metrics.result("cni", cni_verb(request.headers), cni_code(code, out))
        return Response(out, headers={"X-CNI-Exit": str(code)}, media_type="application/json")

    async def metrics(_request: Request) -> Response:
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, agent.metrics.exposition)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def status(_request: Request) -> Response:
        loop = asyncio.get_running_loop()
        state = await loop.run_in_executor(None, agent.status)
        return JSONResponse(state.model_dump(mode="json"))

    async def inventory(_request: Request) -> Response:
        loop = asyncio.get_running_loop()
        return JSONResponse(await loop.run_in_executor(None, agent.inventory))

    local = Starlette(
        routes=[
            Route("/v1/cni", cni, methods=["POST"]),
            Route("/v1/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/inventory", inventory, methods=["GET"]),
            *pool_routes(agent),
            *attachment_routes(agent),
        ]
    )
    neutron = _neutron_app(agent)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (
            neutron is not None
            and scope["type"] == "http"
            and not path.startswith("/v1/")
            and path != "/metrics"
        ):
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
    app: ASGIApp = create_app(
        _TellsTheAgent(agent),
        trust_all(agent.config.agent.project_id),
        limits=agent.config.api,  # the same size limits as `podwire server` with this config
    )
    return app


class _TellsTheAgent:
    """The agent's backend for its /v2.0 API: a network deleted through the
    agent is also reported to it (``Agent.network_deleted``), so that what
    this host keeps for the network (its bridge) goes too."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent.backend, name)

    def delete_network(self, ctx: Any, network_id: str) -> None:
        network = self._agent.backend.get_network(ctx, network_id)
        self._agent.network_deleting(network)  # pooled ports would hold it
        self._agent.backend.delete_network(ctx, network_id)
        self._agent.network_deleted(network)
