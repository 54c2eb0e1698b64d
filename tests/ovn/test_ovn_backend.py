"""The OVN backend beyond the shared contract suite: IPAM under concurrency
(several processes, one northbound database), the truth stored in NB rows,
remotes lists, and Unavailable when the database cannot be reached."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import pytest

from podwire.backends.ovn import OvnBackend
from podwire.errors import Exhausted, Unavailable
from podwire.model import Context, NetworkCreate, PortCreate, SubnetCreate
from tests.fixtures.ovn import OvsdbServer, private_nb

pytestmark = pytest.mark.ovn

CTX = Context(project_id="p1")


def _create_ports(remote: str, network_id: str, count: int, barrier: object) -> list[str]:
    """One process: ``count`` ports as fast as it can; the addresses it got."""
    backend = OvnBackend([remote], timeout=30.0)
    got: list[str] = []
    try:
        barrier.wait()  # type: ignore[attr-defined]
        for _ in range(count):
            try:
                port = backend.create_port(CTX, PortCreate(network_id=network_id))
            except Exhausted:
                got.append("exhausted")
                continue
            got.append(port.fixed_ips[0].ip_address)
    finally:
        backend.close()
    return got


def test_concurrent_processes_never_get_the_same_address(ovn_nb: OvsdbServer) -> None:
    backend = OvnBackend([ovn_nb.remote])
    net = backend.create_network(CTX, NetworkCreate(name="busy"))
    # 13 usable addresses (.2-.14; .1 is the gateway) for 4 x 6 = 24 requests.
    backend.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="198.18.9.0/28"))
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Manager().Barrier(4)
    with spawn.Pool(4) as pool:
        results = pool.starmap(
            _create_ports, [(ovn_nb.remote, net.id, 6, barrier) for _ in range(4)]
        )
    got = [ip for result in results for ip in result]
    addresses = [ip for ip in got if ip != "exhausted"]
    duplicates = [ip for ip, n in Counter(addresses).items() if n > 1]
    assert duplicates == []
    assert len(addresses) == 13
    assert got.count("exhausted") == 11
    # The northbound database holds exactly those ports and addresses.
    stored = sorted(p.fixed_ips[0].ip_address for p in backend.list_ports(CTX))
    assert stored == sorted(addresses)
    backend.close()


def test_list_of_remotes_reaches_the_live_one(ovn_nb: OvsdbServer) -> None:
    backend = OvnBackend([f"unix:{ovn_nb.run_dir}/absent.sock", ovn_nb.remote], timeout=5.0)
    try:
        net = backend.create_network(CTX, NetworkCreate(name="clustered"))
        assert backend.get_network(CTX, net.id).name == "clustered"
    finally:
        backend.close()


def test_unreachable_database_is_unavailable_within_the_timeout(tmp_path: object) -> None:
    backend = OvnBackend([f"unix:{tmp_path}/no-nb.sock"], timeout=2.0)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="cannot reach the OVN northbound database"):
        backend.list_networks(CTX)
    assert time.monotonic() - started < 10
    backend.close()


def test_database_lost_mid_way_is_unavailable() -> None:
    with private_nb() as nb:
        backend = OvnBackend([nb.remote], timeout=2.0)
        net = backend.create_network(CTX, NetworkCreate(name="soon-gone"))
        nb.stop()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            backend.create_port(CTX, PortCreate(network_id=net.id))
        with pytest.raises(Unavailable):
            backend.get_network(CTX, net.id)
        assert time.monotonic() - started < 15
        backend.close()


def test_port_columns_in_the_northbound_database(ovn_nb: OvsdbServer) -> None:
    """What another OVN tool sees: addresses, port_security, enabled, ids."""
    import subprocess

    backend = OvnBackend([ovn_nb.remote])
    net = backend.create_network(CTX, NetworkCreate(name="cols"))
    backend.create_subnet(CTX, SubnetCreate(network_id=net.id, cidr="198.18.10.0/24"))
    port = backend.create_port(
        CTX, PortCreate(network_id=net.id, device_id="c1", mac_address="0a:70:77:00:00:05")
    )
    open_port = backend.create_port(CTX, PortCreate(network_id=net.id, port_security_enabled=False))

    def get(name: str, column: str) -> str:
        out = subprocess.run(
            ["ovn-nbctl", f"--db={ovn_nb.remote}", "get", "Logical_Switch_Port", name, column],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    ip = port.fixed_ips[0].ip_address
    assert get(port.id, "addresses") == f'["0a:70:77:00:00:05 {ip}"]'
    assert get(port.id, "port_security") == f'["0a:70:77:00:00:05 {ip}"]'
    assert get(port.id, 'external_ids:"podwire:device_id"') == "c1"
    assert get(open_port.id, "port_security") == "[]"
    assert "unknown" in get(open_port.id, "addresses")
    switch = subprocess.run(
        ["ovn-nbctl", f"--db={ovn_nb.remote}", "lsp-get-ls", port.id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"podwire-{net.id}" in switch
    backend.close()
