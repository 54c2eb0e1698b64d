"""The Backend contract, written against the protocol only.

Runs on every backend registered in tests/fixtures/backends.py (sqlite and
postgres for the embedded backend; others register their own). Each test
gets a fresh, empty backend.
"""

from __future__ import annotations

import ipaddress

import pytest

from podwire.backends.base import Backend
from podwire.errors import Conflict, Exhausted, Forbidden, InvalidInput, NotFound
from podwire.model import (
    AllocationPool,
    AllowedAddressPair,
    Context,
    FixedIpRequest,
    Network,
    NetworkCreate,
    NetworkUpdate,
    Port,
    PortBinding,
    PortCreate,
    PortUpdate,
    Subnet,
    SubnetCreate,
    SubnetUpdate,
    SubPort,
    Trunk,
    TrunkCreate,
    TrunkUpdate,
    parse,
)
from tests.backend.helpers import ADMIN, addresses, network, port, project, snapshot

# --- networks -------------------------------------------------------------------------


def test_network_defaults_and_roundtrip(backend: Backend) -> None:
    ctx = project()
    net = backend.create_network(ctx, NetworkCreate(name="blue"))
    assert net.project_id == ctx.project_id
    assert net.mtu == 1500
    assert net.network_type == "local"
    assert net.port_security_enabled is True
    assert net.shared is False
    assert net.subnets == []
    assert net.created_at is not None and net.updated_at is not None
    assert net.created_at.tzinfo is not None
    assert backend.get_network(ctx, net.id) == net
    # What the backend returns is a valid model object, not only a lookalike.
    assert Network.model_validate(net.model_dump()) == net


def test_network_update_and_delete(backend: Backend) -> None:
    ctx = project()
    net = backend.create_network(ctx, NetworkCreate(name="a", mtu=9000))
    assert net.mtu == 9000
    updated = backend.update_network(ctx, net.id, NetworkUpdate(name="b", mtu=1400))
    assert (updated.name, updated.mtu) == ("b", 1400)
    assert updated.updated_at is not None and net.updated_at is not None
    assert updated.updated_at >= net.updated_at
    backend.delete_network(ctx, net.id)
    with pytest.raises(NotFound) as err:
        backend.get_network(ctx, net.id)
    assert err.value.kind == "network" and err.value.object_id == net.id
    with pytest.raises(NotFound):
        backend.delete_network(ctx, net.id)


def test_network_delete_removes_its_subnets(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "198.18.1.0/24")
    backend.delete_network(ctx, net.id)
    with pytest.raises(NotFound):
        backend.get_subnet(ctx, sub.id)


def test_delete_network_with_ports_is_conflict(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.1.0/24")
    p = port(backend, ctx, net.id)
    before = snapshot(backend)
    with pytest.raises(Conflict) as err:
        backend.delete_network(ctx, net.id)
    assert err.value.http_status == 409
    assert err.value.kind == "network" and err.value.object_id == net.id
    assert snapshot(backend) == before
    backend.delete_port(ctx, p.id)
    backend.delete_network(ctx, net.id)


def test_network_filters(backend: Backend) -> None:
    ctx = project()
    a = backend.create_network(ctx, NetworkCreate(name="a"))
    b = backend.create_network(ctx, NetworkCreate(name="b", shared=True))
    backend.create_network(ctx, NetworkCreate(name="c", mtu=9000))
    names = lambda nets: sorted(n.name for n in nets)  # noqa: E731
    assert names(backend.list_networks(ctx, {"name": ["a", "b"]})) == ["a", "b"]
    assert names(backend.list_networks(ctx, {"name": ["a", "b"], "shared": ["true"]})) == ["b"]
    assert names(backend.list_networks(ctx, {"mtu": ["9000"]})) == ["c"]
    assert [n.id for n in backend.list_networks(ctx, {"id": [a.id]})] == [a.id]
    assert backend.list_networks(ctx, {"name": ["zzz"]}) == []
    assert {n.id for n in backend.list_networks(ctx)} >= {a.id, b.id}
    with pytest.raises(InvalidInput) as err:
        backend.list_networks(ctx, {"colour": ["red"]})
    assert err.value.field == "colour"


# --- subnets --------------------------------------------------------------------------


def test_subnet_v4_defaults(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "198.18.2.0/24")
    assert sub.ip_version == 4
    assert sub.gateway_ip == "198.18.2.1"
    assert sub.allocation_pools == [AllocationPool(start="198.18.2.2", end="198.18.2.254")]
    assert Subnet.model_validate(sub.model_dump()) == sub
    assert backend.get_network(ctx, net.id).subnets == [sub.id]
    assert backend.get_subnet(ctx, sub.id) == sub


def test_subnet_v6_defaults(backend: Backend) -> None:
    ctx = project()
    _, (sub,) = network(backend, ctx, "2001:db8:1::/64")
    assert sub.ip_version == 6
    assert sub.gateway_ip == "2001:db8:1::1"
    # the subnet-router anycast address (::) and the gateway are not in the pool
    assert sub.allocation_pools == [
        AllocationPool(start="2001:db8:1::2", end="2001:db8:1::ffff:ffff:ffff:ffff")
    ]


def test_subnet_without_gateway_and_explicit_pools(backend: Backend) -> None:
    ctx = project()
    net = backend.create_network(ctx, NetworkCreate())
    bare = backend.create_subnet(
        ctx, SubnetCreate(network_id=net.id, cidr="198.18.3.0/29", gateway_ip=None)
    )
    assert bare.gateway_ip is None
    assert bare.allocation_pools == [AllocationPool(start="198.18.3.1", end="198.18.3.6")]
    pooled = backend.create_subnet(
        ctx,
        SubnetCreate(
            network_id=net.id,
            cidr="198.18.4.0/24",
            gateway_ip="198.18.4.254",
            allocation_pools=[AllocationPool(start="198.18.4.10", end="198.18.4.11")],
            dns_nameservers=["198.18.4.53"],
        ),
    )
    assert pooled.gateway_ip == "198.18.4.254"
    assert pooled.dns_nameservers == ["198.18.4.53"]
    got = [port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=pooled.id)])]
    got.append(port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=pooled.id)]))
    assert sorted(a for p in got for a in addresses(p)) == ["198.18.4.10", "198.18.4.11"]
    with pytest.raises(Exhausted):
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=pooled.id)])


def test_subnet_update(backend: Backend) -> None:
    ctx = project()
    _, (sub,) = network(backend, ctx, "198.18.5.0/24")
    updated = backend.update_subnet(
        ctx, sub.id, SubnetUpdate(name="renamed", dns_nameservers=["198.18.5.53"])
    )
    assert updated.name == "renamed" and updated.dns_nameservers == ["198.18.5.53"]
    assert updated.cidr == sub.cidr


def test_overlapping_subnets_are_conflict_naming_both(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.6.0/24")
    before = snapshot(backend)
    with pytest.raises(Conflict) as err:
        backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.6.128/25"))
    assert "198.18.6.0/24" in err.value.message and "198.18.6.128/25" in err.value.message
    assert err.value.field == "cidr"
    assert snapshot(backend) == before
    # the same cidr in another network is fine (networks are separate L2 domains)
    other, (sub,) = network(backend, ctx, "198.18.6.0/24")
    assert sub.network_id == other.id


def test_gateway_inside_pool_is_refused(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx)
    before = snapshot(backend)
    with pytest.raises(Conflict) as err:
        backend.create_subnet(
            ctx,
            SubnetCreate(
                network_id=net.id,
                cidr="198.18.7.0/24",
                gateway_ip="198.18.7.20",
                allocation_pools=[AllocationPool(start="198.18.7.10", end="198.18.7.30")],
            ),
        )
    assert err.value.field == "gateway_ip"
    with pytest.raises(InvalidInput) as bad:
        backend.create_subnet(
            ctx,
            SubnetCreate(
                network_id=net.id,
                cidr="198.18.7.0/24",
                allocation_pools=[AllocationPool(start="198.18.7.0", end="198.18.7.30")],
            ),
        )
    assert bad.value.field == "allocation_pools"
    assert snapshot(backend) == before


def test_subnet_on_unknown_network(backend: Backend) -> None:
    ctx = project()
    with pytest.raises(NotFound) as err:
        backend.create_subnet(
            ctx,
            SubnetCreate(network_id="00000000-0000-0000-0000-000000000000", cidr="198.18.8.0/24"),
        )
    assert err.value.kind == "network" and err.value.field == "network_id"


def test_delete_subnet_with_allocations_is_conflict(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "198.18.9.0/24")
    p = port(backend, ctx, net.id)
    before = snapshot(backend)
    with pytest.raises(Conflict) as err:
        backend.delete_subnet(ctx, sub.id)
    assert err.value.kind == "subnet" and err.value.object_id == sub.id
    assert snapshot(backend) == before
    backend.delete_port(ctx, p.id)
    backend.delete_subnet(ctx, sub.id)
    assert backend.get_network(ctx, net.id).subnets == []


def test_subnet_filters(backend: Backend) -> None:
    ctx = project()
    net, (v4, v6) = network(backend, ctx, "198.18.10.0/24", "2001:db8:a::/64")
    assert [s.id for s in backend.list_subnets(ctx, {"ip_version": ["6"]})] == [v6.id]
    assert [s.id for s in backend.list_subnets(ctx, {"cidr": ["198.18.10.0/24"]})] == [v4.id]
    assert {s.id for s in backend.list_subnets(ctx, {"network_id": [net.id]})} == {v4.id, v6.id}


# --- ports and IPAM ----------------------------------------------------------------------


def test_port_defaults(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "198.18.11.0/24")
    p = port(backend, ctx, net.id, device_id="c1", name="eth0")
    assert p.project_id == ctx.project_id
    assert p.network_id == net.id
    assert p.mac_address.startswith("0a:70:77:")
    assert [(ip.subnet_id, ip.ip_address) for ip in p.fixed_ips] == [(sub.id, "198.18.11.2")]
    assert p.status == "DOWN"
    assert p.port_security_enabled is True
    assert p.binding == PortBinding()
    assert p.parent_port_id is None and p.segmentation_id is None
    assert Port.model_validate(p.model_dump()) == p
    assert backend.get_port(ctx, p.id) == p
    assert backend.list_ports(ctx) == [p]


def test_port_security_follows_network(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.12.0/24", port_security_enabled=False)
    assert port(backend, ctx, net.id).port_security_enabled is False
    assert port(backend, ctx, net.id, port_security_enabled=True).port_security_enabled is True


def test_dual_stack_port_gets_one_address_per_subnet(backend: Backend) -> None:
    ctx = project()
    net, (v4, v6) = network(backend, ctx, "198.18.13.0/24", "2001:db8:d::/64")
    p = port(backend, ctx, net.id)
    by_subnet = {ip.subnet_id: ip.ip_address for ip in p.fixed_ips}
    assert len(p.fixed_ips) == 2 and set(by_subnet) == {v4.id, v6.id}
    assert ipaddress.ip_address(by_subnet[v4.id]) in ipaddress.ip_network(v4.cidr)
    six = ipaddress.ip_address(by_subnet[v6.id])
    assert six in ipaddress.ip_network(v6.cidr)
    assert str(six) not in ("2001:db8:d::", "2001:db8:d::1")
    only_v6 = port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=v6.id)])
    assert [ip.subnet_id for ip in only_v6.fixed_ips] == [v6.id]
    none = port(backend, ctx, net.id, fixed_ips=[])
    assert none.fixed_ips == []
    many = [port(backend, ctx, net.id) for _ in range(20)]
    every = [a for p in [p, only_v6, *many] for a in addresses(p)]
    assert len(every) == len(set(every))


def test_requested_fixed_ips(backend: Backend) -> None:
    ctx = project()
    net, (v4, v6) = network(backend, ctx, "198.18.14.0/24", "2001:db8:e::/64")
    p = port(
        backend,
        ctx,
        net.id,
        fixed_ips=[
            FixedIpRequest(subnet_id=v4.id, ip_address="198.18.14.77"),
            FixedIpRequest(ip_address="2001:db8:e::77"),
        ],
    )
    assert [(ip.subnet_id, ip.ip_address) for ip in p.fixed_ips] == [
        (v4.id, "198.18.14.77"),
        (v6.id, "2001:db8:e::77"),
    ]
    before = snapshot(backend)
    with pytest.raises(Conflict) as taken:
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(ip_address="198.18.14.77")])
    assert taken.value.field == "fixed_ips" and "198.18.14.77" in taken.value.message
    with pytest.raises(InvalidInput) as outside:
        port(
            backend,
            ctx,
            net.id,
            fixed_ips=[FixedIpRequest(subnet_id=v4.id, ip_address="198.19.0.5")],
        )
    assert outside.value.field == "fixed_ips"
    with pytest.raises(InvalidInput) as nowhere:
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(ip_address="198.19.0.5")])
    assert nowhere.value.field == "fixed_ips"
    with pytest.raises(Conflict) as gateway:
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(ip_address="198.18.14.1")])
    assert gateway.value.field == "fixed_ips"
    with pytest.raises(InvalidInput):
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(ip_address="198.18.14.255")])
    other, (other_sub,) = network(backend, ctx, "198.18.15.0/24")
    with pytest.raises(InvalidInput) as foreign:
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=other_sub.id)])
    assert foreign.value.field == "fixed_ips"
    # a refused dual-stack request keeps none of its addresses
    before = snapshot(backend)
    with pytest.raises(Conflict):
        port(
            backend,
            ctx,
            net.id,
            fixed_ips=[
                FixedIpRequest(subnet_id=v4.id),
                FixedIpRequest(ip_address="2001:db8:e::77"),
            ],
        )
    assert snapshot(backend) == before
    assert addresses(port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=v4.id)])) == [
        "198.18.14.2"
    ]
    assert other.id != net.id


def test_v6_subnet_router_address_is_never_handed_out_nor_taken(backend: Backend) -> None:
    # One IPAM (podwire/ipam.py) whatever the storage: the IPv6 subnet-router
    # anycast address is in no pool, so no free pick takes it, and a caller
    # naming it is refused, as Neutron does.
    ctx = project()
    net, (sub,) = network(backend, ctx, "2001:db8:1f::/125")
    assert sub.allocation_pools == [AllocationPool(start="2001:db8:1f::2", end="2001:db8:1f::7")]
    picked = [addresses(port(backend, ctx, net.id))[0] for _ in range(6)]
    assert sorted(picked) == [f"2001:db8:1f::{i}" for i in range(2, 8)]
    with pytest.raises(Exhausted):
        port(backend, ctx, net.id)
    before = snapshot(backend)
    with pytest.raises(InvalidInput, match="subnet-router anycast"):
        port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(ip_address="2001:db8:1f::")])
    assert snapshot(backend) == before


def test_full_subnet_is_exhausted_and_changes_nothing(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "198.18.16.0/29")  # pool .2-.6: five addresses
    got = [port(backend, ctx, net.id) for _ in range(5)]
    assert sorted(a for p in got for a in addresses(p)) == [f"198.18.16.{i}" for i in range(2, 7)]
    before = snapshot(backend)
    with pytest.raises(Exhausted) as err:
        port(backend, ctx, net.id)
    assert err.value.http_status == 409
    assert err.value.object_id == sub.id
    assert snapshot(backend) == before
    # a freed address is handed out again
    backend.delete_port(ctx, got[2].id)
    assert addresses(port(backend, ctx, net.id)) == addresses(got[2])


def test_big_v6_subnet_allocates_quickly(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "2001:db8:f::/48")
    got = [port(backend, ctx, net.id) for _ in range(30)]
    every = [a for p in got for a in addresses(p)]
    assert len(set(every)) == 30
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(sub.cidr) for a in every)


def test_mac_addresses(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.17.0/24")
    p = port(backend, ctx, net.id, mac_address="0A-70-77-00-00-01")
    assert p.mac_address == "0a:70:77:00:00:01"
    before = snapshot(backend)
    with pytest.raises(Conflict) as err:
        port(backend, ctx, net.id, mac_address="0a:70:77:00:00:01")
    assert err.value.field == "mac_address"
    assert snapshot(backend) == before
    macs = {port(backend, ctx, net.id, fixed_ips=[]).mac_address for _ in range(50)}
    assert len(macs) == 50 and all(m.startswith("0a:70:77:") for m in macs)


def test_port_update(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.18.0/24")
    p = port(backend, ctx, net.id)
    updated = backend.update_port(
        ctx,
        p.id,
        PortUpdate(
            device_id="container-1",
            device_owner="compute:podwire",
            status="ACTIVE",
            binding=PortBinding(host_id="host-a", vif_type="bridge", vif_details={"mtu": 1500}),
            port_security_enabled=False,
            name="renamed",
        ),
    )
    assert updated.device_id == "container-1"
    assert updated.device_owner == "compute:podwire"
    assert updated.status == "ACTIVE"
    assert updated.binding.host_id == "host-a"
    assert updated.binding.vif_details == {"mtu": 1500}
    assert updated.port_security_enabled is False
    assert updated.fixed_ips == p.fixed_ips and updated.mac_address == p.mac_address
    assert backend.get_port(ctx, p.id) == updated
    # the binding is replaced as a whole (the API merges Neutron's binding:* one by one)
    moved = backend.update_port(ctx, p.id, PortUpdate(binding=PortBinding(host_id="host-b")))
    # A backend that decides the VIF type (OVN) answers it for a port bound
    # to a host; the others keep "unbound" as asked.
    decided = moved.binding.vif_type
    assert decided == (backend.bound_vif_type or "unbound")
    assert moved.binding == PortBinding(host_id="host-b", vif_type=decided)
    assert backend.get_port(ctx, p.id).binding == moved.binding


def test_set_ports_status_marks_the_ports_named_and_skips_missing_ones(backend: Backend) -> None:
    # Status is admin/service-only by Neutron's default policy: the agent
    # writes it with its service role, as ADMIN here.
    ctx = project()
    net, _ = network(backend, ctx, "198.18.23.0/24")
    mine = [port(backend, ctx, net.id, name=f"mine{i}") for i in range(3)]
    missing = "00000000-0000-0000-0000-00000000dead"
    # A port gone meanwhile is skipped, not an error.
    backend.set_ports_status(ADMIN, [mine[0].id, missing, mine[1].id], "ACTIVE")
    backend.set_ports_status(ADMIN, [], "ACTIVE")  # nothing to do is fine
    if backend.derives_port_status:
        return  # status is the data plane's there (OVN, Neutron); the call must not fail
    after = [backend.get_port(ctx, p.id) for p in mine]
    assert [p.status for p in after] == ["ACTIVE", "ACTIVE", mine[2].status]
    assert after[0].revision_number > mine[0].revision_number
    assert after[2].revision_number == mine[2].revision_number


def test_port_update_fixed_ips(backend: Backend) -> None:
    ctx = project()
    net, (v4, v6) = network(backend, ctx, "198.18.19.0/24", "2001:db8:13::/64")
    p = port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(subnet_id=v4.id)])
    first = p.fixed_ips[0].ip_address
    # keep the v4 address (subnet-only request), add a v6 one and a named v4 one
    updated = backend.update_port(
        ctx,
        p.id,
        PortUpdate(
            fixed_ips=[
                FixedIpRequest(subnet_id=v4.id),
                FixedIpRequest(subnet_id=v6.id),
                FixedIpRequest(ip_address="198.18.19.50"),
            ]
        ),
    )
    assert [ip.subnet_id for ip in updated.fixed_ips] == [v4.id, v6.id, v4.id]
    assert updated.fixed_ips[0].ip_address == first
    assert updated.fixed_ips[2].ip_address == "198.18.19.50"
    # drop all but the named address: the others are free again
    final = backend.update_port(
        ctx, p.id, PortUpdate(fixed_ips=[FixedIpRequest(ip_address="198.18.19.50")])
    )
    assert addresses(final) == ["198.18.19.50"]
    other = port(backend, ctx, net.id, fixed_ips=[FixedIpRequest(ip_address=first)])
    assert addresses(other) == [first]
    before = snapshot(backend)
    with pytest.raises(Conflict):
        backend.update_port(ctx, p.id, PortUpdate(fixed_ips=[FixedIpRequest(ip_address=first)]))
    assert snapshot(backend) == before
    assert backend.list_ports(ctx, {"fixed_ips.ip_address": ["198.18.19.50"]}) == [final]


def test_allowed_address_pairs(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.20.0/24")
    pairs = [
        AllowedAddressPair(ip_address="198.18.20.100"),
        AllowedAddressPair(ip_address="198.18.21.0/24", mac_address="0a:70:77:aa:bb:cc"),
        AllowedAddressPair(ip_address="2001:db8:14::/64"),
    ]
    p = port(backend, ctx, net.id, allowed_address_pairs=pairs)
    assert p.allowed_address_pairs == pairs
    assert backend.get_port(ctx, p.id).allowed_address_pairs == pairs
    updated = backend.update_port(ctx, p.id, PortUpdate(allowed_address_pairs=pairs[:1]))
    assert updated.allowed_address_pairs == pairs[:1]
    cleared = backend.update_port(ctx, p.id, PortUpdate(allowed_address_pairs=[]))
    assert cleared.allowed_address_pairs == []
    before = snapshot(backend)
    with pytest.raises(InvalidInput) as err:
        backend.update_port(ctx, p.id, PortUpdate(allowed_address_pairs=[pairs[0], pairs[0]]))
    assert err.value.field == "allowed_address_pairs"
    assert snapshot(backend) == before


def test_port_filters(backend: Backend) -> None:
    ctx = project()
    net, (v4, v6) = network(backend, ctx, "198.18.22.0/24", "2001:db8:16::/64")
    other, _ = network(backend, ctx, "198.18.23.0/24")
    a = port(backend, ctx, net.id, device_id="ctr-a", name="a")
    b = port(backend, ctx, net.id, device_id="ctr-b", name="b")
    c = port(backend, ctx, other.id, device_id="ctr-a", name="c")
    ids = lambda ports: sorted(p.id for p in ports)  # noqa: E731
    assert ids(backend.list_ports(ctx, {"device_id": ["ctr-a"]})) == sorted([a.id, c.id])
    assert ids(backend.list_ports(ctx, {"device_id": ["ctr-a"], "network_id": [net.id]})) == [a.id]
    assert ids(backend.list_ports(ctx, {"name": ["a", "b"]})) == sorted([a.id, b.id])
    ip_b = b.fixed_ips[0].ip_address
    assert ids(backend.list_ports(ctx, {"fixed_ips.ip_address": [ip_b]})) == [b.id]
    v6_a = a.fixed_ips[1].ip_address
    assert ids(backend.list_ports(ctx, {"fixed_ips.ip_address": [ip_b, v6_a]})) == sorted(
        [a.id, b.id]
    )
    assert ids(backend.list_ports(ctx, {"fixed_ips.subnet_id": [v6.id]})) == sorted([a.id, b.id])
    assert ids(backend.list_ports(ctx, {"mac_address": [c.mac_address]})) == [c.id]
    assert backend.list_ports(ctx, {"device_id": ["nobody"]}) == []
    assert v4.id in {ip.subnet_id for ip in a.fixed_ips}
    with pytest.raises(InvalidInput):
        backend.list_ports(ctx, {"no_such_field": ["x"]})


def test_port_tags_are_kept_and_filtered(backend: Backend) -> None:
    """Neutron's tags: podwire's ownership mark on the ports it creates."""
    ctx = project()
    net, _ = network(backend, ctx, "198.18.24.0/24")
    mine = ["podwire:host=h1", "podwire:purpose=attachment"]
    a = port(backend, ctx, net.id, tags=mine)
    b = port(backend, ctx, net.id, tags=["podwire:host=h2", "podwire:purpose=attachment"])
    c = port(backend, ctx, net.id)
    assert a.tags == mine and c.tags == []
    assert backend.get_port(ctx, a.id).tags == mine
    ids = lambda ports: sorted(p.id for p in ports)  # noqa: E731
    assert ids(backend.list_ports(ctx, {"tags": mine})) == [a.id]
    assert ids(backend.list_ports(ctx, {"tags": [",".join(mine)]})) == [a.id]
    assert ids(backend.list_ports(ctx, {"tags": ["podwire:purpose=attachment"]})) == sorted(
        [a.id, b.id]
    )
    any_host = {"tags-any": ["podwire:host=h1", "podwire:host=h2"]}
    assert ids(backend.list_ports(ctx, any_host)) == sorted([a.id, b.id])
    assert backend.list_ports(ctx, {"tags": ["podwire:host=h3"]}) == []
    # Tags combine with the other filters, and an update replaces them.
    assert ids(backend.list_ports(ctx, {"tags": mine, "network_id": [net.id]})) == [a.id]
    updated = backend.update_port(ctx, c.id, PortUpdate(tags=["x"]))
    assert updated.tags == ["x"] == backend.get_port(ctx, c.id).tags
    assert backend.update_port(ctx, c.id, PortUpdate(name="n")).tags == ["x"]


def test_unknown_objects_are_not_found(backend: Backend) -> None:
    ctx = project()
    missing = "00000000-0000-0000-0000-00000000dead"
    for call in (
        backend.get_network,
        backend.get_subnet,
        backend.get_port,
        backend.get_trunk,
        backend.delete_network,
        backend.delete_subnet,
        backend.delete_port,
        backend.delete_trunk,
    ):
        with pytest.raises(NotFound) as err:
            call(ctx, missing)
        assert err.value.object_id == missing and err.value.http_status == 404
    with pytest.raises(NotFound) as err:
        port(backend, ctx, missing)
    assert err.value.kind == "network" and err.value.field == "network_id"


# --- trunks ---------------------------------------------------------------------------------


def _trunk_setup(backend: Backend) -> tuple[Context, list[Port]]:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.24.0/24")
    ports = [port(backend, ctx, net.id, name=f"p{i}") for i in range(5)]
    return ctx, ports


def test_trunk_with_subports(backend: Backend) -> None:
    ctx, (parent, s1, s2, s3, _) = _trunk_setup(backend)
    trunk = backend.create_trunk(
        ctx,
        TrunkCreate(
            port_id=parent.id,
            name="t",
            sub_ports=[
                SubPort(port_id=s1.id, segmentation_id=101),
                SubPort(port_id=s2.id, segmentation_id=102),
            ],
        ),
    )
    assert trunk.port_id == parent.id
    assert {(sp.port_id, sp.segmentation_id) for sp in trunk.sub_ports} == {
        (s1.id, 101),
        (s2.id, 102),
    }
    assert Trunk.model_validate(trunk.model_dump()) == trunk
    sub = backend.get_port(ctx, s1.id)
    assert (sub.parent_port_id, sub.segmentation_id) == (parent.id, 101)
    assert backend.get_trunk(ctx, trunk.id) == trunk
    assert backend.list_trunks(ctx, {"port_id": [parent.id]}) == [trunk]

    grown = backend.add_subports(ctx, trunk.id, [SubPort(port_id=s3.id, segmentation_id=4094)])
    assert {sp.segmentation_id for sp in grown.sub_ports} == {101, 102, 4094}
    shrunk = backend.remove_subports(ctx, trunk.id, [s1.id])
    assert {sp.port_id for sp in shrunk.sub_ports} == {s2.id, s3.id}
    freed = backend.get_port(ctx, s1.id)
    assert (freed.parent_port_id, freed.segmentation_id) == (None, None)
    renamed = backend.update_trunk(ctx, trunk.id, TrunkUpdate(name="t2"))
    assert renamed.name == "t2"


def test_trunk_rules(backend: Backend) -> None:
    ctx, (parent, s1, s2, s3, other_parent) = _trunk_setup(backend)
    c = ctx
    trunk = backend.create_trunk(
        c,
        TrunkCreate(port_id=parent.id, sub_ports=[SubPort(port_id=s1.id, segmentation_id=10)]),
    )
    before = snapshot(backend)
    # VLAN id reused on the trunk
    with pytest.raises(Conflict) as reused:
        backend.add_subports(c, trunk.id, [SubPort(port_id=s2.id, segmentation_id=10)])
    assert reused.value.field == "sub_ports" and "10" in reused.value.message
    # a batch where the second fails leaves the first out too
    with pytest.raises(Conflict):
        backend.add_subports(
            c,
            trunk.id,
            [
                SubPort(port_id=s2.id, segmentation_id=20),
                SubPort(port_id=s3.id, segmentation_id=10),
            ],
        )
    # the parent as its own sub-port
    with pytest.raises(Conflict):
        backend.add_subports(c, trunk.id, [SubPort(port_id=parent.id, segmentation_id=30)])
    # a second trunk on the same parent
    with pytest.raises(Conflict) as twice:
        backend.create_trunk(c, TrunkCreate(port_id=parent.id))
    assert twice.value.field == "port_id"
    # a sub-port as a parent
    with pytest.raises(Conflict):
        backend.create_trunk(c, TrunkCreate(port_id=s1.id))
    # a port in two trunks
    with pytest.raises(Conflict):
        backend.create_trunk(
            c,
            TrunkCreate(
                port_id=other_parent.id, sub_ports=[SubPort(port_id=s1.id, segmentation_id=11)]
            ),
        )
    # another trunk's parent as a sub-port
    with pytest.raises(Conflict):
        backend.add_subports(c, trunk.id, [SubPort(port_id=parent.id, segmentation_id=12)])
    # unknown sub-port / removing a port that is not a sub-port
    with pytest.raises(NotFound):
        backend.add_subports(
            c,
            trunk.id,
            [SubPort(port_id="00000000-0000-0000-0000-000000000001", segmentation_id=13)],
        )
    with pytest.raises(NotFound):
        backend.remove_subports(c, trunk.id, [s2.id])
    # deleting the parent or a sub-port while the trunk holds them
    with pytest.raises(Conflict):
        backend.delete_port(c, parent.id)
    with pytest.raises(Conflict):
        backend.delete_port(c, s1.id)
    assert snapshot(backend) == before

    backend.delete_trunk(c, trunk.id)
    with pytest.raises(NotFound):
        backend.get_trunk(c, trunk.id)
    assert backend.get_port(c, s1.id).parent_port_id is None
    backend.delete_port(c, parent.id)
    backend.delete_port(c, s1.id)


# --- projects -------------------------------------------------------------------------------


def test_projects_are_isolated(backend: Backend) -> None:
    alice, bob = project(), project()
    net, (sub,) = network(backend, alice, "198.18.25.0/24")
    p = port(backend, alice, net.id)
    q = port(backend, alice, net.id)
    trunk = backend.create_trunk(alice, TrunkCreate(port_id=p.id))
    before = snapshot(backend)

    assert backend.list_networks(bob) == []
    assert backend.list_subnets(bob) == []
    assert backend.list_ports(bob) == []
    assert backend.list_trunks(bob) == []
    for get, oid in (
        (backend.get_network, net.id),
        (backend.get_subnet, sub.id),
        (backend.get_port, p.id),
        (backend.get_trunk, trunk.id),
        (backend.delete_network, net.id),
        (backend.delete_subnet, sub.id),
        (backend.delete_port, q.id),
        (backend.delete_trunk, trunk.id),
    ):
        with pytest.raises(NotFound):
            get(bob, oid)
    with pytest.raises(NotFound):
        backend.update_network(bob, net.id, NetworkUpdate(name="mine"))
    with pytest.raises(NotFound):
        backend.update_port(bob, p.id, PortUpdate(device_id="mine"))
    with pytest.raises(NotFound):
        port(backend, bob, net.id)
    with pytest.raises(NotFound):
        backend.create_subnet(bob, SubnetCreate(network_id=net.id, cidr="198.18.26.0/24"))
    with pytest.raises(NotFound):
        backend.add_subports(bob, trunk.id, [SubPort(port_id=q.id, segmentation_id=5)])
    bob_net, _ = network(backend, bob, "198.18.27.0/24")
    bob_port = port(backend, bob, bob_net.id)
    # bob cannot put alice's port into his trunk, nor make it a parent
    with pytest.raises(NotFound):
        backend.create_trunk(bob, TrunkCreate(port_id=q.id))
    with pytest.raises(NotFound):
        backend.create_trunk(
            bob,
            TrunkCreate(port_id=bob_port.id, sub_ports=[SubPort(port_id=q.id, segmentation_id=5)]),
        )
    after = snapshot(backend)
    assert {k: [o for o in v if o["project_id"] != bob.project_id] for k, v in after.items()} == {
        k: [o for o in v if o["project_id"] != bob.project_id] for k, v in before.items()
    }
    assert backend.list_ports(alice, {"project_id": [bob.project_id]}) == []


def test_shared_network(backend: Backend) -> None:
    owner, guest = project(), project()
    net, (sub,) = network(backend, owner, "198.18.28.0/24", shared=True)
    assert [n.id for n in backend.list_networks(guest)] == [net.id]
    assert backend.get_subnet(guest, sub.id) == sub
    assert [s.id for s in backend.list_subnets(guest)] == [sub.id]
    guest_port = port(backend, guest, net.id)
    assert guest_port.project_id == guest.project_id
    # the owner does not see the guest's port; the guest does not see the owner's
    owner_port = port(backend, owner, net.id)
    assert [p.id for p in backend.list_ports(owner)] == [owner_port.id]
    assert [p.id for p in backend.list_ports(guest)] == [guest_port.id]
    with pytest.raises(Forbidden):
        backend.delete_network(guest, net.id)
    with pytest.raises(Forbidden):
        backend.update_network(guest, net.id, NetworkUpdate(name="taken"))
    with pytest.raises(Forbidden):
        backend.create_subnet(guest, SubnetCreate(network_id=net.id, cidr="198.18.29.0/24"))
    with pytest.raises(Forbidden):
        backend.delete_subnet(guest, sub.id)
    with pytest.raises(Conflict):
        backend.delete_network(owner, net.id)


def test_admin_sees_all_and_creates_for_others(backend: Backend) -> None:
    alice, bob = project(), project()
    net, _ = network(backend, alice, "198.18.30.0/24")
    p = port(backend, alice, net.id)
    assert backend.get_port(ADMIN, p.id) == p
    assert net.id in {n.id for n in backend.list_networks(ADMIN)}
    assert backend.list_ports(ADMIN, {"project_id": [alice.project_id]}) == [p]
    made = backend.create_network(ADMIN, NetworkCreate(name="for-bob", project_id=bob.project_id))
    assert made.project_id == bob.project_id
    assert backend.get_network(bob, made.id) == made
    before = snapshot(backend)
    with pytest.raises(Forbidden) as err:
        backend.create_network(bob, NetworkCreate(project_id=alice.project_id))
    assert err.value.field == "project_id"
    with pytest.raises(Forbidden):
        port(backend, bob, made.id, project_id=alice.project_id)
    assert snapshot(backend) == before
    own = backend.create_network(bob, NetworkCreate(project_id=bob.project_id))
    assert own.project_id == bob.project_id


# --- bad input arrives as validation errors (podwire.model.parse) ------------------------


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (NetworkCreate, {"name": "x", "colour": "red"}, "colour"),
        (NetworkCreate, {"mtu": 20}, "mtu"),
        (NetworkCreate, "not an object", None),
        (SubnetCreate, {"network_id": "n", "cidr": "198.18.0.0/33"}, "cidr"),
        (SubnetCreate, {"network_id": "n", "cidr": "198.18.0.1/24"}, "cidr"),
        (SubnetCreate, {"network_id": "n", "cidr": "198.18.0.0/24", "gateway_ip": "1.2.3"}, None),
        (
            SubnetCreate,
            {"network_id": "n", "cidr": "198.18.0.0/24", "gateway_ip": "198.19.0.1"},
            None,
        ),
        (PortCreate, {"network_id": "n", "mac_address": "zz:zz:zz:zz:zz:zz"}, "mac_address"),
        (PortCreate, {"network_id": "n", "mac_address": "01:00:5e:00:00:01"}, "mac_address"),
        (PortCreate, {"network_id": "n", "fixed_ips": [{"ip_address": "300.1.1.1"}]}, None),
        (PortCreate, {"network_id": "n", "fixed_ips": [{}]}, None),
        (PortCreate, {"network_id": "n", "allowed_address_pairs": [{"ip_address": "x/1"}]}, None),
        (SubPort, {"port_id": "p", "segmentation_id": 0}, "segmentation_id"),
        (SubPort, {"port_id": "p", "segmentation_id": 4095}, "segmentation_id"),
        (
            TrunkCreate,
            {
                "port_id": "p",
                "sub_ports": [
                    {"port_id": "a", "segmentation_id": 7},
                    {"port_id": "b", "segmentation_id": 7},
                ],
            },
            "sub_ports",
        ),
    ],
)
def test_malformed_input_is_invalid_input(model: type, data: object, field: str | None) -> None:
    with pytest.raises(InvalidInput) as err:
        parse(model, data)
    assert err.value.http_status == 400
    if field is not None:
        assert err.value.field is not None and err.value.field.startswith(field)
    else:
        assert err.value.message


# --- more refusals that must change nothing -----------------------------------------------


def test_more_refusals_change_nothing(backend: Backend) -> None:
    owner, guest = project(), project()
    net, (v4, v6) = network(backend, owner, "198.18.31.0/24", "2001:db8:1f::/64", shared=True)
    a = port(backend, owner, net.id)
    b = port(backend, owner, net.id)
    port(backend, guest, net.id)
    before = snapshot(backend)
    # another port's MAC
    with pytest.raises(Conflict) as mac:
        backend.update_port(owner, b.id, PortUpdate(mac_address=a.mac_address))
    assert mac.value.field == "mac_address"
    # another port's address, while also asking for a fresh one
    with pytest.raises(Conflict):
        backend.update_port(
            owner,
            b.id,
            PortUpdate(
                fixed_ips=[
                    FixedIpRequest(subnet_id=v6.id),
                    FixedIpRequest(ip_address=addresses(a)[0]),
                ]
            ),
        )
    # un-sharing a network other projects have ports on
    with pytest.raises(Conflict) as unshare:
        backend.update_network(owner, net.id, NetworkUpdate(shared=False))
    assert unshare.value.field == "shared"
    # a v6 DNS server on a v4 subnet
    with pytest.raises(InvalidInput) as dns:
        backend.update_subnet(owner, v4.id, SubnetUpdate(dns_nameservers=["2001:db8::53"]))
    assert dns.value.field == "dns_nameservers"
    # a v6 route on a v4 subnet
    with pytest.raises(InvalidInput) as route:
        backend.create_subnet(
            owner,
            parse(
                SubnetCreate,
                {
                    "network_id": net.id,
                    "cidr": "198.18.32.0/24",
                    "host_routes": [{"destination": "2001:db8::/32", "nexthop": "198.18.32.1"}],
                },
            ),
        )
    assert route.value.field == "host_routes"
    # filters with values of the wrong type
    with pytest.raises(InvalidInput) as mtu:
        backend.list_networks(owner, {"mtu": ["big"]})
    assert mtu.value.field == "mtu"
    with pytest.raises(InvalidInput):
        backend.list_ports(owner, {"admin_state_up": ["maybe"]})
    assert snapshot(backend) == before


def test_trunk_and_bool_filters(backend: Backend) -> None:
    ctx = project()
    net, _ = network(backend, ctx, "198.18.33.0/24")
    up = port(backend, ctx, net.id)
    down = port(backend, ctx, net.id, admin_state_up=False)
    t1 = backend.create_trunk(ctx, TrunkCreate(port_id=up.id, name="one"))
    t2 = backend.create_trunk(ctx, TrunkCreate(port_id=down.id, name="two"))
    assert backend.list_trunks(ctx, {"name": ["two"]}) == [t2]
    assert sorted(t.id for t in backend.list_trunks(ctx, {"name": ["one", "two"]})) == sorted(
        [t1.id, t2.id]
    )
    assert [p.id for p in backend.list_ports(ctx, {"admin_state_up": ["False"]})] == [down.id]
    assert [p.id for p in backend.list_ports(ctx, {"admin_state_up": ["true"]})] == [up.id]


def test_small_v6_subnet_is_exhausted_too(backend: Backend) -> None:
    ctx = project()
    net, (sub,) = network(backend, ctx, "2001:db8:99::/125")  # ::2-::7, six addresses
    got = [a for _ in range(6) for a in addresses(port(backend, ctx, net.id))]
    assert sorted(got, key=ipaddress.ip_address) == [f"2001:db8:99::{i}" for i in range(2, 8)]
    before = snapshot(backend)
    with pytest.raises(Exhausted) as err:
        port(backend, ctx, net.id)
    assert err.value.object_id == sub.id
    assert snapshot(backend) == before
