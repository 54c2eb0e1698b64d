"""The agent API's attachment routes: what is plugged into which container.

  GET /v1/attachments                            records; filters: container_id,
                                                 frontend, network, ifname, state
  GET /v1/attachments/{container_id}             one container's records
  GET /v1/containers/{container_id}/network-status
                                                 Multus's network-status document

Errors are Neutron-style bodies, like the rest of the agent's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from podwire.agent.core import Agent
from podwire.agent.types import Attachment
from podwire.errors import InvalidInput, NotFound, PodwireError

T = TypeVar("T")

FILTERS = ("container_id", "frontend", "network", "ifname", "state")
STATES = ("pending", "ready", "detaching")


def routes(agent: Agent) -> list[Route]:
    async def list_all(request: Request) -> Response:
        return await _answer(lambda: _filtered(agent, dict(request.query_params)))

    async def of_container(request: Request) -> Response:
        container_id = request.path_params["container_id"]
        return await _answer(lambda: _of_container(agent, container_id))

    async def network_status(request: Request) -> Response:
        container_id = request.path_params["container_id"]
        return await _answer(lambda: _network_status(agent, container_id))

    return [
        Route("/v1/attachments", list_all, methods=["GET"]),
        Route("/v1/attachments/{container_id}", of_container, methods=["GET"]),
        Route("/v1/containers/{container_id}/network-status", network_status, methods=["GET"]),
    ]


def _filtered(agent: Agent, query: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(FILTERS))
    if unknown:
        raise InvalidInput(
            f"unknown filter {unknown[0]!r}; filters are {', '.join(FILTERS)}", field=unknown[0]
        )
    state = query.get("state")
    if state is not None and state not in STATES:
        raise InvalidInput(f"state {state!r}: expected one of {', '.join(STATES)}", field="state")
    records = agent.list_attachments(query.get("container_id"), query.get("frontend"))
    network, ifname = query.get("network"), query.get("ifname")
    kept = [
        r
        for r in records
        if (network is None or _on_network(r, network))
        and (ifname is None or r.ifname == ifname)
        and (state is None or r.state == state)
    ]
    return {"attachments": [r.model_dump(mode="json") for r in kept]}


def _on_network(record: Attachment, network: str) -> bool:
    """By id, or by the name (or id) the attachment was requested with."""
    return network in (record.network_id, record.network_ref)


def _of_container(agent: Agent, container_id: str) -> dict[str, Any]:
    records = agent.list_attachments(container_id)
    if not records:
        raise NotFound(f"container {container_id} has no attachments", kind="attachment")
    return {"attachments": [r.model_dump(mode="json") for r in records]}


def _network_status(agent: Agent, container_id: str) -> list[dict[str, Any]]:
    status = agent.network_status(container_id)
    if not status:
        raise NotFound(f"container {container_id} has no attachments", kind="attachment")
    return status


async def _answer(fn: Callable[[], Any]) -> Response:
    """Reads the store off the event loop; podwire errors as Neutron bodies."""
    loop = asyncio.get_running_loop()
    try:
        body = await loop.run_in_executor(None, fn)
    except PodwireError as exc:
        return _error(exc)
    return JSONResponse(body)


def _error(exc: PodwireError) -> Response:
    err_type = exc.neutron_type
    if isinstance(exc, NotFound) and exc.kind:
        err_type = exc.kind.capitalize() + "NotFound"
    body = {"NeutronError": {"type": err_type, "message": exc.message, "detail": ""}}
    return JSONResponse(body, status_code=exc.http_status)
