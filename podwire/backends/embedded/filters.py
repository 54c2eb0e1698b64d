"""Neutron list filters as SQL: ``{field: [value, ...]}``, values of one
field OR-ed, fields AND-ed. Values arrive as strings (query parameters) or
as typed values; each is converted to the column's type, and a value that
cannot be (``mtu=abc``) or a field that does not exist is InvalidInput."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Integer, Table, select

from podwire.errors import InvalidInput

from . import schema

Clause = ColumnElement[bool]
# A special filter: the values to one WHERE clause.
Special = Callable[[list[Any]], Clause]

# Internal or structured columns that are no filter.
_NOT_FILTERABLE = {
    "created_at",
    "updated_at",
    "ipam_last",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "security_groups",
    "allowed_address_pairs",
    "binding_profile",
    "binding_vif_details",
}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _normalized_ip(value: Any) -> str:
    text = str(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text  # matches nothing; not worth an error


def _normalized_cidr(value: Any) -> str:
    text = str(value)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _fixed_ips(column_name: str, convert: Callable[[Any], str]) -> Special:
    column = schema.allocations.c[column_name]

    def clause(values: list[Any]) -> Clause:
        matching = select(schema.allocations.c.port_id).where(
            column.in_([convert(v) for v in values])
        )
        return schema.ports.c.id.in_(matching)

    return clause


_SPECIAL: dict[str, dict[str, Special]] = {
    "ports": {
        "fixed_ips.ip_address": _fixed_ips("ip_address", _normalized_ip),
        "fixed_ips.subnet_id": _fixed_ips("subnet_id", str),
    },
    "subnets": {
        "cidr": lambda values: schema.subnets.c.cidr.in_([_normalized_cidr(v) for v in values]),
        "gateway_ip": lambda values: schema.subnets.c.gateway_ip.in_(
            [_normalized_ip(v) for v in values]
        ),
    },
}

# Neutron's spelling and the model's dotted one both name binding columns.
_ALIASES = {
    "binding:host_id": "binding_host_id",
    "binding.host_id": "binding_host_id",
    "binding:vif_type": "binding_vif_type",
    "binding.vif_type": "binding_vif_type",
    "binding:vnic_type": "vnic_type",
    "provider:network_type": "network_type",
    "provider:segmentation_id": "segmentation_id",
    "provider:physical_network": "physical_network",
    "tenant_id": "project_id",
}


def where(table: Table, kind: str, filters: Mapping[str, Sequence[Any]] | None) -> list[Clause]:
    clauses: list[Clause] = []
    for field, raw_values in (filters or {}).items():
        values = [raw_values] if isinstance(raw_values, str | int | bool) else list(raw_values)
        special = _SPECIAL.get(table.name, {}).get(field)
        if special is not None:
            clauses.append(special(values))
            continue
        name = _ALIASES.get(field, field)
        if name in _NOT_FILTERABLE or name not in table.c:
            raise InvalidInput(f"{kind}s cannot be filtered by {field!r}", kind=kind, field=field)
        column = table.c[name]
        try:
            if isinstance(column.type, Boolean):
                typed: list[Any] = [_bool(v) for v in values]
            elif isinstance(column.type, Integer):
                typed = [int(v) for v in values]
            else:
                typed = [str(v) for v in values]
        except ValueError as exc:
            raise InvalidInput(f"filter {field}: {exc}", kind=kind, field=field) from None
        clauses.append(column.in_(typed))
    return clauses
