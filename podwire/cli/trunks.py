"""``podwire trunk ...``: a parent port carrying sub-ports on VLANs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from podwire.cli.lookup import parse_kv, project_filter, resolve
from podwire.cli.output import attr, show, show_list
from podwire.cli.target import Target, error_exit, json_option, pass_target
from podwire.errors import InvalidInput

TRUNK_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": attr("id"),
    "name": attr("name"),
    "project_id": attr("project_id"),
    "port_id": attr("port_id"),
    "status": attr("status"),
    "sub_ports": lambda t: [
        f"{s.port_id} {s.segmentation_type} {s.segmentation_id}" for s in t.sub_ports
    ],
    "created_at": attr("created_at"),
}


@click.group()
def trunk() -> None:
    """Trunks: a parent port carrying sub-ports on VLANs."""


def _subport(target: Target, text: str) -> dict[str, Any]:
    kv = parse_kv(text, "--subport", ("port", "segmentation-id", "segmentation-type"))
    if "port" not in kv or "segmentation-id" not in kv:
        raise InvalidInput(
            f"--subport {text!r} needs port=PORT,segmentation-id=VLAN", field="sub_ports"
        )
    return {
        "port_id": resolve(target, "port", kv["port"]).id,
        "segmentation_type": kv.get("segmentation-type", "vlan"),
        "segmentation_id": kv["segmentation-id"],
    }


@trunk.command("create")
@click.argument("name")
@click.option("--parent-port", required=True, help="parent port id or name")
@click.option(
    "--subport", "subports", multiple=True, help="port=PORT,segmentation-id=VLAN (repeatable)"
)
@json_option
@pass_target
def trunk_create(target: Target, name: str, parent_port: str, subports: tuple[str, ...]) -> None:
    """Create trunk NAME on a parent port."""
    from podwire.model import TrunkCreate, parse

    with error_exit():
        data = {
            "name": name,
            "port_id": resolve(target, "port", parent_port).id,
            "project_id": target.project,
            "sub_ports": [_subport(target, s) for s in subports],
        }
        req = parse(TrunkCreate, data, kind="trunk")
        show(target, target.backend().create_trunk(target.context(), req), TRUNK_FIELDS)


@trunk.command("list")
@json_option
@pass_target
def trunk_list(target: Target) -> None:
    """List trunks."""
    with error_exit():
        found = target.backend().list_trunks(target.context(), project_filter(target, {}))
        show_list(
            target,
            found,
            {
                "id": attr("id"),
                "name": attr("name"),
                "port_id": attr("port_id"),
                "sub_ports": lambda t: [f"{s.segmentation_id}: {s.port_id}" for s in t.sub_ports],
                "status": attr("status"),
            },
        )


@trunk.command("show")
@click.argument("trunk")
@json_option
@pass_target
def trunk_show(target: Target, trunk: str) -> None:
    """Show a trunk by id or name."""
    with error_exit():
        show(target, resolve(target, "trunk", trunk), TRUNK_FIELDS)


@trunk.command("delete")
@click.argument("trunks", nargs=-1, required=True)
@json_option
@pass_target
def trunk_delete(target: Target, trunks: tuple[str, ...]) -> None:
    """Delete trunks by id or name (the ports stay)."""
    with error_exit():
        for ref in trunks:
            found = resolve(target, "trunk", ref)
            target.backend().delete_trunk(target.context(), found.id)


@trunk.command("add-subport")
@click.argument("trunk")
@click.option("--port", "port_ref", help="sub-port id or name")
@click.option("--segmentation-id", type=int, help="VLAN id 1-4094")
@click.option("--subport", "subports", multiple=True, help="port=PORT,segmentation-id=VLAN")
@json_option
@pass_target
def trunk_add_subport(
    target: Target,
    trunk: str,
    port_ref: str | None,
    segmentation_id: int | None,
    subports: tuple[str, ...],
) -> None:
    """Add sub-ports to a trunk."""
    from podwire.model import SubPort, parse

    with error_exit():
        items = [_subport(target, s) for s in subports]
        if port_ref is not None or segmentation_id is not None:
            if port_ref is None or segmentation_id is None:
                raise InvalidInput("--port and --segmentation-id go together", field="sub_ports")
            items.append(
                {
                    "port_id": resolve(target, "port", port_ref).id,
                    "segmentation_id": segmentation_id,
                }
            )
        if not items:
            raise InvalidInput("name a sub-port: --port P --segmentation-id N", field="sub_ports")
        sub_ports = [parse(SubPort, i, kind="trunk") for i in items]
        found = resolve(target, "trunk", trunk)
        result = target.backend().add_subports(target.context(), found.id, sub_ports)
        show(target, result, TRUNK_FIELDS)


@trunk.command("remove-subport")
@click.argument("trunk")
@click.option("--port", "ports", multiple=True, required=True, help="sub-port id or name")
@json_option
@pass_target
def trunk_remove_subport(target: Target, trunk: str, ports: tuple[str, ...]) -> None:
    """Remove sub-ports from a trunk (the ports stay)."""
    with error_exit():
        found = resolve(target, "trunk", trunk)
        port_ids = [resolve(target, "port", p).id for p in ports]
        result = target.backend().remove_subports(target.context(), found.id, port_ids)
        show(target, result, TRUNK_FIELDS)
