"""Neutron's error answers -> podwire.errors, in one place.

Neutron (and podwire server, which speaks its dialect) answer
``{"NeutronError": {"type": ..., "message": ...}}`` with an HTTP status (podwire
server adds the kind, object id and field as X-Podwire-Error-* headers); the
type tells apart errors that share a status (IpAddressGenerationFailure is a
409 like any conflict, but podwire calls it Exhausted). 412 is the answer to
a failed ``If-Match: revision_number=N``: PreconditionFailed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from podwire import errors

_BY_STATUS: dict[int, type[errors.PodwireError]] = {
    400: errors.InvalidInput,
    401: errors.NotAuthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    412: errors.PreconditionFailed,
    413: errors.InvalidInput,
    429: errors.Busy,
    503: errors.Unavailable,
}
# Subclasses that share a status with their parent, told apart by type.
_BY_TYPE: dict[str, type[errors.PodwireError]] = {
    errors.Exhausted.neutron_type: errors.Exhausted,
    "MacAddressGenerationFailure": errors.Exhausted,
    errors.Drift.neutron_type: errors.Drift,
    errors.DatapathError.neutron_type: errors.DatapathError,
    "OverQuota": errors.Busy,
}
# Neutron's NotFound types that name the kind differently from podwire.
_KIND_OF_TYPE = {"PortNotFoundClient": "port", "TrunkNotFound": "trunk"}


# Neutron's error types about one input field of the request.
_FIELD_OF_TYPE = {
    "MacAddressInUse": "mac_address",
    "IpAddressInUse": "fixed_ips",
    "IpAddressAlreadyAllocated": "fixed_ips",
}

# Neutron's error types that name the object they are about: "<Kind>NotFound",
# "<Kind>InUse" (NetworkInUse, SubnetInUse, PortInUse, TrunkInUse, ...).
_TYPE_SUFFIXES = ("NotFound", "InUse")


def _kind_of(err_type: str) -> str | None:
    if err_type in _KIND_OF_TYPE:
        return _KIND_OF_TYPE[err_type]
    for suffix in _TYPE_SUFFIXES:
        if err_type.endswith(suffix) and err_type != suffix:
            head = err_type[: -len(suffix)]
            # CamelCase -> snake: "SecurityGroup" -> "security_group"
            return "".join(f"_{c.lower()}" if c.isupper() else c for c in head).lstrip("_")
    return None


def error_from_answer(
    status: int,
    text: str,
    where: str,
    *,
    kind: str | None = None,
    object_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> errors.PodwireError:
    """An HTTP error answer (status, body) -> the podwire error it means.

    ``kind`` and ``object_id`` name the object the request was about (from
    its path: ``DELETE /networks/ID``); an error about another object (a
    subnet's unknown network) names that one's kind and the field that
    pointed at it (``network_id``) instead."""
    message = f"HTTP {status} from {where}"
    err_type = ""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
        message = f"{message}: {text[:200]}"
    neutron = body.get("NeutronError") if isinstance(body, dict) else None
    if isinstance(neutron, dict):
        message = str(neutron.get("message") or message)
        err_type = str(neutron.get("type") or "")
    elif isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]  # webob's plain error pages (e.g. a bad URL)
    default = errors.PodwireError if status < 500 else errors.Unavailable
    if status == 500:
        default = errors.PodwireError
    cls = _BY_TYPE.get(err_type) or _BY_STATUS.get(status, default)
    field = _FIELD_OF_TYPE.get(err_type)
    named = None if field else _kind_of(err_type)
    if named is not None and kind is not None and named != kind:
        field = f"{named}_id"
        object_id = None
    if named is not None:
        kind = named
    if cls is errors.InvalidInput and ": " in message:
        head = message.split(": ", 1)[0]
        if " " not in head:
            field = head
    if headers is not None:
        # podwire server says what Neutron's body cannot: that wins.
        kind = headers.get("X-Podwire-Error-Kind") or kind
        object_id = headers.get("X-Podwire-Error-Object-Id") or object_id
        field = headers.get("X-Podwire-Error-Field") or field
    return cls(message, kind=kind, object_id=object_id, field=field)
