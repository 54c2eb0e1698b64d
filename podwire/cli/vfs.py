"""``podwire vf list``: the SR-IOV VFs of this host's pools, with the
attachment holding each, from the agent's inventory (its one authority over
VF leases; the agent's socket only)."""

from __future__ import annotations

import json

import click

from podwire.cli.attachments import _agent_get
from podwire.cli.output import table
from podwire.cli.target import Target, error_exit, json_option, pass_target


@click.group()
def vf() -> None:
    """SR-IOV virtual functions."""


@vf.command("list")
@click.option("--physical-network", help="only this physical network's pool")
@json_option
@pass_target
def vf_list(target: Target, physical_network: str | None) -> None:
    """List the VFs of the configured physical networks and their leases."""
    with error_exit():
        vfs = _agent_get(target, "/v1/inventory", {}).get("sriov", [])
    if physical_network:
        vfs = [v for v in vfs if v["physical_network"] == physical_network]
    if target.as_json:
        click.echo(json.dumps(vfs, indent=2))
        return
    columns = (
        "physical network",
        "pf",
        "vf",
        "pci address",
        "numa",
        "driver",
        "netdev",
        "state",
        "container",
    )
    rows = [
        (
            v["physical_network"],
            v["pf"],
            v["vf_index"],
            v["pci_address"],
            "" if v["numa_node"] is None else v["numa_node"],
            v["driver"] or "",
            v["netdev"] or "",
            "leased" if v["attachment_id"] else v["state"],
            v["container_id"] or "",
        )
        for v in vfs
    ]
    click.echo(table(columns, rows))
