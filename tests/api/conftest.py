"""HTTP clients of the API tests, one per token of the server fixture's
tokens file (module scope: one connection a module). A module that wants
another kind of client (openstacksdk) defines its own fixture of that name."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.server import ServerInfo


@pytest.fixture(scope="module")
def admin(podwire_server: ServerInfo) -> Iterator[httpx.Client]:
    with podwire_server.http("admin") as client:
        yield client


@pytest.fixture(scope="module")
def alice(podwire_server: ServerInfo) -> Iterator[httpx.Client]:
    with podwire_server.http("alice") as client:
        yield client
