"""Neutron's default policy for the attributes only privileged callers set.

Neutron keeps these for admins (``create_network:shared``,
``create_network:provider:*``, ``create_port:binding:host_id``, ...) and
answers a member who sets one with 403 PolicyNotAuthorized. The port
binding and a port's status are what a host's agent writes: Neutron's
defaults give them to the ``service`` role too (the agent's token carries
it), so the agent needs no hole, only its role.

The check reads the body as the caller spelled it (before renaming). On
create an attribute counts as set only when it differs from its default
(Neutron's "explicitly set"); on update whenever it is present.
"""

from __future__ import annotations

from typing import Any

from podwire.errors import Forbidden
from podwire.model import Context

ADMIN = "admin"
SERVICE = "service"

# attribute -> (default on create, roles allowed to set it)
_ADMIN_ONLY = (ADMIN,)
_AGENT = (ADMIN, SERVICE)
RULES: dict[str, dict[str, tuple[Any, tuple[str, ...]]]] = {
    "network": {
        "shared": (False, _ADMIN_ONLY),
        "provider:network_type": (None, _ADMIN_ONLY),
        "provider:physical_network": (None, _ADMIN_ONLY),
        "provider:segmentation_id": (None, _ADMIN_ONLY),
        "router:external": (False, _ADMIN_ONLY),
    },
    "port": {
        "binding:host_id": ("", _AGENT),
        "binding:profile": ({}, _AGENT),
        "binding:vif_type": ("unbound", _AGENT),
        "binding:vif_details": ({}, _AGENT),
        "status": (None, _AGENT),
    },
}


class PolicyNotAuthorized(Forbidden):
    """Neutron's answer to a caller whose role may not set an attribute."""

    neutron_type = "PolicyNotAuthorized"


def enforce(ctx: Context, kind: str, action: str, body: dict[str, Any]) -> None:
    """Raise PolicyNotAuthorized for the first attribute of ``body`` the
    caller's roles may not set. ``action`` is "create" or "update"."""
    for attribute, (default, roles) in RULES.get(kind, {}).items():
        if attribute not in body:
            continue
        value = body[attribute]
        if action == "create" and value == default and type(value) is type(default):
            continue
        if any(role in ctx.roles for role in roles):
            continue
        raise PolicyNotAuthorized(
            f"(rule:{action}_{kind}:{attribute}) is disallowed by policy: only a caller with "
            f"role {' or '.join(roles)} may set {attribute}",
            kind=kind,
            field=attribute,
        )
