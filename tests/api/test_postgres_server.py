"""`podwire server --db-url postgresql://...`: the same API on PostgreSQL."""

from __future__ import annotations

import pytest
from openstack import exceptions as os_exc

from tests.fixtures.server import start_podwire_server

pytestmark = pytest.mark.postgres


def test_server_on_postgresql(fresh_postgres_url: str) -> None:
    with start_podwire_server(db_url=fresh_postgres_url) as server:
        alice, bob = server.sdk("alice"), server.sdk("bob")
        net = alice.network.create_network(name="pg-net")
        v4 = alice.network.create_subnet(network_id=net.id, ip_version=4, cidr="198.18.70.0/24")
        v6 = alice.network.create_subnet(network_id=net.id, ip_version=6, cidr="2001:db8:70::/64")
        port = alice.network.create_port(network_id=net.id, device_id="ctr-pg")
        assert {f["subnet_id"] for f in port.fixed_ips} == {v4.id, v6.id}
        assert [p.id for p in alice.network.ports(device_id="ctr-pg")] == [port.id]
        with pytest.raises(os_exc.NotFoundException):
            bob.network.get_port(port.id)
        with pytest.raises(os_exc.ConflictException):
            alice.network.delete_network(net.id)
        alice.network.delete_port(port.id)
        alice.network.delete_network(net.id)
        assert list(alice.network.networks()) == []
        kept = alice.network.create_network(name="kept")
    # The data outlives the server: a new server on the same database sees it.
    with start_podwire_server(db_url=fresh_postgres_url) as server:
        assert [n.id for n in server.sdk("admin").network.networks()] == [kept.id]
