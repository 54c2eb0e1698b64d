"""Several processes on one database: never a duplicate address or MAC.

Runs on a SQLite file and on the private PostgreSQL (``embedded_kind``).
Each child process opens its own EmbeddedBackend on the same URL and they
start at the same moment (a Barrier), as podwire server workers and agents would.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest

from podwire.backends.embedded import EmbeddedBackend
from podwire.model import Context, NetworkCreate, PortCreate, SubnetCreate, TrunkCreate
from tests.fixtures.common import unique

PROCESSES = 4
_mp = multiprocessing.get_context("spawn")


def _run(target: Callable[..., None], args: tuple[Any, ...], n: int = PROCESSES) -> list[Any]:
    # All children wait for each other after connecting, then go at once.
    start = _mp.Barrier(n)
    results = _mp.Queue()
    children = [_mp.Process(target=target, args=(*args, start, results)) for _ in range(n)]
    try:
        for child in children:
            child.start()
        out = [results.get(timeout=120) for _ in children]
        for child in children:
            child.join(30)
        return out
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()


def _network(db_url: str, cidr: str | None) -> tuple[Context, str]:
    ctx = Context(project_id=unique("proj"))
    backend = EmbeddedBackend(db_url)
    try:
        net = backend.create_network(ctx, NetworkCreate(name="race"))
        if cidr is not None:
            backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr=cidr))
        return ctx, net.id
    finally:
        backend.close()


@pytest.mark.slow
def test_processes_fill_a_small_subnet_without_duplicates(embedded_db_url: str) -> None:
    from tests.backend import workers

    ctx, network_id = _network(embedded_db_url, "198.18.40.0/28")  # pool: .2-.14
    outcomes = _run(workers.create_until_exhausted, (embedded_db_url, network_id, ctx.project_id))
    addresses = [a for got, _ in outcomes for a in got]
    shares = [len(got) for got, _ in outcomes]  # how the pool was split, for the failure text
    assert [outcome for _, outcome in outcomes] == ["exhausted"] * PROCESSES, shares
    assert len(addresses) == len(set(addresses)) == 13, shares
    assert sorted(addresses) == sorted(f"198.18.40.{i}" for i in range(2, 15))
    backend = EmbeddedBackend(embedded_db_url)
    try:
        listed = backend.list_ports(ctx)
    finally:
        backend.close()
    assert sorted(ip.ip_address for p in listed for ip in p.fixed_ips) == sorted(addresses)


@pytest.mark.slow
def test_processes_racing_for_one_address(embedded_db_url: str) -> None:
    from tests.backend import workers

    ctx, network_id = _network(embedded_db_url, "198.18.41.0/24")
    outcomes = _run(
        workers.request_one_address,
        (embedded_db_url, network_id, ctx.project_id, "198.18.41.9"),
    )
    assert sorted(outcomes) == ["conflict"] * (PROCESSES - 1) + ["won"]


@pytest.mark.slow
def test_processes_draw_distinct_macs(embedded_db_url: str) -> None:
    from tests.backend import workers

    ctx, network_id = _network(embedded_db_url, None)
    outcomes = _run(workers.create_macs, (embedded_db_url, network_id, ctx.project_id, 30))
    macs = [m for got, _ in outcomes for m in got]
    assert all(outcome in ("done", "exhausted") for _, outcome in outcomes), outcomes
    assert len(macs) == len(set(macs)) >= 100
    assert all(m.startswith("0a:70:77:00:01:") for m in macs)


@pytest.mark.slow
def test_processes_adding_overlapping_subnets(embedded_db_url: str) -> None:
    from tests.backend import workers

    ctx, network_id = _network(embedded_db_url, None)
    outcomes = _run(
        workers.create_subnet, (embedded_db_url, network_id, ctx.project_id, "198.18.42.0/24")
    )
    assert sorted(outcomes) == ["conflict"] * (PROCESSES - 1) + ["won"]
    backend = EmbeddedBackend(embedded_db_url)
    try:
        assert len(backend.get_network(ctx, network_id).subnets) == 1
    finally:
        backend.close()


@pytest.mark.slow
def test_processes_reusing_a_vlan_on_one_trunk(embedded_db_url: str) -> None:
    from tests.backend import workers

    ctx, network_id = _network(embedded_db_url, "198.18.43.0/24")
    backend = EmbeddedBackend(embedded_db_url)
    try:
        parent, *subs = (
            backend.create_port(ctx, PortCreate(network_id=network_id))
            for _ in range(PROCESSES + 1)
        )
        trunk = backend.create_trunk(ctx, TrunkCreate(port_id=parent.id))
        outcomes = _run(
            workers.add_subport,
            (embedded_db_url, trunk.id, ctx.project_id, [p.id for p in subs]),
        )
        assert outcomes.count("won") == 1, outcomes
        assert all(o in ("won", "conflict") for o in outcomes), outcomes
        assert [sp.segmentation_id for sp in backend.get_trunk(ctx, trunk.id).sub_ports] == [100]
    finally:
        backend.close()
