"""``podwire server``: the embedded backend behind the Neutron API, on uvicorn.

With ``--workers N`` uvicorn runs N processes, each with its own backend on
the same database (the embedded backend is safe across processes); one
Python process uses one core at most, so on a multi-core host more workers
mean more port creates per second. Workers build their app from the
settings the parent puts in the environment (``app_from_env``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

from podwire.config import Config
from podwire.errors import InvalidInput

log = logging.getLogger(__name__)

_SETTINGS_ENV = "PODWIRE_SERVER_SETTINGS"


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


def app_from_env() -> Any:
    """The app of one uvicorn worker: its own backend, closed at shutdown."""
    from podwire.api.app import create_app
    from podwire.api.auth import TokenFileAuth
    from podwire.backends.registry import open_backend

    settings = json.loads(os.environ[_SETTINGS_ENV])
    config = Config.model_validate(settings["config"])
    auth = TokenFileAuth.from_file(Path(settings["tokens"]))
    backend = open_backend(config)
    app = create_app(backend, auth, limits=config.api)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            backend.close()

    app.router.lifespan_context = lifespan
    return app


class TcpConfig(uvicorn.Config):
    """uvicorn binds the shared socket of ``--workers`` with protocol 0, and
    asyncio sets TCP_NODELAY only on sockets whose protocol is TCP: without it
    every answer waited ~40 ms for a delayed ACK (Nagle). The socket is
    rebuilt so that its protocol is read from the kernel (6). Module-level:
    the config is pickled to the worker processes."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock = socket.socket(fileno=sock.detach())
            sock.set_inheritable(True)
        return sock


def run_server(
    config: Config,
    listen: str,
    tokens: Path,
    *,
    workers: int = 1,
    log_level: str = "warning",
) -> None:
    """Serve until SIGINT/SIGTERM."""
    from uvicorn.supervisors import Multiprocess

    from podwire.api.auth import TokenFileAuth
    from podwire.backends.registry import open_backend

    host, port = parse_listen(listen)
    if workers < 1:
        raise InvalidInput("--workers must be at least 1", field="workers")
    TokenFileAuth.from_file(tokens)  # a bad tokens file fails here, once, clearly
    config.state_dir.mkdir(parents=True, exist_ok=True)
    # Create the schema once before workers race to do it.
    open_backend(config).close()
    os.environ[_SETTINGS_ENV] = json.dumps(
        {"config": config.model_dump(mode="json"), "tokens": str(tokens.resolve())}
    )
    uv_config = TcpConfig(
        "podwire.api.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=log_level in ("debug", "info"),
        # Clients keep connections open between requests (httpx, openstacksdk).
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(uv_config)
    if workers > 1:
        Multiprocess(uv_config, sockets=[uv_config.bind_socket()]).run()
    else:
        server.run()
