"""The agent API's pool routes (podwire.agent.pools, docs/pools.md).

  GET  /v1/pools                      every pool: spec, sizes, levels, ports
  POST /v1/pools/drain[?network=N]    empty the pools (of network N, a name
                                      or id); answers the ports deleted

Errors are Neutron-style bodies, like the rest of the agent's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from podwire.agent.core import Agent
from podwire.errors import NotFound, PodwireError


def routes(agent: Agent) -> list[Route]:
    async def list_pools(_request: Request) -> Response:
        return await _answer(lambda: {"pools": agent.pools()})

    async def drain(request: Request) -> Response:
        network = request.query_params.get("network")
        return await _answer(lambda: {"deleted": agent.drain_pools(network)})

    return [
        Route("/v1/pools", list_pools, methods=["GET"]),
        Route("/v1/pools/drain", drain, methods=["POST"]),
    ]


async def _answer(fn: Callable[[], Any]) -> Response:
    """Off the event loop (drain waits for deletes); errors as Neutron bodies."""
    loop = asyncio.get_running_loop()
    try:
        body = await loop.run_in_executor(None, fn)
    except PodwireError as exc:
        err_type = exc.neutron_type
        if isinstance(exc, NotFound) and exc.kind:
            err_type = exc.kind.capitalize() + "NotFound"
        error = {"NeutronError": {"type": err_type, "message": exc.message, "detail": ""}}
        return JSONResponse(error, status_code=exc.http_status)
    return JSONResponse(body)
