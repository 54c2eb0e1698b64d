"""Who is calling: an X-Auth-Token -> a Context.

Pluggable: ``podwire server`` uses TokenFileAuth; the agent mounts the same
app on its root-only unix socket with TrustAllAuth (the socket's file mode
is the authentication there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podwire.errors import InvalidInput, NotAuthenticated
from podwire.model import Context, validation_error


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
    """Tokens from a JSON file ``{"TOKEN": {"project_id": ..., "roles": [...]}}``,
    read once at start (restart the server to change them)."""

    def __init__(self, tokens: dict[str, Context]) -> None:
        self._tokens = tokens

    @classmethod
    def from_file(cls, path: Path) -> TokenFileAuth:
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
        return cls(tokens)

    def authenticate(self, token: str | None) -> Context:
        if not token:
            raise NotAuthenticated("X-Auth-Token header is required")
        ctx = self._tokens.get(token)
        if ctx is None:
            raise NotAuthenticated("the X-Auth-Token is not valid")
        return ctx


class TrustAllAuth:
    """Every caller is admin of one project: for a socket only root can open."""

    def __init__(self, project_id: str = "default") -> None:
        self._ctx = Context.admin(project_id)

    def authenticate(self, token: str | None) -> Context:
        return self._ctx
