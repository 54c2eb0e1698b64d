"""Neutron list filters applied to model objects read from the northbound
database: ``{field: [value, ...]}``, values of one field OR-ed, fields AND-ed,
compared after converting each value to the field's type. The same fields,
aliases and refusals as the embedded backend, so callers see one behaviour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from podwire.backends.filtering import (
    as_bool,
    bad_value,
    model_name,
    normalized_cidr,
    normalized_ip,
    not_filterable,
    split_tag_filters,
    tags_match,
    values_of,
)

_NOT_FILTERABLE = {
    "created_at",
    "updated_at",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "security_groups",
    "allowed_address_pairs",
    "fixed_ips",
    "sub_ports",
    "subnets",
    "binding",
    "tags",
}


def _field_values(obj: BaseModel, name: str) -> list[Any] | None:
    """The object's values for a filter name; None when it is no field."""
    if name in ("fixed_ips.ip_address", "fixed_ips.subnet_id"):
        if not hasattr(obj, "fixed_ips"):
            return None
        attr = name.split(".", 1)[1]
        return [getattr(f, attr) for f in obj.fixed_ips]
    if name in ("binding.host_id", "binding.vif_type"):
        binding = getattr(obj, "binding", None)
        return None if binding is None else [getattr(binding, name.split(".", 1)[1])]
    if name in _NOT_FILTERABLE or name not in type(obj).model_fields:
        return None
    return [getattr(obj, name)]


def _convert(sample: Any, field: str, raw: Any) -> Any:
    if isinstance(sample, bool):
        return as_bool(raw)
    if isinstance(sample, int):
        return int(raw)
    if field.endswith("ip_address") or field == "gateway_ip":
        return normalized_ip(raw)
    if field == "cidr":
        return normalized_cidr(raw)
    return str(raw)


def matches(obj: BaseModel, kind: str, filters: Mapping[str, Sequence[Any]] | None) -> bool:
    filters, every, any_of = split_tag_filters(filters)
    if every or any_of:
        if "tags" not in type(obj).model_fields:
            raise not_filterable(kind, "tags")
        if not tags_match(obj.model_dump(include={"tags"})["tags"], every, any_of):
            return False
    for field, raw_values in filters.items():
        values = values_of(raw_values)
        name = model_name(field)
        have = _field_values(obj, name)
        if have is None:
            raise not_filterable(kind, field)
        annotation = type(obj).model_fields.get(name)
        ok = False
        for current in have:
            sample = current
            if current is None and annotation is not None:
                # An unset optional int (segmentation_id) still compares as int.
                sample = 0 if "int" in str(annotation.annotation) else ""
            try:
                wanted = [_convert(sample, name, v) for v in values]
            except ValueError as exc:
                raise bad_value(kind, field, exc) from None
            if current in wanted or (current is not None and str(current) in map(str, wanted)):
                ok = True
                break
        if not ok:
            return False
    return True
