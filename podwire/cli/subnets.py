"""``podwire subnet ...``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from podwire.cli.lookup import parse_kv, project_filter, resolve
from podwire.cli.output import attr, show, show_list
from podwire.cli.target import Target, error_exit, json_option, pass_target

SUBNET_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": attr("id"),
    "name": attr("name"),
    "project_id": attr("project_id"),
    "network_id": attr("network_id"),
    "ip_version": attr("ip_version"),
    "cidr": attr("cidr"),
    "gateway_ip": attr("gateway_ip"),
    "allocation_pools": lambda s: [f"{p.start}-{p.end}" for p in s.allocation_pools],
    "dns_nameservers": attr("dns_nameservers"),
    "host_routes": lambda s: [f"{r.destination} via {r.nexthop}" for r in s.host_routes],
    "created_at": attr("created_at"),
}


@click.group()
def subnet() -> None:
    """Subnets."""


@subnet.command("create")
@click.argument("cidr")
@click.option("--network", required=True, help="network id or name")
@click.option("--name", default="")
@click.option("--gateway", help="gateway IP, or 'none' (default: the first address)")
@click.option("--allocation-pool", "pools", multiple=True, help="start=IP,end=IP (repeatable)")
@click.option("--dns-nameserver", "dns", multiple=True)
@json_option
@pass_target
def subnet_create(
    target: Target,
    cidr: str,
    network: str,
    name: str,
    gateway: str | None,
    pools: tuple[str, ...],
    dns: tuple[str, ...],
) -> None:
    """Create a subnet CIDR on a network."""
    from podwire.model import SubnetCreate, parse

    with error_exit():
        net = resolve(target, "network", network)
        data: dict[str, Any] = {
            "network_id": net.id,
            "cidr": cidr,
            "name": name,
            "project_id": target.project,
            "dns_nameservers": list(dns),
        }
        if gateway is not None:
            data["gateway_ip"] = None if gateway.lower() == "none" else gateway
        if pools:
            data["allocation_pools"] = [
                parse_kv(p, "--allocation-pool", ("start", "end")) for p in pools
            ]
        req = parse(SubnetCreate, data, kind="subnet")
        sub = target.backend().create_subnet(target.context(), req)
        show(target, sub, SUBNET_FIELDS)


@subnet.command("list")
@click.option("--network", help="network id or name")
@json_option
@pass_target
def subnet_list(target: Target, network: str | None) -> None:
    """List subnets."""
    with error_exit():
        filters: dict[str, list[str]] = {}
        if network:
            filters["network_id"] = [resolve(target, "network", network).id]
        subs = target.backend().list_subnets(target.context(), project_filter(target, filters))
        show_list(
            target,
            subs,
            {
                "id": attr("id"),
                "name": attr("name"),
                "cidr": attr("cidr"),
                "gateway": attr("gateway_ip"),
                "network_id": attr("network_id"),
            },
        )


@subnet.command("show")
@click.argument("subnet")
@json_option
@pass_target
def subnet_show(target: Target, subnet: str) -> None:
    """Show a subnet by id or name."""
    with error_exit():
        show(target, resolve(target, "subnet", subnet), SUBNET_FIELDS)


@subnet.command("delete")
@click.argument("subnets", nargs=-1, required=True)
@json_option
@pass_target
def subnet_delete(target: Target, subnets: tuple[str, ...]) -> None:
    """Delete subnets by id or name."""
    with error_exit():
        for ref in subnets:
            sub = resolve(target, "subnet", ref)
            target.backend().delete_subnet(target.context(), sub.id)
