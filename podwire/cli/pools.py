"""``podwire pool ...``: the agent's pools of pre-created ports
(docs/pools.md), through the agent's API on its unix socket (the pools are
the agent's: --url and --state-dir do not apply)."""

from __future__ import annotations

import json
from typing import Any

import click

from podwire.cli.output import table
from podwire.cli.target import DEFAULT_AGENT_SOCKET, Target, error_exit, json_option, pass_target
from podwire.errors import InvalidInput, Unavailable


@click.group()
def pool() -> None:
    """Port pools: ports the agent creates ahead of ADDs."""


@pool.command("list")
@json_option
@pass_target
def pool_list(target: Target) -> None:
    """List the pools: network, sizes, and ports by state."""
    with error_exit():
        pools = _agent_call(target, "GET", "/v1/pools", {})["pools"]
    if target.as_json:
        click.echo(json.dumps(pools, indent=2))
        return
    columns = ("pool", "network", "min", "max", "ready", "creating", "taken", "draining", "active")
    rows = [
        (
            p["pool"],
            p["network_id"],
            p["min"],
            p["max"],
            p["levels"]["ready"],
            p["levels"]["creating"],
            p["levels"]["taken"],
            p["levels"]["draining"],
            p["active"],
        )
        for p in pools
    ]
    click.echo(table(columns, rows))


@pool.command("drain")
@click.option("--network", help="only this network's pools (name or id)")
@json_option
@pass_target
def pool_drain(target: Target, network: str | None) -> None:
    """Delete the pooled ports (ports in use go when their container is deleted)."""
    with error_exit():
        query = {"network": network} if network else {}
        deleted = _agent_call(target, "POST", "/v1/pools/drain", query)["deleted"]
    if target.as_json:
        click.echo(json.dumps({"deleted": deleted}, indent=2))
        return
    click.echo(f"deleted {len(deleted)} pooled port(s)")


def _agent_call(target: Target, method: str, path: str, query: dict[str, str]) -> Any:
    import httpx

    from podwire.backends.neutron.errors import error_from_answer

    if target.url or target.state_dir:
        raise InvalidInput(
            "pools are the agent's: use --agent-socket (or its default), not --url or --state-dir"
        )
    socket_path = target.agent_socket or DEFAULT_AGENT_SOCKET
    transport = httpx.HTTPTransport(uds=socket_path)
    try:
        with httpx.Client(transport=transport, base_url="http://podwire", timeout=300) as client:
            response = client.request(method, path, params=query)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the agent at {socket_path}: {exc}") from None
    if response.status_code >= 400:
        raise error_from_answer(response.status_code, response.text, str(response.request.url))
    return response.json()
