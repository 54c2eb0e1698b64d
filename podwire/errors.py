"""One exception root for podwire.

Every error names what failed, on which object and why. Frontends translate
these into their own protocol in one place each (CNI codes, libnetwork
``{"Err": ...}``, HTTP status with a Neutron-style body); nothing below the
frontends knows about those protocols.
"""

from __future__ import annotations

from typing import Any


class PodwireError(Exception):
    """Root of every error podwire raises on purpose.

    ``kind`` is the object type ("port", "subnet", ...), ``object_id`` its id
    or name, ``field`` the input field at fault when there is one.
    """

    #: HTTP status the REST API answers with; frontends may map differently.
    http_status = 500
    #: Neutron's exception type name, used in the API's error body.
    neutron_type = "PodwireError"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        object_id: str | None = None,
        field: str | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.object_id = object_id
        self.field = field
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        for key in ("kind", "object_id", "field"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class InvalidInput(PodwireError):
    """The caller sent something malformed or out of range."""

    http_status = 400
    neutron_type = "HTTPBadRequest"


class NotAuthenticated(PodwireError):
    """No credentials, or credentials nobody issued."""

    http_status = 401
    neutron_type = "HTTPUnauthorized"


class Forbidden(PodwireError):
    """The caller is known but may not do this."""

    http_status = 403
    neutron_type = "HTTPForbidden"


class NotFound(PodwireError):
    """The object does not exist, or is not visible to the caller's project."""

    http_status = 404
    neutron_type = "NotFound"


class Conflict(PodwireError):
    """The request collides with the current state (in use, duplicate, overlap)."""

    http_status = 409
    neutron_type = "Conflict"


class Exhausted(Conflict):
    """A pool (addresses, MACs, VLAN ids, VFs) has nothing left to give."""

    neutron_type = "IpAddressGenerationFailure"


class PreconditionFailed(Conflict):
    """The object changed since the caller read it: its revision_number is
    not the one the caller named (Neutron's 412 to ``If-Match:
    revision_number=N``). Shared contract 1; issue 9 adds the same class."""

    http_status = 412
    neutron_type = "PreconditionFailed"


class Unavailable(PodwireError):
    """A dependency (database, OVN, agent, kernel feature) cannot be reached or used now."""

    http_status = 503
    neutron_type = "ServiceUnavailable"


class Busy(Unavailable):
    """Too much work in flight; the caller should try again later."""

    http_status = 429
    neutron_type = "OverQuota"


class DatapathError(PodwireError):
    """Plugging or unplugging an interface failed in the kernel, OVS or sysfs."""

    http_status = 500
    neutron_type = "DatapathError"


class Drift(PodwireError):
    """CHECK found the live state different from the record; ``field`` names what."""

    http_status = 409
    neutron_type = "Drift"
