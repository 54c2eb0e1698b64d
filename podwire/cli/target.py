"""Where the objects live (the client the commands talk to), chosen by one
global option, and what every command shares: --json and the one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from podwire.errors import InvalidInput, PodwireError

if TYPE_CHECKING:
    from podwire.backends.base import Backend
    from podwire.model import Context

DEFAULT_AGENT_SOCKET = "/run/podwire/agent.sock"
DEFAULT_PROJECT = "default"


# --- where the objects live ------------------------------------------------------------


@dataclass
class Target:
    url: str | None
    token: str | None
    agent_socket: str | None
    state_dir: Path | None
    db_url: str | None
    project: str | None
    as_json: bool
    _backend: Backend | None = field(default=None, repr=False)

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._open()
        return self._backend

    def _open(self) -> Backend:
        chosen = [
            name
            for name, value in (
                ("--url", self.url),
                ("--agent-socket", self.agent_socket),
                ("--state-dir", self.state_dir),
            )
            if value
        ]
        if len(chosen) > 1:
            raise InvalidInput(f"choose one of {', '.join(chosen)}, not several")
        if self.state_dir is not None:
            from podwire.backends.registry import open_backend
            from podwire.config import load_config

            self.state_dir.mkdir(parents=True, exist_ok=True)
            config = load_config(
                None,
                state_dir=str(self.state_dir),
                backend="embedded",
                **{"embedded.db_url": self.db_url},
            )
            return open_backend(config)
        from podwire.backends.neutron import NeutronBackend

        if self.url:
            return NeutronBackend.at(self.url, token=self.token)
        socket_path = self.agent_socket or DEFAULT_AGENT_SOCKET
        return NeutronBackend.at(f"unix://{socket_path}", token=self.token)

    def context(self) -> Context:
        from podwire.model import Context

        # In-process, the state directory's owner is its admin. Remotely the
        # token (or the agent socket) decides who we are; the context is unused.
        if self.state_dir is not None:
            return Context.admin(self.project or DEFAULT_PROJECT)
        return Context(project_id=self.project or DEFAULT_PROJECT)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


pass_target = click.make_pass_decorator(Target)


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Target).as_json = True


# ``--json`` is accepted before or after the command: `podwire --json port
# list` and `podwire port list --json` (the agent's docs use the latter).
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    expose_value=False,
    callback=_json_flag,
    help="machine-readable JSON output",
)


@contextmanager
def error_exit() -> Iterator[None]:
    """One clear line on stderr, exit 1, for every podwire error."""
    try:
        yield
    except PodwireError as exc:
        click.echo(f"podwire: error: {exc.message}", err=True)
        sys.exit(1)
