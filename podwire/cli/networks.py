"""``podwire network ...``: networks, with their subnets made in one go."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import click

from podwire.cli.lookup import project_filter, resolve
from podwire.cli.output import attr, show, show_list
from podwire.cli.target import Target, error_exit, json_option, pass_target
from podwire.errors import InvalidInput, PodwireError

NETWORK_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": attr("id"),
    "name": attr("name"),
    "project_id": attr("project_id"),
    "network_type": attr("network_type"),
    "segmentation_id": attr("segmentation_id"),
    "physical_network": attr("physical_network"),
    "mtu": attr("mtu"),
    "shared": attr("shared"),
    "port_security_enabled": attr("port_security_enabled"),
    "datapath": attr("datapath"),
    "subnets": attr("subnets"),
    "status": attr("status"),
    "created_at": attr("created_at"),
}


@click.group()
def network() -> None:
    """Networks."""


@network.command("create")
@click.argument("name")
@click.option("--subnet", "subnets", multiple=True, help="CIDR of a subnet (repeatable, v4/v6)")
@click.option("--mtu", type=int)
@click.option("--shared", is_flag=True, help="usable by every project")
@click.option(
    "--datapath",
    type=click.Choice(["bridge", "ovs", "macvlan", "ipvlan", "vlan", "sriov", "vhostuser"]),
)
@click.option("--network-type", type=click.Choice(["local", "flat", "vlan", "vxlan", "geneve"]))
@click.option("--segmentation-id", type=int)
@click.option("--physical-network")
@click.option("--disable-port-security", is_flag=True)
@json_option
@pass_target
def network_create(
    target: Target,
    name: str,
    subnets: tuple[str, ...],
    mtu: int | None,
    shared: bool,
    datapath: str | None,
    network_type: str | None,
    segmentation_id: int | None,
    physical_network: str | None,
    disable_port_security: bool,
) -> None:
    """Create network NAME, with one subnet per --subnet."""
    from podwire.model import NetworkCreate, SubnetCreate, parse

    with error_exit():
        req = parse(
            NetworkCreate,
            {
                "name": name,
                "project_id": target.project,
                "mtu": mtu,
                "shared": shared,
                "datapath": datapath,
                "network_type": network_type,
                "segmentation_id": segmentation_id,
                "physical_network": physical_network,
                "port_security_enabled": not disable_port_security,
            },
            kind="network",
        )
        subnet_names = _subnet_names(name, subnets)
        backend, ctx = target.backend(), target.context()
        net = backend.create_network(ctx, req)
        try:
            for cidr, subnet_name in zip(subnets, subnet_names, strict=True):
                sub_req = parse(
                    SubnetCreate,
                    {
                        "network_id": net.id,
                        "cidr": cidr,
                        "name": subnet_name,
                        "project_id": target.project,
                    },
                    kind="subnet",
                )
                backend.create_subnet(ctx, sub_req)
        except BaseException:
            # All or nothing: a network without the subnets asked for is not
            # what the user wanted (deleting it also deletes its subnets).
            try:
                backend.delete_network(ctx, net.id)
            except PodwireError as undo_exc:
                click.echo(
                    f"podwire: warning: could not undo network {net.id}: {undo_exc}", err=True
                )
            raise
        show(target, backend.get_network(ctx, net.id), NETWORK_FIELDS)


def _subnet_names(network_name: str, cidrs: Sequence[str]) -> list[str]:
    names: list[str] = []
    counts: dict[int, int] = {}
    for cidr in cidrs:
        try:
            version = ipaddress.ip_network(cidr, strict=False).version
        except ValueError:
            raise InvalidInput(f"--subnet {cidr!r} is not a CIDR", field="subnet") from None
        counts[version] = counts.get(version, 0) + 1
        suffix = f"v{version}" + (f"-{counts[version]}" if counts[version] > 1 else "")
        names.append(f"{network_name}-{suffix}" if network_name else "")
    return names


@network.command("list")
@click.option("--name", "names", multiple=True)
@json_option
@pass_target
def network_list(target: Target, names: tuple[str, ...]) -> None:
    """List networks."""
    with error_exit():
        filters = project_filter(target, {"name": list(names)} if names else {})
        backend, ctx = target.backend(), target.context()
        nets = backend.list_networks(ctx, filters)
        cidrs = {s.id: s.cidr for s in backend.list_subnets(ctx)} if not target.as_json else {}
        show_list(
            target,
            nets,
            {
                "id": attr("id"),
                "name": attr("name"),
                "subnets": lambda n: [cidrs.get(s, s) for s in n.subnets],
                "type": attr("network_type"),
                "mtu": attr("mtu"),
                "datapath": attr("datapath"),
                "project": attr("project_id"),
            },
        )


@network.command("show")
@click.argument("network")
@json_option
@pass_target
def network_show(target: Target, network: str) -> None:
    """Show a network by id or name."""
    with error_exit():
        show(target, resolve(target, "network", network), NETWORK_FIELDS)


@network.command("delete")
@click.argument("networks", nargs=-1, required=True)
@json_option
@pass_target
def network_delete(target: Target, networks: tuple[str, ...]) -> None:
    """Delete networks (and their subnets) by id or name."""
    with error_exit():
        for ref in networks:
            net = resolve(target, "network", ref)
            target.backend().delete_network(target.context(), net.id)
