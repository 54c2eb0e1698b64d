"""The OVN backend beyond the shared contract suite: IPAM under concurrency
(several processes, one northbound database), the truth stored in NB rows,
remotes lists, and Unavailable when the database cannot be reached."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from podwire.backends.ovn import OvnBackend
from podwire.errors import Exhausted, Unavailable
from podwire.model import Context, NetworkCreate, PortCreate, SubnetCreate
from tests.fixtures.common import require_command
from tests.fixtures.ovn import NB_SCHEMA, OvsdbServer, kill_pidfile, private_nb

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


def _pki(directory: Path) -> dict[str, Path]:
    """A throw-away CA and one certificate it signed (server and client alike)."""
    require_command("openssl")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=directory, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=podwire-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "1",
    )
    return {
        "key": directory / "node.key",
        "cert": directory / "node.pem",
        "ca": directory / "ca.pem",
    }


def test_ssl_remote_through_the_config(tmp_path: Path) -> None:
    """An ssl: northbound remote with the key, certificate and CA from config."""
    from podwire.backends.registry import open_backend
    from podwire.config import load_config

    for tool in ("ovsdb-tool", "ovsdb-server"):
        require_command(tool)
    files = _pki(tmp_path)
    with socket.socket() as probe:  # a free loopback port for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "nb.db"
    subprocess.run(["ovsdb-tool", "create", str(db), str(NB_SCHEMA)], check=True)
    pidfile = tmp_path / "nb.pid"
    subprocess.run(
        [
            "ovsdb-server",
            str(db),
            f"--remote=pssl:{port}:127.0.0.1",
            f"--private-key={files['key']}",
            f"--certificate={files['cert']}",
            f"--ca-cert={files['ca']}",
            f"--pidfile={pidfile}",
            f"--unixctl={tmp_path / 'nb.ctl'}",
            f"--log-file={tmp_path / 'nb.log'}",
            "--detach",
            "--no-chdir",
        ],
        check=True,
        capture_output=True,
    )
    try:
        config = load_config(
            None,
            backend="ovn",
            **{
                "ovn.nb_remotes": [f"ssl:127.0.0.1:{port}"],
                "ovn.ssl_private_key": str(files["key"]),
                "ovn.ssl_certificate": str(files["cert"]),
                "ovn.ssl_ca_cert": str(files["ca"]),
            },
        )
        backend = open_backend(config)
        try:
            net = backend.create_network(CTX, NetworkCreate(name="over-tls"))
            assert backend.get_network(CTX, net.id).name == "over-tls"
        finally:
            backend.close()
    finally:
        kill_pidfile(pidfile)


def test_ssl_remote_without_files_is_unavailable() -> None:
    backend = OvnBackend(["ssl:127.0.0.1:1"], timeout=2.0)
    with pytest.raises(Unavailable, match="ssl_private_key"):
        backend.list_networks(CTX)
    backend.close()
