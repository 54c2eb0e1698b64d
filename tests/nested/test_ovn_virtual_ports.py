"""The OVN rows of a nested container's unbound port, in a real northbound
database: ML2/OVN's ``virtual`` port for an unbound port whose address is
another port's allowed-address-pair, and the pair MACs on the parent's
addresses (podwire/backends/ovn/virtual.py). Traffic through these rows is
proven in a VM by test_in_vm_ovn.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from podwire.backends.ovn import OvnBackend
from podwire.errors import Conflict
from podwire.model import (
    AllowedAddressPair,
    Context,
    FixedIpRequest,
    Network,
    NetworkCreate,
    PortBinding,
    PortCreate,
    PortUpdate,
    SubnetCreate,
)
from tests.fixtures.ovn import OvsdbServer

pytestmark = pytest.mark.ovn

CTX = Context(project_id="pwo-p1")


def _row(nb: OvsdbServer, port_id: str) -> dict[str, str]:
    out = subprocess.run(
        [
            *("ovn-nbctl", f"--db={nb.remote}", "--bare", "--columns=type,options,addresses"),
            *("list", "Logical_Switch_Port", port_id),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    kind, options, addresses = (line.strip() for line in out[:3])
    return {"type": kind, "options": options, "addresses": addresses}


@pytest.fixture
def world(ovn_nb: OvsdbServer) -> Iterator[tuple[OvnBackend, Network]]:
    backend = OvnBackend([ovn_nb.remote])
    try:
        net = backend.create_network(CTX, NetworkCreate(name="pwo-virt"))
        backend.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="198.18.220.0/24"))
        backend.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="2001:db8:9220::/64"))
        yield backend, net
    finally:
        backend.close()


def test_a_container_port_on_the_vm_ports_pairs_becomes_virtual(
    ovn_nb: OvsdbServer, world: tuple[OvnBackend, Network]
) -> None:
    backend, net = world
    vm = backend.create_port(CTX, PortCreate(network_id=net.id, device_owner="compute:pwo"))
    box = backend.create_port(CTX, PortCreate(network_id=net.id, device_owner="podwire:cni"))
    # Unbound, but no port's pairs hold its addresses yet: a plain port.
    assert _row(ovn_nb, box.id)["type"] == ""
    v4 = next(f.ip_address for f in box.fixed_ips if ":" not in f.ip_address)
    v6 = next(f.ip_address for f in box.fixed_ips if ":" in f.ip_address)
    # macvlan: the container's own MAC on the pairs.
    pairs = [AllowedAddressPair(ip_address=ip, mac_address=box.mac_address) for ip in (v4, v6)]
    backend.update_port(CTX, vm.id, PortUpdate(allowed_address_pairs=pairs))
    row = _row(ovn_nb, box.id)
    assert row["type"] == "virtual"
    assert f"virtual-ip={v4}" in row["options"] and f"virtual-parents={vm.id}" in row["options"]
    # Its MAC and addresses are the VM port's to answer for: none on the row.
    assert row["addresses"] == ""
    # The pair MAC is a bare entry of the VM port's addresses: L2 lookup
    # sends frames for it to the VM's port.
    assert box.mac_address in _row(ovn_nb, vm.id)["addresses"]
    # OVSDB keeps addresses as an unordered set: the VM port still reads as
    # its own MAC and addresses, also without any fixed IP.
    assert backend.get_port(CTX, vm.id).mac_address == vm.mac_address
    bare = backend.create_port(
        CTX,
        PortCreate(
            network_id=net.id,
            fixed_ips=[],
            allowed_address_pairs=[
                AllowedAddressPair(ip_address="198.18.220.99", mac_address="02:00:00:00:00:01")
            ],
        ),
    )
    assert backend.get_port(CTX, bare.id).mac_address == bare.mac_address
    # The API's view of the container's port is unchanged by its row's type.
    again = backend.get_port(CTX, box.id)
    assert again.mac_address == box.mac_address and again.fixed_ips == box.fixed_ips

    # The parked addresses are still taken: IPAM does not give them again.
    with pytest.raises(Conflict):
        backend.create_port(
            CTX, PortCreate(network_id=net.id, fixed_ips=[FixedIpRequest(ip_address=v4)])
        )
    # A change of the container's own port keeps it virtual.
    backend.update_port(CTX, box.id, PortUpdate(name="pwo-box"))
    assert _row(ovn_nb, box.id)["type"] == "virtual"
    assert backend.get_port(CTX, box.id).fixed_ips == box.fixed_ips

    backend.update_port(CTX, vm.id, PortUpdate(allowed_address_pairs=[]))
    row = _row(ovn_nb, box.id)
    assert row["type"] == "" and "virtual" not in row["options"]
    assert row["addresses"].startswith(box.mac_address), row
    assert box.mac_address not in _row(ovn_nb, vm.id)["addresses"]


def test_ipvlan_pairs_and_the_parents_deletion(
    ovn_nb: OvsdbServer, world: tuple[OvnBackend, Network]
) -> None:
    backend, net = world
    vm = backend.create_port(CTX, PortCreate(network_id=net.id))
    box = backend.create_port(CTX, PortCreate(network_id=net.id))
    v6 = next(f.ip_address for f in box.fixed_ips if ":" in f.ip_address)
    # ipvlan: the pair carries no MAC (the VM's own); only the IPv6 address.
    backend.update_port(
        CTX, vm.id, PortUpdate(allowed_address_pairs=[AllowedAddressPair(ip_address=v6)])
    )
    row = _row(ovn_nb, box.id)
    assert row["type"] == "virtual" and f"virtual-ip={v6}" in row["options"], row
    # A pair without a MAC is the VM's own MAC: no extra address entry.
    assert _row(ovn_nb, vm.id)["addresses"].count(vm.mac_address) == 1
    assert box.mac_address not in _row(ovn_nb, vm.id)["addresses"]
    backend.delete_port(CTX, vm.id)
    assert _row(ovn_nb, box.id)["type"] == ""


def test_a_port_created_after_the_pairs_and_a_bound_port(
    ovn_nb: OvsdbServer, world: tuple[OvnBackend, Network]
) -> None:
    backend, net = world
    vm = backend.create_port(
        CTX,
        PortCreate(
            network_id=net.id,
            allowed_address_pairs=[AllowedAddressPair(ip_address="198.18.220.77")],
        ),
    )
    late = backend.create_port(
        CTX, PortCreate(network_id=net.id, fixed_ips=[FixedIpRequest(ip_address="198.18.220.77")])
    )
    assert _row(ovn_nb, late.id)["type"] == "virtual"
    # A host binds it: a plain port again (Neutron: only unbound ports are virtual).
    backend.update_port(CTX, late.id, PortUpdate(binding=PortBinding(host_id="pwo-host")))
    assert _row(ovn_nb, late.id)["type"] == ""
    assert vm.id != late.id
