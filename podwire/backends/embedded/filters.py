"""Neutron list filters as SQL: ``{field: [value, ...]}``, values of one
field OR-ed, fields AND-ed. Values arrive as strings (query parameters) or
as typed values; each is converted to the column's type, and a value that
cannot be (``mtu=abc``) or a field that does not exist is InvalidInput."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Integer, Table, select

from podwire.backends.filtering import (
    as_bool,
    bad_value,
    model_name,
    normalized_cidr,
    normalized_ip,
    not_filterable,
    values_of,
)

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
        "fixed_ips.ip_address": _fixed_ips("ip_address", normalized_ip),
        "fixed_ips.subnet_id": _fixed_ips("subnet_id", str),
    },
    "subnets": {
        "cidr": lambda values: schema.subnets.c.cidr.in_([normalized_cidr(v) for v in values]),
        "gateway_ip": lambda values: schema.subnets.c.gateway_ip.in_(
            [normalized_ip(v) for v in values]
        ),
    },
}

# The model's dotted binding fields are flat columns.
_COLUMNS = {
    "binding.host_id": "binding_host_id",
    "binding.vif_type": "binding_vif_type",
}


def where(table: Table, kind: str, filters: Mapping[str, Sequence[Any]] | None) -> list[Clause]:
    clauses: list[Clause] = []
    for field, raw_values in (filters or {}).items():
        values = values_of(raw_values)
        special = _SPECIAL.get(table.name, {}).get(field)
        if special is not None:
            clauses.append(special(values))
            continue
        name = model_name(field)
        name = _COLUMNS.get(name, name)
        if name in _NOT_FILTERABLE or name not in table.c:
            raise not_filterable(kind, field)
        column = table.c[name]
        try:
            if isinstance(column.type, Boolean):
                typed: list[Any] = [as_bool(v) for v in values]
            elif isinstance(column.type, Integer):
                typed = [int(v) for v in values]
            else:
                typed = [str(v) for v in values]
        except ValueError as exc:
            raise bad_value(kind, field, exc) from None
        clauses.append(column.in_(typed))
    return clauses
