"""The Neutron backend against a real Neutron (ML2/OVN): what reaches OVN's
northbound database, compare-and-swap updates, and identity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podwire import errors
from podwire.backends.neutron import NeutronBackend
from podwire.model import (
    Context,
    NetworkCreate,
    PortCreate,
    PortUpdate,
    SubnetCreate,
    SubPort,
    TrunkCreate,
)
from tests.fixtures.common import unique
from tests.fixtures.neutron import NeutronApi

pytestmark = [pytest.mark.neutron]


@pytest.fixture
def member(neutron_api: NeutronApi) -> Iterator[tuple[NeutronBackend, Context]]:
    project = unique("pw12p", 12)
    backend = NeutronBackend(neutron_api.sdk(project))
    try:
        yield backend, Context(project_id=project)
    finally:
        ctx = Context(project_id=project)
        for trunk in backend.list_trunks(ctx):
            backend.delete_trunk(ctx, trunk.id)
        for port in backend.list_ports(ctx):
            backend.delete_port(ctx, port.id)
        for net in backend.list_networks(ctx, {"project_id": [project]}):
            backend.delete_network(ctx, net.id)
        backend.close()


def _lsp(api: NeutronApi, port_id: str, column: str) -> str:
    return api.nbctl(
        "--bare", f"--columns={column}", "find", "Logical_Switch_Port", f"name={port_id}"
    ).strip()


def test_trunk_subport_is_an_ovn_child_port(
    neutron_api: NeutronApi, member: tuple[NeutronBackend, Context]
) -> None:
    backend, ctx = member
    net = backend.create_network(ctx, NetworkCreate(name=unique("pw12t")))
    backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.120.0/24"))
    parent = backend.create_port(ctx, PortCreate(network_id=net.id))
    child = backend.create_port(ctx, PortCreate(network_id=net.id))
    trunk = backend.create_trunk(ctx, TrunkCreate(port_id=parent.id))
    trunk = backend.add_subports(ctx, trunk.id, [SubPort(port_id=child.id, segmentation_id=101)])
    assert [(s.port_id, s.segmentation_id) for s in trunk.sub_ports] == [(child.id, 101)]
    # What the nested VLAN kind relies on: OVN's container-in-VM port.
    assert _lsp(neutron_api, child.id, "parent_name") == parent.id
    assert _lsp(neutron_api, child.id, "tag_request") == "101" or (
        _lsp(neutron_api, child.id, "tag") == "101"
    )
    trunk = backend.remove_subports(ctx, trunk.id, [child.id])
    assert trunk.sub_ports == []
    assert _lsp(neutron_api, child.id, "parent_name") == ""


def test_update_port_if_revision(member: tuple[NeutronBackend, Context]) -> None:
    backend, ctx = member
    net = backend.create_network(ctx, NetworkCreate(name=unique("pw12r")))
    backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.121.0/24"))
    port = backend.create_port(ctx, PortCreate(network_id=net.id))
    revision = getattr(port, "revision_number", None)
    if revision is None:  # the model gains revision_number with issue 9
        revision = backend.connection.network.get_port(port.id).revision_number
    renamed = backend.update_port(ctx, port.id, PortUpdate(name="a"), if_revision=revision)
    assert renamed.name == "a"
    with pytest.raises(errors.PreconditionFailed) as err:
        backend.update_port(ctx, port.id, PortUpdate(name="b"), if_revision=revision)
    assert err.value.http_status == 412
    assert backend.get_port(ctx, port.id).name == "a"


def test_identity_is_the_sessions(
    neutron_api: NeutronApi, member: tuple[NeutronBackend, Context]
) -> None:
    """The Context a caller passes does not make it someone else."""
    backend, ctx = member
    net = backend.create_network(ctx, NetworkCreate(name=unique("pw12i")))
    assert net.project_id == ctx.project_id
    stranger = NeutronBackend(neutron_api.sdk(unique("pw12s", 12)))
    try:
        with pytest.raises(errors.NotFound):
            stranger.get_network(ctx, net.id)  # the ctx names the owner; the session does not
    finally:
        stranger.close()


def test_unreachable_neutron_is_unavailable() -> None:
    from tests.fixtures.server import free_port

    with (
        NeutronBackend.at(f"http://127.0.0.1:{free_port()}") as nowhere,
        pytest.raises(errors.Unavailable),
    ):
        nowhere.list_networks(Context(project_id="x"))
