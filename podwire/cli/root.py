"""The ``podwire`` group itself: the global options that choose where the
objects live. Command groups register on it in __init__.py."""

from __future__ import annotations

from pathlib import Path

import click

from podwire.cli.target import DEFAULT_AGENT_SOCKET, Target


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="PODWIRE_URL", help="podwire server URL, e.g. http://127.0.0.1:9696")
@click.option("--token", envvar="PODWIRE_TOKEN", help="X-Auth-Token for --url")
@click.option(
    "--agent-socket",
    envvar="PODWIRE_AGENT_SOCKET",
    help=f"the agent's unix socket (default {DEFAULT_AGENT_SOCKET})",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="use the embedded backend in this directory, in-process",
)
@click.option("--db-url", help="with --state-dir: a SQLAlchemy URL instead of SQLite")
@click.option("--project", help="project to create in (admin) and to list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable JSON output")
@click.pass_context
def main(
    ctx: click.Context,
    url: str | None,
    token: str | None,
    agent_socket: str | None,
    state_dir: Path | None,
    db_url: str | None,
    project: str | None,
    as_json: bool,
) -> None:
    """podwire: connect containers to SDN networks."""

    # One place at a time. An option on the command line wins over one from
    # the environment (PODWIRE_AGENT_SOCKET may be set for the CNI shim).
    # One place at a time; an option typed on the command line wins over
    # others from the environment (PODWIRE_AGENT_SOCKET may be set for the shim).
    def typed(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    if any(typed(n) for n in ("url", "agent_socket", "state_dir")):
        url = url if typed("url") else None
        agent_socket = agent_socket if typed("agent_socket") else None
        state_dir = state_dir if typed("state_dir") else None
    target = Target(url, token, agent_socket, state_dir, db_url, project, as_json)
    ctx.obj = target
    ctx.call_on_close(target.close)
