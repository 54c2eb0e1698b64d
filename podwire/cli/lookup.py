"""Looking objects up by name or id, and parsing openstack-style options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podwire.cli.target import Target
from podwire.errors import Conflict, InvalidInput, NotFound


def resolve(target: Target, kind: str, ref: str) -> Any:
    """An object by id, else by its unique name."""
    backend, ctx = target.backend(), target.context()
    getter = getattr(backend, f"get_{kind}")
    lister = getattr(backend, f"list_{kind}s")
    try:
        return getter(ctx, ref)
    except NotFound:
        pass
    matches = lister(ctx, {"name": [ref]})
    if not matches:
        raise NotFound(f"no {kind} with id or name {ref!r}", kind=kind, object_id=ref)
    if len(matches) > 1:
        ids = ", ".join(m.id for m in matches)
        raise Conflict(f"{len(matches)} {kind}s are named {ref!r} ({ids}); use the id", kind=kind)
    return matches[0]


def project_filter(target: Target, filters: dict[str, list[str]]) -> dict[str, list[str]]:
    if target.project:
        filters["project_id"] = [target.project]
    return filters


def parse_kv(text: str, option: str, allowed: Sequence[str]) -> dict[str, str]:
    """``key=value,key=value`` as the openstack CLI writes it."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or key not in allowed:
            raise InvalidInput(
                f"{option} {text!r}: expected {','.join(k + '=...' for k in allowed)}",
                field=option,
            )
        out[key] = value.strip()
    return out
