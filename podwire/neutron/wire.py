"""Neutron's JSON shapes <-> podwire.model.

Outgoing: ``*_to_wire`` build the Neutron dict straight from the model's
attributes (no ``model_dump``: listing 10,000 ports must stay well under a
second). Incoming: ``*_from_wire`` rename Neutron's attribute names to the
model's (``provider:network_type`` -> ``network_type``, ``binding:*`` ->
``binding``, ``tenant_id`` -> ``project_id``) and validate with
``podwire.model.parse``; a validation error names the field as the caller
spelled it.

Timestamps are left as datetimes for ``dumps`` to format.

Attributes podwire does not keep but Neutron clients expect are emitted with
Neutron's neutral values (``router:external`` false, ``tags`` [], ...).
``revision_number`` is the object's own (bumped by every change).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from podwire.errors import InvalidInput
from podwire.model import (
    AllowedAddressPair,
    Network,
    NetworkCreate,
    NetworkUpdate,
    Port,
    PortCreate,
    PortUpdate,
    Subnet,
    SubnetCreate,
    SubnetUpdate,
    SubPort,
    Trunk,
    TrunkCreate,
    TrunkUpdate,
    check_unique_subports,
    validation_error,
)

_M = TypeVar("_M", bound=BaseModel)

# Neutron attribute -> model field, per resource (only the names that differ).
NETWORK_RENAMES = {
    "tenant_id": "project_id",
    "provider:network_type": "network_type",
    "provider:segmentation_id": "segmentation_id",
    "provider:physical_network": "physical_network",
    "podwire:datapath": "datapath",
}
SUBNET_RENAMES = {"tenant_id": "project_id"}
PORT_RENAMES = {
    "tenant_id": "project_id",
    "binding:vnic_type": "vnic_type",
    "binding:host_id": "binding.host_id",
    "binding:profile": "binding.profile",
    "binding:vif_type": "binding.vif_type",
    "binding:vif_details": "binding.vif_details",
}
TRUNK_RENAMES = {"tenant_id": "project_id"}

# Neutron attributes a client may send that podwire accepts only with the
# value podwire always has (anything else would be silently wrong).
_FIXED_VALUES: dict[str, Any] = {"router:external": False}


_DUMPS_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_OMIT_MICROSECONDS


def dumps(data: Any) -> bytes:
    """JSON for the wire. Timestamps stay datetimes in the ``*_to_wire``
    dicts: orjson writes them as Neutron does (``2026-01-01T12:00:00Z``)
    faster than Python can format them."""
    return orjson.dumps(data, option=_DUMPS_OPTIONS)


# --- model -> wire ----------------------------------------------------------------


def network_to_wire(n: Network) -> dict[str, Any]:
    return {
        "id": n.id,
        "name": n.name,
        "project_id": n.project_id,
        "tenant_id": n.project_id,
        "description": n.description,
        "mtu": n.mtu,
        "provider:network_type": n.network_type,
        "provider:segmentation_id": n.segmentation_id,
        "provider:physical_network": n.physical_network,
        "podwire:datapath": n.datapath,
        "port_security_enabled": n.port_security_enabled,
        "shared": n.shared,
        "admin_state_up": n.admin_state_up,
        "status": n.status,
        "subnets": list(n.subnets),
        "router:external": False,
        "availability_zone_hints": [],
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "l2_adjacency": True,
        "qos_policy_id": None,
        "tags": [],
        "revision_number": n.revision_number,
        "created_at": n.created_at,
        "updated_at": n.updated_at,
    }


def subnet_to_wire(s: Subnet) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "project_id": s.project_id,
        "tenant_id": s.project_id,
        "network_id": s.network_id,
        "description": s.description,
        "ip_version": s.ip_version,
        "cidr": s.cidr,
        "gateway_ip": s.gateway_ip,
        "allocation_pools": [{"start": p.start, "end": p.end} for p in s.allocation_pools],
        "dns_nameservers": list(s.dns_nameservers),
        "host_routes": [
            {"destination": r.destination, "nexthop": r.nexthop} for r in s.host_routes
        ],
        "enable_dhcp": s.enable_dhcp,
        "ipv6_ra_mode": None,
        "ipv6_address_mode": None,
        "subnetpool_id": None,
        "segment_id": None,
        "service_types": [],
        "tags": [],
        "revision_number": s.revision_number,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    }


def _pair_to_wire(pair: AllowedAddressPair, port_mac: str) -> dict[str, Any]:
    # Neutron always answers with a MAC: the pair's own or the port's.
    return {"ip_address": pair.ip_address, "mac_address": pair.mac_address or port_mac}


def port_to_wire(p: Port) -> dict[str, Any]:
    b = p.binding
    return {
        "id": p.id,
        "name": p.name,
        "project_id": p.project_id,
        "tenant_id": p.project_id,
        "network_id": p.network_id,
        "description": p.description,
        "mac_address": p.mac_address,
        "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in p.fixed_ips],
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "status": p.status,
        "admin_state_up": p.admin_state_up,
        "port_security_enabled": p.port_security_enabled,
        "security_groups": list(p.security_groups),
        "allowed_address_pairs": [_pair_to_wire(a, p.mac_address) for a in p.allowed_address_pairs],
        "binding:vnic_type": p.vnic_type,
        "binding:host_id": b.host_id,
        "binding:profile": b.profile,
        "binding:vif_type": b.vif_type,
        "binding:vif_details": b.vif_details,
        "podwire:parent_port_id": p.parent_port_id,
        "podwire:segmentation_id": p.segmentation_id,
        "extra_dhcp_opts": [],
        "qos_policy_id": None,
        "tags": list(p.tags),
        "revision_number": p.revision_number,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def subport_to_wire(sp: SubPort) -> dict[str, Any]:
    return {
        "port_id": sp.port_id,
        "segmentation_type": sp.segmentation_type,
        "segmentation_id": sp.segmentation_id,
    }


def trunk_details(t: Trunk, macs: Mapping[str, str]) -> dict[str, Any]:
    """A parent port's ``trunk_details``; a sub-port's MAC when it is known."""
    sub_ports = []
    for sp in t.sub_ports:
        item = subport_to_wire(sp)
        if sp.port_id in macs:
            item["mac_address"] = macs[sp.port_id]
        sub_ports.append(item)
    return {"trunk_id": t.id, "sub_ports": sub_ports}


def trunk_to_wire(t: Trunk) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "project_id": t.project_id,
        "tenant_id": t.project_id,
        "description": t.description,
        "port_id": t.port_id,
        "status": t.status,
        "admin_state_up": t.admin_state_up,
        "sub_ports": [subport_to_wire(sp) for sp in t.sub_ports],
        "tags": [],
        "revision_number": t.revision_number,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }


# --- wire -> model -------------------------------------------------------------------


def _rename(body: dict[str, Any], renames: dict[str, str], kind: str) -> dict[str, Any]:
    """Neutron names -> model names; ``a.b`` targets fill a nested dict."""
    out: dict[str, Any] = {}
    source: dict[str, str] = {}  # model field -> the name the caller used
    for key, value in body.items():
        if key in _FIXED_VALUES:
            if value != _FIXED_VALUES[key]:
                raise InvalidInput(
                    f"{key}: podwire supports only {_FIXED_VALUES[key]!r}", kind=kind, field=key
                )
            continue
        if "." in key:
            # Only Neutron's spelling (binding:host_id): a dotted alias of a
            # model path would set the same field twice, the last one winning.
            raise InvalidInput(f"unknown field {key!r}", kind=kind, field=key)
        target = renames.get(key, key)
        if "." in target:
            outer, inner = target.split(".", 1)
            nested = out.setdefault(outer, {})
            if not isinstance(nested, dict):
                raise InvalidInput(f"{key}: conflicts with {outer}", kind=kind, field=key)
            nested[inner] = value
            continue
        if target in out and out[target] != value:
            raise InvalidInput(
                f"{key}: conflicts with the value given for {source[target]}",
                kind=kind,
                field=key,
            )
        out[target] = value
        source[target] = key
    return out


def _wire_field(field: str | None, renames: dict[str, str]) -> str | None:
    """The model's field path as the caller spelled it (``binding.host_id`` ->
    ``binding:host_id``), so the error names what the caller sent."""
    if field is None:
        return None
    reverse = {model: wire for wire, model in renames.items() if wire != "tenant_id"}
    if field in reverse:
        return reverse[field]
    for model_name, wire_name in reverse.items():
        if field.startswith(model_name + "."):
            return wire_name + field[len(model_name) :]
    return field


def parse_wire(model: type[_M], data: dict[str, Any], renames: dict[str, str], kind: str) -> _M:
    """Validate a renamed body into ``model``; errors name the Neutron field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = validation_error(exc, kind=kind)
        if err.field is None:
            raise _name_wire_fields(err, renames, kind) from None
        model_field = err.field
        field = _wire_field(model_field, renames) or model_field
        message = err.message
        if message == f"{model_field}: unknown field {model_field!r}":
            message = f"unknown field {field!r}"
        elif message.startswith(model_field):
            message = field + message[len(model_field) :]
        raise InvalidInput(message, kind=kind, field=field) from None


def _name_wire_fields(err: InvalidInput, renames: dict[str, str], kind: str) -> InvalidInput:
    """A whole-object check ("segmentation_id of a vlan network must be ...")
    names model fields in its text: spell them the caller's way."""
    message, field = err.message, None
    for wire_name, model_name in renames.items():
        if wire_name == "tenant_id" or "." in model_name:
            continue
        if re.search(rf"(?<![:\w]){model_name}\b", message):
            message = re.sub(rf"(?<![:\w]){model_name}\b", wire_name, message)
            field = field or wire_name
    return InvalidInput(message, kind=kind, field=field)


def member_body(body: Any, key: str) -> dict[str, Any]:
    """``{"network": {...}}`` -> the inner dict, or InvalidInput naming ``key``."""
    if not isinstance(body, dict) or key not in body:
        raise InvalidInput(f"request body must be a JSON object with key {key!r}", field=key)
    extra = [k for k in body if k != key]
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r} beside {key!r}", field=extra[0])
    inner = body[key]
    if not isinstance(inner, dict):
        raise InvalidInput(f"{key}: must be a JSON object", field=key)
    return inner


def network_create(body: dict[str, Any]) -> NetworkCreate:
    data = _rename(body, NETWORK_RENAMES, "network")
    return parse_wire(NetworkCreate, data, NETWORK_RENAMES, "network")


def network_update(body: dict[str, Any]) -> NetworkUpdate:
    data = _rename(body, NETWORK_RENAMES, "network")
    return parse_wire(NetworkUpdate, data, NETWORK_RENAMES, "network")


def subnet_create(body: dict[str, Any]) -> SubnetCreate:
    data = _rename(body, SUBNET_RENAMES, "subnet")
    return parse_wire(SubnetCreate, data, SUBNET_RENAMES, "subnet")


def subnet_update(body: dict[str, Any]) -> SubnetUpdate:
    data = _rename(body, SUBNET_RENAMES, "subnet")
    return parse_wire(SubnetUpdate, data, SUBNET_RENAMES, "subnet")


def port_create(body: dict[str, Any]) -> PortCreate:
    data = _rename(body, PORT_RENAMES, "port")
    return parse_wire(PortCreate, data, PORT_RENAMES, "port")


def port_update(body: dict[str, Any], current: Port | None) -> PortUpdate:
    """``current`` is needed only when the body names a ``binding:*`` field:
    Neutron updates those one by one, the model replaces the whole binding."""
    data = _rename(body, PORT_RENAMES, "port")
    if "binding" in data and current is not None:
        merged = current.binding.model_dump()
        merged.update(data["binding"])
        data["binding"] = merged
    return parse_wire(PortUpdate, data, PORT_RENAMES, "port")


def port_update_touches_binding(body: dict[str, Any]) -> bool:
    return any(key.startswith("binding:") and key != "binding:vnic_type" for key in body)


def trunk_create(body: dict[str, Any]) -> TrunkCreate:
    data = _rename(body, TRUNK_RENAMES, "trunk")
    return parse_wire(TrunkCreate, data, TRUNK_RENAMES, "trunk")


def trunk_update(body: dict[str, Any]) -> TrunkUpdate:
    data = _rename(body, TRUNK_RENAMES, "trunk")
    return parse_wire(TrunkUpdate, data, TRUNK_RENAMES, "trunk")


def _subport_items(body: Any) -> list[dict[str, Any]]:
    """``{"sub_ports": [{...}, ...]}`` -> the list of objects, or InvalidInput."""
    if not isinstance(body, dict) or not isinstance(body.get("sub_ports"), list):
        raise InvalidInput(
            "request body must be a JSON object with a list 'sub_ports'", field="sub_ports"
        )
    extra = [k for k in body if k != "sub_ports"]
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r}", field=extra[0])
    items: list[Any] = body["sub_ports"]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(
                f"sub_ports.{i}: must be a JSON object", kind="trunk", field=f"sub_ports.{i}"
            )
    return items


def _subport(index: int, item: dict[str, Any]) -> SubPort:
    try:
        return parse_wire(SubPort, item, {}, "trunk")
    except InvalidInput as exc:
        field = f"sub_ports.{index}.{exc.field}" if exc.field else f"sub_ports.{index}"
        message = exc.message
        if exc.field and message.startswith(exc.field):
            message = field + message[len(exc.field) :]
        raise InvalidInput(message, kind="trunk", field=field) from None


def subports_to_add(body: Any) -> list[SubPort]:
    sub_ports = [_subport(i, item) for i, item in enumerate(_subport_items(body))]
    try:
        check_unique_subports(sub_ports)
    except ValueError as exc:
        raise InvalidInput(f"sub_ports: {exc}", kind="trunk", field="sub_ports") from None
    return sub_ports


def subports_to_remove(body: Any) -> list[str]:
    """Neutron takes whole sub-port objects here; only port_id matters."""
    port_ids: list[str] = []
    for i, item in enumerate(_subport_items(body)):
        port_id = item.get("port_id")
        if not isinstance(port_id, str) or not port_id:
            raise InvalidInput(
                f"sub_ports.{i}.port_id: a string is required",
                kind="trunk",
                field=f"sub_ports.{i}.port_id",
            )
        unknown = [k for k in item if k not in ("port_id", "segmentation_type", "segmentation_id")]
        if unknown:
            field = f"sub_ports.{i}.{unknown[0]}"
            raise InvalidInput(f"unknown field {field!r}", kind="trunk", field=field)
        port_ids.append(port_id)
    return port_ids
