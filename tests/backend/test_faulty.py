"""podwire.backends.faulty: fault points around every Backend call, on a real
embedded backend, and ``open_backend`` wrapping only when a plan is in force."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from podwire import faults
from podwire.backends.base import Backend
from podwire.backends.embedded import EmbeddedBackend
from podwire.backends.faulty import FaultyBackend, fault_points, protocol_methods
from podwire.backends.registry import open_backend
from podwire.config import load_config
from podwire.faults import FaultPlanError, InjectedFault, parse_plan
from podwire.model import NetworkCreate, PortCreate, SubnetCreate
from tests.backend.helpers import ADMIN
from tests.fixtures.common import unique


@pytest.fixture(autouse=True)
def _no_plan_left_behind() -> Iterator[None]:
    faults.reset()
    yield
    faults.reset()


@pytest.fixture
def inner(tmp_path: Path) -> Iterator[EmbeddedBackend]:
    backend = EmbeddedBackend(f"sqlite:///{tmp_path / 'podwire.db'}")
    try:
        yield backend
    finally:
        backend.close()


def _plan(*faults_: dict[str, object]) -> None:
    faults.install(parse_plan(json.dumps(list(faults_))))


def test_every_protocol_method_is_wrapped_with_two_points() -> None:
    methods = protocol_methods()
    assert {"create_port", "delete_port", "add_subports", "close"} <= methods
    # Defined on the class itself, not reached through __getattr__.
    assert methods <= set(vars(FaultyBackend))
    assert fault_points() == {f"backend.{m}" for m in methods} | {
        f"backend.{m}:after" for m in methods
    }


def test_passes_calls_through_and_is_a_backend(inner: EmbeddedBackend) -> None:
    backend = FaultyBackend(inner)
    assert isinstance(backend, Backend)
    assert backend.name == inner.name
    net = backend.create_network(ADMIN, NetworkCreate(name=unique("net")))
    backend.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.7.0/24"))
    port = backend.create_port(ADMIN, PortCreate(network_id=net.id))
    assert backend.get_port(ADMIN, port.id) == inner.get_port(ADMIN, port.id)
    assert [p.id for p in backend.list_ports(ADMIN, {"network_id": [net.id]})] == [port.id]


def test_fault_before_the_call_means_the_backend_never_saw_it(inner: EmbeddedBackend) -> None:
    _plan({"point": "backend.create_network", "action": "fail", "nth": 2})
    backend = FaultyBackend(inner)
    backend.create_network(ADMIN, NetworkCreate(name="first"))
    with pytest.raises(InjectedFault, match=r"at backend\.create_network \(hit 2"):
        backend.create_network(ADMIN, NetworkCreate(name="second"))
    assert sorted(n.name for n in inner.list_networks(ADMIN)) == ["first"]


def test_fault_after_the_call_means_the_work_is_done_but_unheard(
    inner: EmbeddedBackend,
) -> None:
    net = inner.create_network(ADMIN, NetworkCreate(name=unique("net")))
    inner.create_subnet(ADMIN, SubnetCreate(network_id=net.id, cidr="198.18.8.0/24"))
    _plan({"point": "backend.create_port:after", "action": "fail"})
    backend = FaultyBackend(inner)
    with pytest.raises(InjectedFault, match=r"backend\.create_port:after"):
        backend.create_port(ADMIN, PortCreate(network_id=net.id, name="orphan"))
    assert [p.name for p in inner.list_ports(ADMIN)] == ["orphan"]


def test_open_backend_wraps_only_under_a_plan(tmp_path: Path) -> None:
    config = load_config(state_dir=tmp_path)
    faults.install(None)
    plain = open_backend(config)
    try:
        assert type(plain) is EmbeddedBackend
    finally:
        plain.close()

    _plan({"point": "backend.delete_port", "action": "fail"})
    wrapped = open_backend(config)
    try:
        assert isinstance(wrapped, FaultyBackend)
        assert isinstance(wrapped.inner, EmbeddedBackend)
    finally:
        wrapped.close()


def test_open_backend_refuses_a_plan_naming_no_backend_method(tmp_path: Path) -> None:
    _plan({"point": "backend.create_prot", "action": "fail"})
    unknown = r"no Backend method for point\(s\) backend\.create_prot$"
    with pytest.raises(FaultPlanError, match=unknown):
        open_backend(load_config(state_dir=tmp_path))
