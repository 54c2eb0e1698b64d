"""CNI error codes and the one place podwire errors become them."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from podwire.errors import (
    Conflict,
    Drift,
    Exhausted,
    InvalidInput,
    NotFound,
    PodwireError,
    Unavailable,
)


class Code(IntEnum):
    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    NOT_AVAILABLE_LIMITED = 51
    OTHER = 999


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, version: str) -> dict[str, Any]:
        return {"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details}


def from_podwire(exc: Exception, verb: str) -> CniError:
    """Map a podwire error raised while serving ``verb`` to a CNI error."""
    if isinstance(exc, CniError):
        return exc
    if not isinstance(exc, PodwireError):
        return CniError(
            Code.OTHER, f"{verb} failed: internal error", f"{type(exc).__name__}: {exc}"
        )
    detail = exc.object_id or ""
    if exc.kind == "netns" and isinstance(exc, (NotFound, InvalidInput)):
        # The path came from CNI_NETNS: an invalid environment variable.
        return CniError(Code.INVALID_ENV, f"CNI_NETNS: {exc.message}", detail)
    if isinstance(exc, Unavailable):  # Busy included
        return CniError(Code.TRY_AGAIN_LATER, exc.message, detail)
    if isinstance(exc, NotFound):
        if exc.kind == "attachment":
            return CniError(Code.UNKNOWN_CONTAINER, exc.message, detail)
        # A network (or a requested port, subnet) the config names does not exist.
        return CniError(Code.INVALID_CONFIG, exc.message, detail)
    if isinstance(exc, Exhausted):
        # The spec's own example of code 7 is a network too small to allocate from.
        return CniError(Code.INVALID_CONFIG, exc.message, detail)
    if isinstance(exc, InvalidInput):
        return CniError(Code.INVALID_CONFIG, exc.message, exc.field or detail)
    if isinstance(exc, Drift):
        return CniError(Code.OTHER, exc.message, exc.field or detail)
    if isinstance(exc, Conflict):
        return CniError(Code.OTHER, exc.message, detail)
    return CniError(Code.OTHER, exc.message, detail)
