"""The nested kinds' backend side on a real (embedded) backend, without a VM:
the tenant check, the VLAN ids of a trunk, undo from the intent alone, and
the pair updates. The data path itself is proven in a VM (tests/nested/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from podwire.backends.embedded import EmbeddedBackend
from podwire.config import Config
from podwire.datapath.vif import MacvlanNested
from podwire.errors import Forbidden
from podwire.kinds.base import AttachmentRef, KindEnv
from podwire.kinds.nested import MacvlanNestedKind, VlanNestedKind
from podwire.model import Context, NetworkCreate, PortCreate, SubnetCreate

ALICE = Context(project_id="alice")
BOB = Context(project_id="bob")


@pytest.fixture
def backend(tmp_path: Path) -> EmbeddedBackend:
    b = EmbeddedBackend(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield b  # type: ignore[misc]
    b.close()


def _world(backend: EmbeddedBackend) -> tuple[str, str]:
    net = backend.create_network(ALICE, NetworkCreate(name="n"))
    backend.create_subnet(ALICE, SubnetCreate(network_id=net.id, cidr="198.18.220.0/24"))
    vm = backend.create_port(ALICE, PortCreate(network_id=net.id, name="vm"))
    return net.id, vm.id


def _env(backend: EmbeddedBackend, ctx: Context, vm_port_id: str) -> KindEnv:
    config = Config.model_validate(
        {"agent": {"node_mode": "nested"}, "nested": {"port_id": vm_port_id, "nic": "eth0"}}
    )
    return KindEnv(config=config, backend=backend, ctx=ctx, uses_network=lambda _: False)


def test_another_projects_vm_port_is_forbidden(backend: EmbeddedBackend) -> None:
    net_id, vm_id = _world(backend)
    kind = VlanNestedKind(_env(backend, BOB, vm_id))
    with pytest.raises(Forbidden, match="own VM's port"):
        kind.vm.port()
    before = backend.get_port(ALICE, vm_id)
    with pytest.raises(Forbidden):
        kind.allocate(AttachmentRef("a1", "c1", "eth0", net_id, vm_id), {})
    assert backend.get_port(ALICE, vm_id) == before
    assert backend.list_trunks(ALICE) == []


def test_vlan_ids_lowest_free_and_released_from_the_intent(backend: EmbeddedBackend) -> None:
    net_id, vm_id = _world(backend)
    kind = VlanNestedKind(_env(backend, ALICE, vm_id))
    made = []
    for n in range(3):
        port = backend.create_port(
            ALICE, PortCreate(network_id=net_id, tags=[f"podwire:attachment=a{n}"])
        )
        data = kind.allocate(AttachmentRef(f"a{n}", f"c{n}", "eth0", net_id, port.id), {})
        made.append((port.id, data))
    assert [d["vlan_id"] for _, d in made] == [1, 2, 3]
    # Released from the step's data; then id 1 is the lowest free again.
    kind.release(made[0][1])
    # Released from the intent alone (the agent died before "done").
    kind.release({"kind": "vlan_nested", "attachment_id": "a1"})
    (trunk,) = backend.list_trunks(ALICE, {"port_id": [vm_id]})
    assert [sp.segmentation_id for sp in trunk.sub_ports] == [3]
    kind.release(made[0][1])  # idempotent
    again = backend.create_port(ALICE, PortCreate(network_id=net_id))
    data = kind.allocate(AttachmentRef("a9", "c9", "eth0", net_id, again.id), {})
    assert data["vlan_id"] == 1


def test_pairs_added_and_removed_from_the_intent(backend: EmbeddedBackend) -> None:
    net_id, vm_id = _world(backend)
    kind = MacvlanNestedKind(_env(backend, ALICE, vm_id))
    port = backend.create_port(ALICE, PortCreate(network_id=net_id))
    ip = port.fixed_ips[0].ip_address
    vif = MacvlanNested(
        port_id=port.id,
        network_id=net_id,
        mac=port.mac_address,
        addresses=(f"{ip}/24",),
        parent_ifname="eth0",
    )
    data = kind.apply_backend(AttachmentRef("a1", "c1", "eth0", net_id, port.id), vif)
    vm = backend.get_port(ALICE, vm_id)
    assert [(p.ip_address, p.mac_address) for p in vm.allowed_address_pairs] == [
        (ip, port.mac_address)
    ]
    assert data["vm_port_id"] == vm_id
    kind.undo_backend({"kind": "macvlan_nested", "attachment_id": "a1", "port_id": port.id})
    assert backend.get_port(ALICE, vm_id).allowed_address_pairs == []
    kind.undo_backend(data)  # idempotent
    assert backend.get_port(ALICE, vm_id).allowed_address_pairs == []
