"""Neutron's JSON <-> podwire.model, for the client side.

Answers carry many attributes the model does not keep (dns_*, qos, tags on
networks, Neutron's own extensions): only the model's fields are read, so a
Neutron with more extensions than podwire knows still answers readable
objects. Requests send only what the caller set (``exclude_unset``), so
Neutron's own defaults apply, as for any Neutron client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from podwire import errors
from podwire.backends.base import Filters
from podwire.neutron import wire
from podwire.neutron.filters import FILTERABLE

_M = TypeVar("_M", bound=BaseModel)

# podwire server's own extension attributes on ports (trunk sub-port view).
_PORT_EXTRA = {
    "podwire:parent_port_id": "parent_port_id",
    "podwire:segmentation_id": "segmentation_id",
}
PORT_IN = {**wire.PORT_RENAMES, **_PORT_EXTRA}
NETWORK_IN = wire.NETWORK_RENAMES
SUBNET_IN = wire.SUBNET_RENAMES
TRUNK_IN = wire.TRUNK_RENAMES

# What a client never sends to a real Neutron: it owns them (a port's status
# is the data plane's, set by the mechanism driver; the binding's vif_type and
# vif_details are ML2's answer). podwire server's embedded store has no data
# plane: there the agent writes them.
NEUTRON_OWNS = frozenset({"status", "binding:vif_type", "binding:vif_details"})


def from_wire(model: type[_M], data: Any, renames: Mapping[str, str]) -> _M:
    if not isinstance(data, dict):
        raise errors.Unavailable(f"Neutron answered a {model.__name__} that is not an object")
    fields = model.model_fields
    out: dict[str, Any] = {}
    for key, value in data.items():
        target = renames.get(key, key)
        if "." in target:
            outer, inner = target.split(".", 1)
            if outer in fields:
                out.setdefault(outer, {})[inner] = value
        elif target in fields and key != "tenant_id":
            out[target] = value
    if "project_id" not in out and "tenant_id" in data:
        out["project_id"] = data["tenant_id"]
    try:
        return model.model_validate(out)
    except ValidationError as exc:
        raise errors.Unavailable(
            f"Neutron answered a {model.__name__} podwire cannot read: {exc.errors()[0]}"
        ) from None


# Fields where an explicit null is a value: a subnet without gateway.
_NULL_MEANS_SOMETHING = frozenset({"gateway_ip"})


def to_wire(
    req: BaseModel, renames: Mapping[str, str], drop: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A request model -> Neutron attributes; only what the caller set, less
    the attributes in ``drop``."""
    reverse = {m: w for w, m in renames.items() if w != "tenant_id" and "." not in m}
    body: dict[str, Any] = {}
    for name, value in req.model_dump(mode="json", exclude_unset=True).items():
        if value is None and name not in _NULL_MEANS_SOMETHING:
            continue  # the model's "not given"; Neutron refuses an explicit null
        if name == "binding":
            # The whole binding, defaults included: the model replaces it whole.
            binding = getattr(req, "binding", None)
            if binding is not None:
                for sub, sub_value in binding.model_dump(mode="json").items():
                    body[f"binding:{sub}"] = sub_value
            continue
        if name == "allowed_address_pairs":
            # A pair without a MAC means the port's: Neutron takes that as an
            # absent key and refuses an explicit null.
            value = [{k: v for k, v in pair.items() if v is not None} for pair in value]
        if name == "sub_ports":
            # Neutron wants each sub-port whole (segmentation_type included).
            value = [sp.model_dump(mode="json") for sp in getattr(req, "sub_ports", [])]
        body[reverse.get(name, name)] = value
    for key in drop & body.keys():
        del body[key]
    return body


def query(kind: str, filters: Filters | None) -> list[tuple[str, str]]:
    """Neutron list filters as query parameters (repeated keys OR-ed)."""
    if not filters:
        return []
    reverse = {m: w for w, m in FILTERABLE[kind].items() if w != "tenant_id"}
    params: list[tuple[str, str]] = []
    for field, values in filters.items():
        if isinstance(values, str):
            values = [values]
        if field.startswith("fixed_ips."):
            sub = field.split(".", 1)[1]
            params.extend(("fixed_ips", f"{sub}={v}") for v in values)
            continue
        params.extend((reverse.get(field, field), str(v)) for v in values)
    return params
