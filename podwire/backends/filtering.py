"""What the backends' list filters share: Neutron's ``{field: [value, ...]}``
shape, its aliases, the value conversions and the refusals. Each backend
turns the result into its own query (SQL clauses, a predicate on objects)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from podwire.errors import InvalidInput

# Neutron's spellings of model fields.
ALIASES = {
    "binding:host_id": "binding.host_id",
    "binding:vif_type": "binding.vif_type",
    "binding:vnic_type": "vnic_type",
    "provider:network_type": "network_type",
    "provider:segmentation_id": "segmentation_id",
    "provider:physical_network": "physical_network",
    "tenant_id": "project_id",
}


# Neutron's tag filters: every tag of ``tags``, any tag of ``tags-any``
# (values may be comma-separated, as in ``?tags=a,b``).
TAG_FILTERS = ("tags", "tags-any")


def split_tag_filters(
    filters: Mapping[str, Sequence[Any]] | None,
) -> tuple[dict[str, Sequence[Any]], list[str], list[str]]:
    """(the other filters, tags all required, tags any of which will do)."""
    rest = dict(filters or {})

    def tags(name: str) -> list[str]:
        raw = rest.pop(name, None)
        if raw is None:
            return []
        return [t for v in values_of(raw) for t in str(v).split(",") if t]

    return rest, tags("tags"), tags("tags-any")


def tags_match(have: Sequence[str], every: Sequence[str], any_of: Sequence[str]) -> bool:
    owned = set(have)
    return all(t in owned for t in every) and (not any_of or any(t in owned for t in any_of))


def model_name(field: str) -> str:
    """The model field a filter name means."""
    return ALIASES.get(field, field)


def values_of(raw_values: Sequence[Any] | str | int | bool) -> list[Any]:
    """A filter's values: one bare value or a list of them."""
    return [raw_values] if isinstance(raw_values, str | int | bool) else list(raw_values)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def normalized_ip(value: Any) -> str:
    text = str(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text  # matches nothing; not worth an error


def normalized_cidr(value: Any) -> str:
    text = str(value)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def not_filterable(kind: str, field: str) -> InvalidInput:
    return InvalidInput(f"{kind}s cannot be filtered by {field!r}", kind=kind, field=field)


def bad_value(kind: str, field: str, exc: ValueError) -> InvalidInput:
    return InvalidInput(f"filter {field}: {exc}", kind=kind, field=field)
