"""``podwire server``: the embedded backend behind the Neutron API, on uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from podwire.config import Config
from podwire.errors import InvalidInput

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise InvalidInput(f"--listen {listen!r} must be HOST:PORT", field="listen")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidInput(f"--listen {listen!r}: port must be a number", field="listen") from None
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--listen {listen!r}: port must be 0-65535", field="listen")
    return host, port


def run_server(config: Config, listen: str, tokens: Path, *, log_level: str = "warning") -> None:
    """Serve until SIGINT/SIGTERM; the backend is closed on the way out."""
    import uvicorn

    from podwire.api.app import create_app
    from podwire.api.auth import TokenFileAuth
    from podwire.backends.registry import open_backend

    host, port = parse_listen(listen)
    auth = TokenFileAuth.from_file(tokens)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    backend = open_backend(config)
    try:
        app = create_app(backend, auth)
        uv_config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=log_level in ("debug", "info"),
            # Clients keep connections open between requests (httpx, openstacksdk).
            timeout_keep_alive=30,
        )
        uvicorn.Server(uv_config).run()
    finally:
        backend.close()
