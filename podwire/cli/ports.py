"""``podwire port ...``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from podwire.cli.lookup import parse_kv, project_filter, resolve
from podwire.cli.output import attr, fixed_ips_of, pairs_of, show, show_list
from podwire.cli.target import Target, error_exit, json_option, pass_target
from podwire.errors import InvalidInput

PORT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": attr("id"),
    "name": attr("name"),
    "project_id": attr("project_id"),
    "network_id": attr("network_id"),
    "mac_address": attr("mac_address"),
    "fixed_ips": lambda p: [f"{f.ip_address} (subnet {f.subnet_id})" for f in p.fixed_ips],
    "allowed_address_pairs": pairs_of,
    "device_id": attr("device_id"),
    "device_owner": attr("device_owner"),
    "status": attr("status"),
    "port_security_enabled": attr("port_security_enabled"),
    "vnic_type": attr("vnic_type"),
    "binding:host_id": lambda p: p.binding.host_id,
    "binding:vif_type": lambda p: p.binding.vif_type,
    "binding:profile": lambda p: p.binding.profile,
    "binding:vif_details": lambda p: p.binding.vif_details,
    "parent_port_id": attr("parent_port_id"),
    "segmentation_id": attr("segmentation_id"),
    "created_at": attr("created_at"),
}


@click.group()
def port() -> None:
    """Ports."""


def _fixed_ip_request(target: Target, text: str) -> dict[str, str]:
    """``IP``, or ``subnet=NAME_OR_ID[,ip-address=IP]``."""
    if "=" not in text:
        return {"ip_address": text}
    kv = parse_kv(text, "--fixed-ip", ("subnet", "ip-address"))
    out: dict[str, str] = {}
    if "subnet" in kv:
        out["subnet_id"] = resolve(target, "subnet", kv["subnet"]).id
    if "ip-address" in kv:
        out["ip_address"] = kv["ip-address"]
    return out


def _address_pair(text: str) -> dict[str, str]:
    """``IP[/LEN]``, or ``ip-address=IP[/LEN][,mac-address=MAC]``."""
    if "=" not in text:
        return {"ip_address": text}
    kv = parse_kv(text, "--allowed-address-pair", ("ip-address", "mac-address"))
    if "ip-address" not in kv:
        raise InvalidInput(f"--allowed-address-pair {text!r} needs ip-address=", field="ip_address")
    out = {"ip_address": kv["ip-address"]}
    if "mac-address" in kv:
        out["mac_address"] = kv["mac-address"]
    return out


@port.command("create")
@click.option("--network", required=True, help="network id or name")
@click.option("--name", default="")
@click.option(
    "--fixed-ip",
    "fixed_ips",
    multiple=True,
    help="IP, or subnet=SUBNET[,ip-address=IP] (repeatable)",
)
@click.option("--no-fixed-ip", is_flag=True, help="no address at all")
@click.option("--mac", "mac_address", help="MAC address (default: allocated)")
@click.option(
    "--allowed-address-pair",
    "pairs",
    multiple=True,
    help="IP[/LEN] or ip-address=IP[/LEN],mac-address=MAC (repeatable)",
)
@click.option("--device-id", default="")
@click.option("--device-owner", default="")
@click.option(
    "--vnic-type",
    type=click.Choice(
        ["normal", "direct", "direct-physical", "macvtap", "baremetal", "virtio-forwarder", "vdpa"]
    ),
    default="normal",
)
@click.option("--host", "host_id", help="binding:host_id")
@click.option("--disable-port-security", is_flag=True)
@json_option
@pass_target
def port_create(
    target: Target,
    network: str,
    name: str,
    fixed_ips: tuple[str, ...],
    no_fixed_ip: bool,
    mac_address: str | None,
    pairs: tuple[str, ...],
    device_id: str,
    device_owner: str,
    vnic_type: str,
    host_id: str | None,
    disable_port_security: bool,
) -> None:
    """Create a port on a network."""
    from podwire.model import PortCreate, parse

    with error_exit():
        if no_fixed_ip and fixed_ips:
            raise InvalidInput("--no-fixed-ip and --fixed-ip exclude each other", field="fixed_ips")
        net = resolve(target, "network", network)
        data: dict[str, Any] = {
            "network_id": net.id,
            "name": name,
            "project_id": target.project,
            "mac_address": mac_address,
            "device_id": device_id,
            "device_owner": device_owner,
            "vnic_type": vnic_type,
            "allowed_address_pairs": [_address_pair(p) for p in pairs],
        }
        if fixed_ips or no_fixed_ip:
            data["fixed_ips"] = [_fixed_ip_request(target, f) for f in fixed_ips]
        if disable_port_security:
            data["port_security_enabled"] = False
        if host_id is not None:
            data["binding"] = {"host_id": host_id}
        req = parse(PortCreate, data, kind="port")
        show(target, target.backend().create_port(target.context(), req), PORT_FIELDS)


@port.command("list")
@click.option("--network", help="network id or name")
@click.option("--device-id", "device_ids", multiple=True)
@click.option("--ip-address", "ips", multiple=True, help="ports holding this fixed IP")
@click.option("--host", "hosts", multiple=True, help="binding:host_id")
@json_option
@pass_target
def port_list(
    target: Target,
    network: str | None,
    device_ids: tuple[str, ...],
    ips: tuple[str, ...],
    hosts: tuple[str, ...],
) -> None:
    """List ports."""
    with error_exit():
        filters: dict[str, list[str]] = {}
        if network:
            filters["network_id"] = [resolve(target, "network", network).id]
        if device_ids:
            filters["device_id"] = list(device_ids)
        if ips:
            filters["fixed_ips.ip_address"] = list(ips)
        if hosts:
            filters["binding.host_id"] = list(hosts)
        found = target.backend().list_ports(target.context(), project_filter(target, filters))
        show_list(
            target,
            found,
            {
                "id": attr("id"),
                "name": attr("name"),
                "mac_address": attr("mac_address"),
                "fixed_ips": fixed_ips_of,
                "device_id": attr("device_id"),
                "status": attr("status"),
            },
        )


@port.command("show")
@click.argument("port")
@json_option
@pass_target
def port_show(target: Target, port: str) -> None:
    """Show a port by id or name."""
    with error_exit():
        show(target, resolve(target, "port", port), PORT_FIELDS)


@port.command("delete")
@click.argument("ports", nargs=-1, required=True)
@json_option
@pass_target
def port_delete(target: Target, ports: tuple[str, ...]) -> None:
    """Delete ports by id or name."""
    with error_exit():
        for ref in ports:
            found = resolve(target, "port", ref)
            target.backend().delete_port(target.context(), found.id)
