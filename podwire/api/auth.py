"""Who is calling: an X-Auth-Token -> a Context.

Pluggable: ``podwire server`` uses TokenFileAuth; the agent mounts the same
app on its root-only unix socket with TrustAllAuth (the socket's file mode
is the authentication there).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podwire.errors import InvalidInput, NotAuthenticated
from podwire.model import Context, validation_error

_log = logging.getLogger(__name__)


class Auth(Protocol):
    def authenticate(self, token: str | None) -> Context:
        """The caller's Context, or NotAuthenticated."""
        ...


# "service": a host's agent (Neutron's service role): may write a port's
# binding and status, nothing else beyond a member (podwire.api.policy).
Role = Literal["member", "admin", "service"]


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: str = Field(min_length=1)
    roles: list[Role] = Field(default_factory=lambda: list[Role](["member"]))


class TokenFileAuth:
    """Tokens from a JSON file ``{"TOKEN": {"project_id": ..., "roles": [...]}}``.

    Read at start, and again whenever the file changes (its inode, size or
    mtime): an operator adds or revokes a token by rewriting the file (write a
    new one and rename it over the old, so that no reader sees half of it),
    without restarting the server. A rewrite that does not parse keeps the
    tokens already loaded and is logged; the start-up read fails clearly.
    Checking costs one stat() per request."""

    def __init__(self, tokens: dict[str, Context]) -> None:
        self._tokens = tokens
        self._path: Path | None = None
        self._stamp: tuple[int, int, int] | None = None

    @classmethod
    def from_file(cls, path: Path) -> TokenFileAuth:
        stamp = _stamp_of(path)  # before reading: a change while reading is seen next time
        auth = cls(_read_tokens(path))
        auth._path, auth._stamp = path, stamp
        return auth

    def _refresh(self) -> None:
        if self._path is None:
            return
        stamp = _stamp_of(self._path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._tokens = _read_tokens(self._path)
        except InvalidInput as exc:
            _log.warning("%s; keeping the tokens read before", exc.message)

    def authenticate(self, token: str | None) -> Context:
        if not token:
            raise NotAuthenticated("X-Auth-Token header is required")
        self._refresh()
        ctx = self._tokens.get(token)
        if ctx is None:
            raise NotAuthenticated("the X-Auth-Token is not valid")
        return ctx


def _stamp_of(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_tokens(path: Path) -> dict[str, Context]:
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InvalidInput(f"cannot read tokens file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"tokens file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"tokens file {path} must hold a JSON object token -> entry")
    tokens: dict[str, Context] = {}
    for token, entry in raw.items():
        try:
            parsed = TokenEntry.model_validate(entry)
        except ValidationError as exc:
            err = validation_error(exc, kind="tokens file")
            # Never echo the token itself into logs: name its position.
            position = list(raw).index(token)
            raise InvalidInput(
                f"tokens file {path}, entry #{position + 1}: {err.message}"
            ) from None
        tokens[token] = Context(project_id=parsed.project_id, roles=tuple(parsed.roles))
    return tokens


class TrustAllAuth:
    """Every caller is admin of one project: for a socket only root can open."""

    def __init__(self, project_id: str = "default") -> None:
        self._ctx = Context.admin(project_id)

    def authenticate(self, token: str | None) -> Context:
        return self._ctx
