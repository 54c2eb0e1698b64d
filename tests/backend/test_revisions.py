"""Neutron's revision_number and its conditional update (If-Match), on every
backend of the contract suite: each change of an object bumps its revision;
``update_*(..., if_revision=N)`` applies only at revision N, otherwise it is
PreconditionFailed (a Conflict, HTTP 412) and nothing changes.

A revision only ever grows with each change; by how much is the backend's
business (a real Neutron bumps a network twice for one rename: once for the
network, once for its standard attributes), so clients, like the nested
kinds, rely on "changed means different", never on "+1"."""

from __future__ import annotations

import threading

import pytest

from podwire.backends.base import Backend
from podwire.errors import Conflict, PreconditionFailed
from podwire.model import (
    AllowedAddressPair,
    NetworkUpdate,
    PortUpdate,
    SubnetUpdate,
    SubPort,
    TrunkCreate,
    TrunkUpdate,
)
from tests.backend.helpers import network, port, project, snapshot


def test_every_change_of_a_port_bumps_its_revision(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.40.0/24")
    p = port(backend, ctx, net.id)
    assert backend.get_port(ctx, p.id).revision_number == p.revision_number
    first = backend.update_port(ctx, p.id, PortUpdate(name="a"))
    assert first.revision_number > p.revision_number
    second = backend.update_port(ctx, p.id, PortUpdate(name="b"))
    assert second.revision_number > first.revision_number
    assert backend.get_port(ctx, p.id).revision_number == second.revision_number
    assert [x.revision_number for x in backend.list_ports(ctx, {"id": [p.id]})] == [
        second.revision_number
    ]


def test_networks_subnets_and_trunks_count_revisions(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "198.18.41.0/24")
    assert backend.update_network(ctx, net.id, NetworkUpdate(name="x")).revision_number > (
        net.revision_number
    )
    assert backend.update_subnet(ctx, sub.id, SubnetUpdate(name="x")).revision_number > (
        sub.revision_number
    )
    parent, child = port(backend, ctx, net.id), port(backend, ctx, net.id)
    trunk = backend.create_trunk(ctx, TrunkCreate(port_id=parent.id))
    renamed = backend.update_trunk(ctx, trunk.id, TrunkUpdate(name="t"))
    assert renamed.revision_number > trunk.revision_number
    added = backend.add_subports(ctx, trunk.id, [SubPort(port_id=child.id, segmentation_id=7)])
    assert added.revision_number > renamed.revision_number
    # Becoming a sub-port is a change of the port too (Neutron bumps it).
    assert backend.get_port(ctx, child.id).revision_number > child.revision_number


def test_if_revision_applies_only_at_that_revision(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.42.0/24")
    p = port(backend, ctx, net.id)
    pair = [AllowedAddressPair(ip_address="198.18.42.200")]
    updated = backend.update_port(
        ctx, p.id, PortUpdate(allowed_address_pairs=pair), if_revision=p.revision_number
    )
    assert updated.revision_number > p.revision_number
    before = snapshot(backend)
    with pytest.raises(PreconditionFailed) as err:
        backend.update_port(
            ctx, p.id, PortUpdate(allowed_address_pairs=[]), if_revision=p.revision_number
        )
    assert isinstance(err.value, Conflict) and err.value.http_status == 412
    assert err.value.kind == "port" and err.value.object_id == p.id
    assert str(updated.revision_number) in err.value.message
    assert snapshot(backend) == before
    with pytest.raises(PreconditionFailed):
        backend.update_network(
            ctx, net.id, NetworkUpdate(name="y"), if_revision=net.revision_number + 5
        )
    assert snapshot(backend) == before


def test_read_modify_write_with_retry_loses_no_pair(backend: Backend) -> None:
    """What the nested kinds do: eight writers each add one pair to the same
    port, reading it, writing with if_revision, and reading again on 412."""
    ctx = project()
    net, _ = network(backend, ctx, "198.18.43.0/24")
    p = port(backend, ctx, net.id)
    conflicts: list[int] = []
    failures: list[BaseException] = []

    def add_pair(n: int) -> None:
        try:
            for _ in range(200):
                current = backend.get_port(ctx, p.id)
                pairs = [
                    *current.allowed_address_pairs,
                    AllowedAddressPair(ip_address=f"198.18.43.{100 + n}"),
                ]
                try:
                    backend.update_port(
                        ctx,
                        p.id,
                        PortUpdate(allowed_address_pairs=pairs),
                        if_revision=current.revision_number,
                    )
                    return
                except PreconditionFailed:
                    conflicts.append(n)
            raise AssertionError(f"writer {n} never got its turn")
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=add_pair, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    final = backend.get_port(ctx, p.id)
    assert sorted(a.ip_address for a in final.allowed_address_pairs) == sorted(
        f"198.18.43.{100 + n}" for n in range(8)
    )
    assert final.revision_number >= p.revision_number + 8
