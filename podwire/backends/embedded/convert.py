"""Rows to model objects. Rows come from our own tables, written from
validated models, so the objects are built without validating them again:
listing 10,000 ports must stay well under 0.5 s, and pydantic's
``model_construct`` costs about three times what ``_build`` does. The
contract tests check that every object built here equals its validated twin
(``Model.model_validate(obj.model_dump()) == obj``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Row

from podwire.model import (
    AllocationPool,
    AllowedAddressPair,
    FixedIp,
    HostRoute,
    Network,
    Port,
    PortBinding,
    Subnet,
    SubPort,
    Trunk,
)

from .schema import ports

_M = TypeVar("_M", bound=BaseModel)


def _build(cls: type[_M], values: dict[str, Any]) -> _M:
    """What ``model_construct`` does, minus its per-field loops: ``values``
    should hold every field of ``cls``."""
    if len(values) != len(cls.__pydantic_fields__):
        return cls.model_construct(**values)  # a field added to the model later: defaults
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def network(row: Row[Any], subnet_ids: list[str]) -> Network:
    return _build(
        Network,
        dict(
            id=row.id,
            name=row.name,
            project_id=row.project_id,
            description=row.description,
            mtu=row.mtu,
            network_type=row.network_type,
            segmentation_id=row.segmentation_id,
            physical_network=row.physical_network,
            port_security_enabled=row.port_security_enabled,
            shared=row.shared,
            admin_state_up=row.admin_state_up,
            status=row.status,
            datapath=row.datapath,
            subnets=subnet_ids,
            revision_number=row.revision_number,
            created_at=row.created_at,
            updated_at=row.updated_at,
        ),
    )


def subnet(row: Row[Any]) -> Subnet:
    return _build(
        Subnet,
        dict(
            id=row.id,
            name=row.name,
            project_id=row.project_id,
            network_id=row.network_id,
            description=row.description,
            ip_version=row.ip_version,
            cidr=row.cidr,
            gateway_ip=row.gateway_ip,
            allocation_pools=[_build(AllocationPool, dict(p)) for p in row.allocation_pools],
            dns_nameservers=list(row.dns_nameservers),
            host_routes=[_build(HostRoute, dict(r)) for r in row.host_routes],
            enable_dhcp=row.enable_dhcp,
            revision_number=row.revision_number,
            created_at=row.created_at,
            updated_at=row.updated_at,
        ),
    )


_FIXED_IP_FIELDS = frozenset(("subnet_id", "ip_address"))
_new = object.__new__
_set = object.__setattr__


def fixed_ip(subnet_id: str, ip_address: str) -> FixedIp:
    # _build, unrolled: this runs twice per port when 10,000 are listed
    obj = _new(FixedIp)
    _set(obj, "__dict__", {"subnet_id": subnet_id, "ip_address": ip_address})
    _set(obj, "__pydantic_fields_set__", set(_FIXED_IP_FIELDS))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


#: the order of the columns that ``port`` receives
PORT_FIELDS = [*(column.name for column in ports.c), "parent_port_id", "sub_vlan"]


def port(values: dict[str, Any], fixed_ips: list[FixedIp]) -> Port:
    """``values``: a port row as a dict (PORT_FIELDS; parent_port_id and
    sub_vlan are None unless the port is a trunk's sub-port). It becomes the
    object's own dict: pass a fresh one."""
    values["fixed_ips"] = fixed_ips
    values["segmentation_id"] = values.pop("sub_vlan")
    values["binding"] = _build(
        PortBinding,
        {
            "host_id": values.pop("binding_host_id"),
            "profile": values.pop("binding_profile"),
            "vif_type": values.pop("binding_vif_type"),
            "vif_details": values.pop("binding_vif_details"),
        },
    )
    pairs = values["allowed_address_pairs"]
    if pairs:
        values["allowed_address_pairs"] = [_build(AllowedAddressPair, p) for p in pairs]
    return _build(Port, values)


def subport(row: Row[Any]) -> SubPort:
    return _build(
        SubPort,
        dict(
            port_id=row.port_id,
            segmentation_type=row.segmentation_type,
            segmentation_id=row.segmentation_id,
        ),
    )


def trunk(row: Row[Any], sub_ports: Sequence[SubPort]) -> Trunk:
    return _build(
        Trunk,
        dict(
            id=row.id,
            name=row.name,
            project_id=row.project_id,
            description=row.description,
            port_id=row.port_id,
            status=row.status,
            admin_state_up=row.admin_state_up,
            sub_ports=list(sub_ports),
            revision_number=row.revision_number,
            created_at=row.created_at,
            updated_at=row.updated_at,
        ),
    )
