"""The ACTIVE marks (podwire.agent.caches.Activator) against a real embedded
backend: written once the calls running have answered, within a bound under
continuous load, and never for a port whose DEL came first."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from podwire.agent.caches import Activator
from podwire.agent.gate import QUIET_WAIT_SECONDS, Gate
from podwire.backends.embedded import EmbeddedBackend
from podwire.model import Context, NetworkCreate, Port, PortCreate, parse


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[SimpleNamespace, Activator]]:
    backend = EmbeddedBackend(f"sqlite:///{tmp_path / 'podwire.db'}")
    agent = SimpleNamespace(backend=backend, ctx=Context.admin(), gate=Gate(4, 4))
    activator = Activator(agent)  # type: ignore[arg-type]
    try:
        yield agent, activator
    finally:
        activator.close()
        backend.close()


def _port(agent: SimpleNamespace) -> Port:
    net = agent.backend.create_network(
        agent.ctx, parse(NetworkCreate, {"name": "marks"}, kind="network")
    )
    return agent.backend.create_port(
        agent.ctx, parse(PortCreate, {"network_id": net.id}, kind="port")
    )


def _status(agent: SimpleNamespace, port: Port) -> str:
    return agent.backend.get_port(agent.ctx, port.id).status


def test_mark_waits_for_the_answer_of_the_running_call(
    setup: tuple[SimpleNamespace, Activator],
) -> None:
    agent, activator = setup
    port = _port(agent)
    assert port.status == "DOWN"
    with agent.gate.activity():  # the ADD that plugged it, not answered yet
        activator.submit(port)
        time.sleep(QUIET_WAIT_SECONDS / 3)
        assert _status(agent, port) == "DOWN"
    activator.wait(port.id, timeout=5)
    assert _status(agent, port) == "ACTIVE"


def test_mark_is_written_within_the_bound_under_continuous_calls(
    setup: tuple[SimpleNamespace, Activator],
) -> None:
    agent, activator = setup
    port = _port(agent)
    with agent.gate.activity():  # never quiet while the mark waits
        started = time.monotonic()
        activator.submit(port)
        activator.wait(port.id, timeout=5)
        waited = time.monotonic() - started
        assert _status(agent, port) == "ACTIVE"
    assert waited >= QUIET_WAIT_SECONDS * 0.9
    assert waited < 5


def test_a_del_before_the_write_drops_the_mark(
    setup: tuple[SimpleNamespace, Activator],
) -> None:
    agent, activator = setup
    port = _port(agent)
    with agent.gate.activity():
        activator.submit(port)
        activator.settle(port.id)  # the DEL: the mark has not started
    time.sleep(QUIET_WAIT_SECONDS * 2)
    activator.close()
    assert _status(agent, port) == "DOWN"
