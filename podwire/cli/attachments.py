"""``podwire attachment ...``: what the agent plugged into which container,
read from the agent's own API on its unix socket (the records live there,
not in a backend: --url and --state-dir do not apply)."""

from __future__ import annotations

import json
from typing import Any

import click

from podwire.agent.types import LABEL_NETWORK
from podwire.cli.output import table
from podwire.cli.target import DEFAULT_AGENT_SOCKET, Target, error_exit, json_option, pass_target
from podwire.errors import InvalidInput, Unavailable


@click.group()
def attachment() -> None:
    """Attachments: the agent's record of each container interface."""


@attachment.command("list")
@click.option("--container", "container_id", help="only this container's attachments")
@json_option
@pass_target
def attachment_list(target: Target, container_id: str | None) -> None:
    """List the agent's attachments (every container, or one)."""
    with error_exit():
        query = {"container_id": container_id} if container_id else {}
        records = _agent_get(target, "/v1/attachments", query)["attachments"]
    if target.as_json:
        click.echo(json.dumps(records, indent=2))
        return
    columns = ("container", "interface", "network", "addresses", "default", "state", "port")
    rows = [
        (
            r["container_id"],
            r["ifname"],
            r["labels"].get(LABEL_NETWORK) or r["network_id"],
            list((r.get("vif") or {}).get("addresses") or []),
            r.get("default_route", False),
            r["state"],
            r["port_id"],
        )
        for r in records
    ]
    click.echo(table(columns, rows))


@attachment.command("show")
@click.argument("container_id")
@json_option
@pass_target
def attachment_show(target: Target, container_id: str) -> None:
    """The network-status document of CONTAINER_ID (Multus's shape)."""
    with error_exit():
        status = _agent_get(target, f"/v1/containers/{container_id}/network-status", {})
    if target.as_json:
        click.echo(json.dumps(status, indent=2))
        return
    columns = ("interface", "name", "ips", "mac", "default", "dns", "device-info")
    rows = [
        (
            e["interface"],
            e["name"],
            e["ips"],
            e["mac"],
            e["default"],
            (e.get("dns") or {}).get("nameservers") or [],
            e.get("device-info", {}).get("type"),
        )
        for e in status
    ]
    click.echo(table(columns, rows))


def _agent_get(target: Target, path: str, query: dict[str, str]) -> Any:
    """GET from the agent's socket; its Neutron-style errors as podwire's."""
    import httpx

    from podwire.backends.neutron.errors import error_from_answer

    if target.url or target.state_dir:
        raise InvalidInput(
            "attachments are the agent's: use --agent-socket (or its default), "
            "not --url or --state-dir"
        )
    socket_path = target.agent_socket or DEFAULT_AGENT_SOCKET
    transport = httpx.HTTPTransport(uds=socket_path)
    try:
        with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as client:
            response = client.get(path, params=query)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the agent at {socket_path}: {exc}") from None
    if response.status_code >= 400:
        raise error_from_answer(response.status_code, response.text, str(response.request.url))
    return response.json()
