"""Northbound rows to podwire objects (Network, Subnet, Port, Trunk), through
codec.py's mapping of external_ids."""

from __future__ import annotations

import json

from podwire.backends.ovn import codec, ipam, rows
from podwire.backends.ovn.tables import Row, addresses_of, name_of, optional, xids
from podwire.model import FixedIp, Network, Port, Subnet, SubPort, Trunk


def to_network(ls: Row, subnet_ids: list[str]) -> Network:
    return codec.decode(Network, xids(ls), subnets=subnet_ids)


def to_subnet(row: Row) -> Subnet:
    subnet: Subnet = rows.derived(
        row, "external_ids", "subnet", lambda ids: codec.decode(Subnet, ids, cidr=row.cidr)
    )
    return subnet


def to_port(lsp: Row, subnets: list[Subnet]) -> Port:
    mac, ips = addresses_of(lsp)
    fixed_ips = []
    for ip in ips:
        subnet = ipam.subnet_of(ip, subnets)
        if subnet is not None:
            fixed_ips.append(FixedIp(subnet_id=subnet.id, ip_address=ip))
    ids = xids(lsp)
    status = ids.get(codec.PREFIX + "status", "DOWN")
    if rows.col(lsp, "up") == [True]:
        status = "ACTIVE"
    tag = optional(rows.col(lsp, "tag")) or optional(rows.col(lsp, "tag_request"))
    return codec.decode(
        Port,
        ids,
        mac_address=mac,
        fixed_ips=fixed_ips,
        status=status,
        admin_state_up=optional(rows.col(lsp, "enabled")) is not False,
        port_security_enabled=bool(rows.col(lsp, "port_security")),
        parent_port_id=optional(rows.col(lsp, "parent_name")),
        segmentation_id=tag,
    )


def to_trunk(parent: Row, ports: list[Row]) -> Trunk:
    data = json.loads(xids(parent)[codec.TRUNK_KEY])
    parent_name = name_of(parent)
    subs = [
        SubPort(
            port_id=name_of(p),
            segmentation_id=optional(rows.col(p, "tag_request")) or optional(rows.col(p, "tag")),
        )
        for p in ports
        if optional(rows.col(p, "parent_name")) == parent_name
        and xids(p).get(codec.TRUNK_ID_KEY) == data["id"]
    ]
    subs.sort(key=lambda s: s.segmentation_id)
    return Trunk.model_validate({**data, "port_id": parent_name, "sub_ports": subs})


def trunk_json(trunk: Trunk) -> str:
    data = trunk.model_dump(mode="json", exclude={"sub_ports", "port_id"})
    return json.dumps(data, sort_keys=True)
