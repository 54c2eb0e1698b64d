"""``podwire server`` and ``podwire agent``: the long-running processes."""

from __future__ import annotations

from pathlib import Path

import click

from podwire.cli.target import error_exit


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/var/lib/podwire",
    show_default=True,
)
@click.option("--listen", default="127.0.0.1:9696", show_default=True, help="HOST:PORT")
@click.option(
    "--tokens",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON {"TOKEN": {"project_id": ..., "roles": [...]}}',
)
@click.option("--db-url", help="SQLAlchemy URL (e.g. PostgreSQL) instead of SQLite in --state-dir")
@click.option(
    "--backend",
    type=click.Choice(["embedded", "ovn"]),
    default="embedded",
    show_default=True,
    help="what the API fronts: the embedded database, or an OVN northbound database"
    " (then tenants, such as agents inside VMs, reach OVN only through this API)",
)
@click.option(
    "--ovn-nb",
    "ovn_nb",
    multiple=True,
    help="OVN northbound remote for --backend ovn (repeatable)",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="server processes on the same database (one core each)",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML configuration (e.g. [api] size limits, docs/api.md); flags win over it",
)
def server(
    state_dir: Path,
    listen: str,
    tokens: Path,
    db_url: str | None,
    backend: str,
    ovn_nb: tuple[str, ...],
    workers: int,
    log_level: str,
    config_file: Path | None,
) -> None:
    """Serve a backend (embedded or OVN) over the Neutron v2.0 API."""
    from podwire.api.server import run_server
    from podwire.config import load_config

    with error_exit():
        config = load_config(
            config_file,
            state_dir=str(state_dir),
            backend=backend,
            **{"embedded.db_url": db_url, "ovn.nb_remotes": list(ovn_nb) or None},
        )
        run_server(config, listen, tokens, workers=workers, log_level=log_level)


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(["embedded", "ovn", "neutron", "remote"]))
@click.option("--ovn-nb", "ovn_nb", multiple=True, help="OVN northbound remote (repeatable)")
@click.option("--server-url", help="podwire server URL for --backend remote")
@click.option("--server-token", help="X-Auth-Token for --server-url")
@click.option("--os-cloud", "os_cloud", help="clouds.yaml cloud for --backend neutron")
@click.option("--neutron-url", help="Neutron endpoint for --backend neutron (no Keystone)")
@click.option("--neutron-token", help="token for --neutron-url (none: Neutron's noauth)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--docker-plugin-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also serve Docker's libnetwork remote driver on this socket",
)
@click.option("--host-id", help="this node's name in port bindings (default: hostname)")
@click.option("--metrics-address", help="also serve Prometheus /metrics on HOST:PORT")
def agent(
    state_dir: Path | None,
    socket_path: Path | None,
    backend: str | None,
    ovn_nb: tuple[str, ...],
    server_url: str | None,
    server_token: str | None,
    os_cloud: str | None,
    neutron_url: str | None,
    neutron_token: str | None,
    config_file: Path | None,
    docker_plugin_socket: Path | None,
    host_id: str | None,
    metrics_address: str | None,
) -> None:
    """Run the node agent (CNI and Docker requests, attachments)."""
    from podwire.config import load_config

    with error_exit():
        config = load_config(
            config_file,
            state_dir=str(state_dir) if state_dir else None,
            backend=backend,
            host_id=host_id,
            **{
                "agent.socket": str(socket_path) if socket_path else None,
                "agent.docker_plugin_socket": (
                    str(docker_plugin_socket) if docker_plugin_socket else None
                ),
                "agent.serve_docker": True if docker_plugin_socket else None,
                "ovn.nb_remotes": list(ovn_nb) or None,
                "remote.url": server_url,
                "remote.token": server_token,
                "metrics.address": metrics_address,
                "neutron.cloud": os_cloud,
                "neutron.endpoint": neutron_url,
                "neutron.token": neutron_token,
            },
        )
        from podwire.daemon import run_agent

        run_agent(config)
