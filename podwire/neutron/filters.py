"""List filters from Neutron query strings.

``?name=a&name=b&network_id=N`` -> ``{"name": ["a", "b"], "network_id": ["N"]}``:
values of one field OR-ed, fields AND-ed (the Backend contract). Neutron's
names are mapped to the model's, booleans normalised to ``True``/``False``
(the backend compares values as strings), and ``fixed_ips=ip_address=X``
becomes ``fixed_ips.ip_address``.

A filter podwire cannot answer is refused with 400 naming it, never ignored:
an ignored filter turns "list my port" into "list every port".
"""

from __future__ import annotations

from collections.abc import Iterable

from podwire.errors import InvalidInput

# Query parameters about the shape of the answer, not about which objects.
# ``fields`` is accepted and ignored: answers always carry every attribute.
_NOT_FILTERS = frozenset(
    {
        "fields",
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "page_reverse",
        "not-tags",
        "not-tags-any",
    }
)

_COMMON = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
}

FILTERABLE: dict[str, dict[str, str]] = {
    "network": {
        **_COMMON,
        "status": "status",
        "mtu": "mtu",
        "shared": "shared",
        "admin_state_up": "admin_state_up",
        "port_security_enabled": "port_security_enabled",
        "provider:network_type": "network_type",
        "provider:segmentation_id": "segmentation_id",
        "provider:physical_network": "physical_network",
        "podwire:datapath": "datapath",
    },
    "subnet": {
        **_COMMON,
        "network_id": "network_id",
        "cidr": "cidr",
        "ip_version": "ip_version",
        "gateway_ip": "gateway_ip",
        "enable_dhcp": "enable_dhcp",
    },
    "port": {
        **_COMMON,
        "network_id": "network_id",
        "mac_address": "mac_address",
        "device_id": "device_id",
        "device_owner": "device_owner",
        "status": "status",
        "admin_state_up": "admin_state_up",
        "port_security_enabled": "port_security_enabled",
        "binding:vnic_type": "vnic_type",
        "binding:host_id": "binding.host_id",
        "binding:vif_type": "binding.vif_type",
        "ip_address": "fixed_ips.ip_address",
        "subnet_id": "fixed_ips.subnet_id",
    },
    "trunk": {
        **_COMMON,
        "port_id": "port_id",
        "status": "status",
        "admin_state_up": "admin_state_up",
    },
}

_BOOLEAN = frozenset({"shared", "admin_state_up", "port_security_enabled", "enable_dhcp"})
# Filters on integer fields: the value must be an integer in the field's
# range (a 20-digit one once overflowed SQLite's integers: a 500).
_INTEGER: dict[str, tuple[int, int]] = {
    "mtu": (0, 65535),
    "provider:segmentation_id": (0, 16777215),
    "ip_version": (4, 6),
}
_ALLOWED_VALUES: dict[str, frozenset[str]] = {"ip_version": frozenset({"4", "6"})}
# The longest value any filterable field holds (names, ids, descriptions):
# the default of api.max_filter_value.
MAX_FILTER_VALUE = 255
_FIXED_IP_KEYS = {"ip_address": "fixed_ips.ip_address", "subnet_id": "fixed_ips.subnet_id"}


class NothingMatches(Exception):
    """The filters select nothing podwire can hold (``router:external=true``,
    a tag): the answer is an empty list without asking the backend."""


def _boolean(field: str, value: str) -> str:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return "True"
    if lowered in ("false", "0"):
        return "False"
    raise InvalidInput(f"filter {field}: {value!r} is not a boolean", field=field)


def _integer(field: str, value: str) -> str:
    low, high = _INTEGER[field]
    allowed = _ALLOWED_VALUES.get(field)
    try:
        if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 12:
            raise ValueError
        number = int(value)
        if not low <= number <= high or (allowed is not None and value not in allowed):
            raise ValueError
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "..."
        expected = " or ".join(sorted(allowed)) if allowed else f"an integer from {low} to {high}"
        raise InvalidInput(f"filter {field}: {shown!r} is not {expected}", field=field) from None
    return str(number)


def filters_from_query(
    kind: str, items: Iterable[tuple[str, str]], *, max_value: int = MAX_FILTER_VALUE
) -> dict[str, list[str]]:
    """Raise InvalidInput for a filter podwire does not know, NothingMatches
    when no object can match."""
    allowed = FILTERABLE[kind]
    out: dict[str, list[str]] = {}
    for key, value in items:
        if key in _NOT_FILTERS:
            continue
        if key == "router:external" and kind == "network":
            if _boolean(key, value) == "True":
                raise NothingMatches
            continue
        if key in ("tags", "tags-any"):
            if kind != "port":
                # Only ports carry tags here: no other object has the asked one.
                raise NothingMatches
            # Comma-separated in Neutron's query; the backends split them.
            out.setdefault(key, []).append(value)
            continue
        if key == "fixed_ips" and kind == "port":
            sub, sep, sub_value = value.partition("=")
            if not sep or sub not in _FIXED_IP_KEYS:
                raise InvalidInput(
                    f"filter fixed_ips: {value!r} must be ip_address=IP or subnet_id=ID",
                    field="fixed_ips",
                )
            out.setdefault(_FIXED_IP_KEYS[sub], []).append(sub_value)
            continue
        target = allowed.get(key)
        if target is None:
            raise InvalidInput(f"{key!r} is not a valid filter for {kind}s", field=key)
        if key in _BOOLEAN:
            value = _boolean(key, value)
        elif key in _INTEGER:
            value = _integer(key, value)
        elif len(value) > max_value:
            raise InvalidInput(
                f"filter {key}: the value is longer than {max_value} characters"
                " (api.max_filter_value)",
                field=key,
            )
        out.setdefault(target, []).append(value)
    return out
