"""The configured size limits of the Neutron API (podwire.config.ApiConfig):
items in a request's lists. Checked on the parsed request, before policy
and before the backend is asked (a 400 naming the field and the key that
sets the bound). The body cap and filter lengths are applied where the
body and the query are read (podwire.api.app, podwire.neutron.filters)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from podwire.config import LIST_FIELDS, ApiConfig
from podwire.errors import InvalidInput


def check_lists(kind: str, request: BaseModel, limits: ApiConfig) -> None:
    """InvalidInput for the first list of ``request`` longer than its bound."""
    for field in LIST_FIELDS:
        value = getattr(request, field, None)
        if isinstance(value, list):
            check_count(kind, field, value, limits)


def check_count(kind: str, field: str, items: Sequence[object], limits: ApiConfig) -> None:
    limit = limits.list_limit(field)
    if limit is not None and len(items) > limit:
        raise InvalidInput(
            f"{field}: {len(items)} items, more than the {limit} allowed"
            f" (api.max_{field} in the server's configuration)",
            kind=kind,
            field=field,
        )
